"""A built-in Suricata 7 rule checker for when the suricata binary is missing.

It catches the common mistakes that `suricata -T` refuses, without the engine: a tokenizer that
splits a line the way Suricata's own parser does (detect-parse.c: header fields on spaces, options
on every `;` not preceded by a backslash), a header check (action, protocol, addresses, ports,
direction) and an options check (keywords, values, quoting, content modifiers, sid, classtype).

Where the engine only warns or silently misreads a rule, this checker is stricter on purpose:
options not enclosed in exactly one `( ... )`, an unescaped `"` inside `msg`, a missing `;` that a
lax value parser swallows (`reference:...  classtype:x;`, `distance:0 within:9;`), a `!` inside an
address or port token, and (when the caller passes `classtypes`) an unknown classtype are errors
here. It does not check the arguments of keywords such as flow, flags, threshold or pcre, nor
resolve variables (`$HOME_NET`, `$HTTP_PORTS`): the engine's configuration defines those, so only
malformed variable names are reported.

Work is bounded on hostile input: a line longer than Suricata's 8191-byte line buffer is reported
and not parsed, list nesting stops at the engine's limit of 64, and every scan is linear.
"""

from __future__ import annotations

import functools
import ipaddress
import re
from dataclasses import dataclass, field
from pathlib import Path

from rulegen.validate.base import Finding

ENGINE = "built-in"
MAX_LINE_BYTES = 8191  # Suricata reads rule files with fgets() into an 8192-byte buffer
MAX_LIST_DEPTH = 64  # "address/port block recursion limit reached (max 64)"

ACTIONS = frozenset({"alert", "pass", "drop", "reject", "rejectsrc", "rejectdst", "rejectboth", "config"})
# Compared case-insensitively, like DetectProtoParse().
IP_PROTOCOLS = frozenset({"ip", "pkthdr", "tcp", "tcp-pkt", "tcp-stream", "udp", "icmp", "icmpv4", "icmpv6",
                          "ipv4", "ip4", "ipv6", "ip6", "sctp"})
# `suricata --list-app-layer-protos` of 7.0.10, plus the names the engine also accepts; case-sensitive.
APP_PROTOCOLS = frozenset({"http", "http1", "http2", "ftp", "ftp-data", "smtp", "tls", "ssh", "imap", "smb", "dcerpc",
                           "dns", "nfs", "ntp", "tftp", "ike", "krb5", "quic", "dhcp", "snmp", "sip", "rfb", "mqtt",
                           "telnet", "rdp", "bittorrent-dht"})
APP_PROTOCOLS_NOCASE = frozenset({"ikev2"})
# Real 7.0 parsers that the default suricata.yaml leaves disabled: the engine refuses them unless enabled.
APP_PROTOCOLS_DISABLED = frozenset({"modbus", "dnp3", "enip", "pgsql", "template"})

# Every keyword of Suricata 7.0.10: generated once with
#   suricata --list-keywords=csv | tail -n +2 | cut -d';' -f1
# and pasted here (279 names). Regenerate it the same way for another Suricata version.
KEYWORDS = frozenset({
    "alert", "app-layer-event", "app-layer-protocol", "asn1", "base64_data", "base64_decode", "bsize", "bypass",
    "byte_extract", "byte_jump", "byte_math", "byte_test", "cip_service", "classtype", "compress_whitespace",
    "config", "content", "datarep", "dataset", "dcerpc.iface", "dcerpc.opnum", "dcerpc.stub_data", "decode-event",
    "depth", "detection_filter", "dhcp.leasetime", "dhcp.rebinding_time", "dhcp.renewal_time", "distance",
    "dnp3.data", "dnp3_func", "dnp3_ind", "dnp3_obj", "dns.opcode", "dns.query", "dotprefix", "dsize", "endswith",
    "engine-event", "enip_command", "fast_pattern", "file.data", "file.magic", "file.name", "fileext", "filemagic",
    "filemd5", "filename", "filesha1", "filesha256", "filesize", "filestore", "flow", "flow.age", "flowbits",
    "flowint", "flowvar", "fragbits", "fragoffset", "frame", "ftpbounce", "ftpdata_command", "geoip", "gid",
    "header_lowercase", "hostbits", "http.accept", "http.accept_enc", "http.accept_lang", "http.connection",
    "http.content_len", "http.content_type", "http.cookie", "http.header", "http.header.raw", "http.header_names",
    "http.host", "http.host.raw", "http.location", "http.method", "http.protocol", "http.referer",
    "http.request_body", "http.request_header", "http.request_line", "http.response_body", "http.response_header",
    "http.response_line", "http.server", "http.start", "http.stat_code", "http.stat_msg", "http.uri",
    "http.uri.raw", "http.user_agent", "http2.errorcode", "http2.frametype", "http2.header_name", "http2.priority",
    "http2.settings", "http2.size_update", "http2.window", "http_client_body", "http_cookie", "http_header",
    "http_host", "http_method", "http_raw_header", "http_raw_host", "http_raw_uri", "http_server_body",
    "http_stat_code", "http_stat_msg", "http_uri", "http_user_agent", "icmp_id", "icmp_seq", "icmpv4-csum",
    "icmpv4.hdr", "icmpv6-csum", "icmpv6.hdr", "icmpv6.mtu", "icode", "id", "ike.chosen_sa_attribute",
    "ike.exchtype", "ike.init_spi", "ike.key_exchange_payload", "ike.key_exchange_payload_length",
    "ike.nonce_payload", "ike.nonce_payload_length", "ike.resp_spi", "ike.vendor", "ip.dst", "ip.src", "ip_proto",
    "ipopts", "iprep", "ipv4-csum", "ipv4.hdr", "ipv6.hdr", "isdataat", "itype", "ja3.hash", "ja3.string",
    "ja3s.hash", "ja3s.string", "ja4.hash", "krb5.cname", "krb5.sname", "krb5.ticket_encryption", "krb5_err_code",
    "krb5_msg_type", "l3_proto", "lua", "metadata", "modbus", "mqtt.connack.session_present",
    "mqtt.connect.clientid", "mqtt.connect.flags", "mqtt.connect.password", "mqtt.connect.username",
    "mqtt.connect.willmessage", "mqtt.connect.willtopic", "mqtt.flags", "mqtt.protocol_version",
    "mqtt.publish.message", "mqtt.publish.topic", "mqtt.qos", "mqtt.reason_code", "mqtt.subscribe.topic",
    "mqtt.type", "mqtt.unsubscribe.topic", "msg", "nfq_set_mark", "nfs.version", "nfs_procedure", "noalert",
    "nocase", "offset", "pcre", "pcrexform", "pkt_data", "pktvar", "prefilter", "priority", "quic.cyu.hash",
    "quic.cyu.string", "quic.sni", "quic.ua", "quic.version", "rawbytes", "reference", "replace", "requires", "rev",
    "rfb.name", "rfb.secresult", "rfb.sectype", "rpc", "sameip", "sid", "sip.method", "sip.protocol",
    "sip.request_line", "sip.response_line", "sip.stat_code", "sip.stat_msg", "sip.uri", "smb.named_pipe",
    "smb.ntlmssp_domain", "smb.ntlmssp_user", "smb.share", "snmp.community", "snmp.pdu_type", "snmp.usm",
    "snmp.version", "ssh.hassh", "ssh.hassh.server", "ssh.hassh.server.string", "ssh.hassh.string", "ssh.proto",
    "ssh.protoversion", "ssh.software", "ssh.softwareversion", "ssl_state", "ssl_version", "startswith",
    "stream-event", "stream_size", "strip_pseudo_headers", "strip_whitespace", "tag", "target", "tcp.ack",
    "tcp.flags", "tcp.hdr", "tcp.mss", "tcp.seq", "tcp.window", "tcpv4-csum", "tcpv6-csum", "template2",
    "threshold", "tls.cert_chain_len", "tls.cert_fingerprint", "tls.cert_issuer", "tls.cert_serial",
    "tls.cert_subject", "tls.certs", "tls.fingerprint", "tls.issuerdn", "tls.random", "tls.random_bytes",
    "tls.random_time", "tls.sni", "tls.subject", "tls.version", "tls_cert_expired", "tls_cert_notafter",
    "tls_cert_notbefore", "tls_cert_valid", "tls_store", "to_lowercase", "to_md5", "to_sha1", "to_sha256",
    "to_uppercase", "tos", "ttl", "udp.hdr", "udpv4-csum", "udpv6-csum", "uricontent", "urilen", "url_decode",
    "within", "xbits", "xor",
})
# The aliases that --list-keywords does not print (flags for tcp.flags, dns_query for dns.query, ...):
# found by loading a test rule for every identifier in the suricata binary's strings and keeping those
# that the engine did not refuse as "unknown rule keyword".
KEYWORD_ALIASES = frozenset({
    "ack", "dce_iface", "dce_opnum", "dce_stub_data", "dnp3.func", "dnp3.ind", "dnp3.obj", "dnp3_data", "dns_query",
    "file_data", "flags", "http.uri.normalized", "http_accept", "http_accept_enc", "http_accept_lang",
    "http_connection", "http_content_len", "http_content_type", "http_header_names", "http_protocol",
    "http_referer", "http_request_line", "http_response_line", "http_start", "ja3_hash", "ja3_string", "ja4_hash",
    "krb5_cname", "krb5_sname", "luajit", "mqtt.connack.return_code", "nfs_version", "seq", "smb_named_pipe",
    "smb_share", "ssh-hassh", "ssh-hassh-server", "ssh-hassh-server-string", "ssh-hassh-string", "ssh_proto",
    "ssh_software", "template", "tls.store", "tls_cert_fingerprint", "tls_cert_issuer", "tls_cert_serial",
    "tls_cert_subject", "tls_sni", "window",
})
# Sticky buffers: after one, content and its modifiers apply to that buffer until the next one
# (or pkt_data). Found by loading `content:"a"; KEYWORD; nocase;` for each keyword.
STICKY_BUFFERS = frozenset({
    "base64_data", "dce_stub_data", "dcerpc.stub_data", "dnp3.data", "dnp3_data", "dns.query", "dns_query",
    "file.data", "file.magic", "file.name", "file_data", "frame", "http.accept", "http.accept_enc",
    "http.accept_lang", "http.connection", "http.content_len", "http.content_type", "http.cookie", "http.header",
    "http.header.raw", "http.header_names", "http.host", "http.host.raw", "http.location", "http.method",
    "http.protocol", "http.referer", "http.request_body", "http.request_header", "http.request_line",
    "http.response_body", "http.response_header", "http.response_line", "http.server", "http.start",
    "http.stat_code", "http.stat_msg", "http.uri", "http.uri.normalized", "http.uri.raw", "http.user_agent",
    "http2.header_name", "http_accept", "http_accept_enc", "http_accept_lang", "http_connection",
    "http_content_len", "http_content_type", "http_header_names", "http_protocol", "http_referer",
    "http_request_line", "http_response_line", "http_start", "icmpv4.hdr", "icmpv6.hdr", "ike.init_spi",
    "ike.key_exchange_payload", "ike.nonce_payload", "ike.resp_spi", "ike.vendor", "ip.dst", "ip.src", "ipv4.hdr",
    "ipv6.hdr", "ja3.hash", "ja3.string", "ja3_hash", "ja3_string", "ja3s.hash", "ja3s.string", "ja4.hash",
    "ja4_hash", "krb5.cname", "krb5.sname", "krb5_cname", "krb5_sname", "mqtt.connect.clientid",
    "mqtt.connect.password", "mqtt.connect.username", "mqtt.connect.willmessage", "mqtt.connect.willtopic",
    "mqtt.publish.message", "mqtt.publish.topic", "mqtt.subscribe.topic", "mqtt.unsubscribe.topic", "quic.cyu.hash",
    "quic.cyu.string", "quic.sni", "quic.ua", "quic.version", "rfb.name", "sip.method", "sip.protocol",
    "sip.request_line", "sip.response_line", "sip.stat_code", "sip.stat_msg", "sip.uri", "smb.named_pipe",
    "smb.ntlmssp_domain", "smb.ntlmssp_user", "smb.share", "smb_named_pipe", "smb_share", "snmp.community",
    "snmp.usm", "ssh-hassh", "ssh-hassh-server", "ssh-hassh-server-string", "ssh-hassh-string", "ssh.hassh",
    "ssh.hassh.server", "ssh.hassh.server.string", "ssh.hassh.string", "ssh.proto", "ssh.software", "ssh_proto",
    "ssh_software", "tcp.hdr", "tls.cert_fingerprint", "tls.cert_issuer", "tls.cert_serial", "tls.cert_subject",
    "tls.certs", "tls.random", "tls.random_bytes", "tls.random_time", "tls.sni", "tls_cert_fingerprint",
    "tls_cert_issuer", "tls_cert_serial", "tls_cert_subject", "tls_sni", "udp.hdr",
})

# Content modifiers of the old style: they move the preceding content into an HTTP buffer.
LEGACY_CONTENT_MODIFIERS = frozenset({
    "http_client_body", "http_cookie", "http_header", "http_host", "http_method", "http_raw_header", "http_raw_host",
    "http_raw_uri", "http_server_body", "http_stat_code", "http_stat_msg", "http_uri", "http_user_agent",
})
# Keywords that modify the last content: they need a content in the current buffer before them.
CONTENT_MODIFIERS = frozenset({
    "nocase", "depth", "offset", "distance", "within", "fast_pattern", "startswith", "endswith", "rawbytes",
}) | LEGACY_CONTENT_MODIFIERS
CONTENT_KEYWORDS = frozenset({"content", "uricontent"})
# Keywords that take no value ("unexpected option to X keyword") and the few where a value is optional;
# every other keyword needs one. Found by loading `KEYWORD;` and `KEYWORD:1;` for each keyword in 7.0.10.
NO_VALUE = (STICKY_BUFFERS - {"frame"}) | LEGACY_CONTENT_MODIFIERS | frozenset({
    "alert", "bypass", "compress_whitespace", "dotprefix", "endswith", "ftpbounce", "header_lowercase", "noalert",
    "nocase", "pkt_data", "prefilter", "rawbytes", "sameip", "startswith", "strip_pseudo_headers", "strip_whitespace",
    "tls.store", "tls_cert_expired", "tls_cert_valid", "tls_store", "to_lowercase", "to_md5", "to_sha1", "to_sha256",
    "to_uppercase", "url_decode",
})
OPTIONAL_VALUE = frozenset({"base64_decode", "fast_pattern", "filestore"})
# Keywords whose value may be double-quoted (the others refuse quotes), those where quotes are mandatory,
# and those that take a `!` before the quoted value. Found by loading `KEYWORD:"1";` and `KEYWORD:!"1";`.
QUOTED_VALUES = frozenset({
    "app-layer-protocol", "content", "fileext", "filemagic", "filename", "ip_proto", "msg", "pcre", "pcrexform",
    "replace", "ssh.protoversion", "ssh.softwareversion", "tls.fingerprint", "tls.issuerdn", "tls.subject", "tos",
    "uricontent", "xor",
})
QUOTES_REQUIRED = frozenset({
    "content", "filemagic", "msg", "pcrexform", "replace", "tls.fingerprint", "tls.issuerdn", "tls.subject",
    "uricontent", "xor",
})
NEGATABLE = frozenset({
    "app-layer-protocol", "content", "fileext", "filemagic", "filename", "pcre", "tls.issuerdn", "tls.subject", "tos",
    "uricontent",
})
FREE_TEXT = frozenset({"msg", "metadata", "reference"})  # values where a trailing keyword-like word is normal
ALL_KEYWORDS = KEYWORDS | KEYWORD_ALIASES

_ACTION_BYTES = frozenset(action.encode() for action in ACTIONS)
_HEX = frozenset("0123456789abcdefABCDEF")
_VAR = re.compile(r"\$[A-Za-z_][A-Za-z0-9_]*")
_PORT = re.compile(r"(\+?[0-9]{1,10})?(:(\+?[0-9]{1,10})?)?")
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
_TOKEN_END = re.compile(r"[ \t\r\n]")
_WORD_THEN_COLON = re.compile(r"\s([A-Za-z][A-Za-z0-9_.-]*)\s*:")
_SID_ANYWHERE = re.compile(r"(?i)(?:^|[;(\s])sid\s*:\s*([0-9]{1,10})\b")
_SPACES = " \t"


# --------------------------------------------------------------------------- tokenizer

@dataclass
class Header:
    action: str = ""
    protocol: str = ""
    src: str = ""
    sport: str = ""
    direction: str = ""
    dst: str = ""
    dport: str = ""
    options: str | None = None  # everything after the destination port; None when the header ran out


@dataclass
class Option:
    name: str
    value: str | None  # text after the first ':' with trailing blanks trimmed; None without a ':'
    key: str = field(init=False)  # the name in lower case: keywords are case-insensitive
    text: str = field(init=False)  # the value without surrounding blanks ("" without a value)

    def __post_init__(self) -> None:
        self.key = self.name.lower()
        self.text = (self.value or "").strip(_SPACES)


def _token(text: str, pos: int | None) -> tuple[str, int | None]:
    """SigParseToken: the next run of characters up to a space, tab, CR or LF."""
    if pos is None or pos >= len(text):
        return "", None
    while pos < len(text) and text[pos] in _SPACES:
        pos += 1
    end = _TOKEN_END.search(text, pos)
    if end is None:
        return text[pos:], None
    return text[pos:end.start()], end.start() + 1


def _list_token(text: str, pos: int | None) -> tuple[str, int | None]:
    """SigParseList: the next field, up to a space outside brackets (a tab does not split)."""
    if pos is None or pos >= len(text):
        return "", None
    while pos < len(text) and text[pos] in _SPACES:
        pos += 1
    space = text.find(" ", pos)
    if space > 0 and "[" not in text[pos:space] and "]" not in text[pos:space]:
        return text[pos:space], space + 1  # the common case: no list in this field
    depth = 0
    for i in range(pos, len(text)):
        char = text[i]
        if char == "[":
            depth += 1
        elif char == "]":
            depth -= 1
        elif char == " " and depth == 0:
            return text[pos:i], i + 1
    return "", None  # the field never ends: the engine then finds no options


def split_header(rule: str) -> Header:
    """The seven header fields and the options text, split the way Suricata's SigParseBasics does."""
    header = Header()
    header.action, pos = _token(rule, 0)
    header.protocol, pos = _list_token(rule, pos)
    header.src, pos = _list_token(rule, pos)
    header.sport, pos = _list_token(rule, pos)
    header.direction, pos = _token(rule, pos)
    header.dst, pos = _list_token(rule, pos)
    header.dport, pos = _list_token(rule, pos)
    header.options = None if pos is None else rule[pos:]
    return header


def _option(text: str) -> Option:
    name, colon, value = text.partition(":")
    return Option(name.rstrip(_SPACES), value.rstrip(_SPACES) if colon else None)


def split_options(body: str) -> tuple[list[Option], str]:
    """Options, each ended by a `;` not preceded by a backslash, and the unterminated rest (or "")."""
    options: list[Option] = []
    pos = 0
    while True:
        while pos < len(body) and body[pos] in _SPACES:
            pos += 1
        if pos >= len(body):
            return options, ""
        end = body.find(";", pos)
        while end > pos and body[end - 1] == "\\":
            end = body.find(";", end + 1)
        if end < 0:
            return options, body[pos:]
        options.append(_option(body[pos:end]))
        pos = end + 1


# --------------------------------------------------------------------------- addresses and ports
# A field evaluates to a set of integer intervals, so that "nothing left to match" (`!any`, `[80,!80]`)
# shows, as the engine refuses that. A variable makes the set unknown (None): the config defines it.

Intervals = list[tuple[int, int]]
_V6_BASE = 1 << 32  # IPv4 addresses map to [0, 2^32), IPv6 addresses to [2^32, 2^32 + 2^128)
_ADDRESS_SPACE = (0, _V6_BASE + (1 << 128) - 1)
_PORT_SPACE = (0, 65535)


class _Bad(Exception):
    """A malformed address or port field."""


def _union(sets: list[Intervals]) -> Intervals:
    merged: Intervals = []
    for low, high in sorted(i for s in sets for i in s):
        if merged and low <= merged[-1][1] + 1:
            merged[-1] = (merged[-1][0], max(merged[-1][1], high))
        else:
            merged.append((low, high))
    return merged


def _minus(base: Intervals, cut: Intervals) -> Intervals:
    """base - cut, both sorted and disjoint."""
    result: Intervals = []
    first = 0
    for low, high in base:
        while first < len(cut) and cut[first][1] < low:
            first += 1
        index = first
        while index < len(cut) and cut[index][0] <= high and low <= high:
            if cut[index][0] > low:
                result.append((low, cut[index][0] - 1))
            low = max(low, cut[index][1] + 1)
            index += 1
        if low <= high:
            result.append((low, high))
    return result


def _split_items(text: str) -> list[str]:
    """A list body split at the commas outside nested brackets."""
    items, depth, start = [], 0, 0
    for i, char in enumerate(text):
        if char == "[":
            depth += 1
            if depth > MAX_LIST_DEPTH:
                raise _Bad(f"lists nested deeper than {MAX_LIST_DEPTH}")
        elif char == "]":
            depth -= 1
            if depth < 0:
                raise _Bad("']' without '['")
        elif char == "," and depth == 0:
            items.append(text[start:i])
            start = i + 1
    if depth:
        raise _Bad("'[' without ']'")
    items.append(text[start:])
    return items


def _parse_list(text: str, atom, space: tuple[int, int], depth: int = 0) -> Intervals | None:
    """A comma list of items, each `!`* followed by an atom or a [list]: (positives or all) - negatives."""
    if depth > MAX_LIST_DEPTH:
        raise _Bad(f"lists nested deeper than {MAX_LIST_DEPTH}")
    items = _split_items(text)
    if len(items) > 1 and items[-1] == "":  # the engine accepts one trailing comma
        items.pop()
    positive: list[Intervals] = []
    negative: list[Intervals] = []
    unknown = False
    for raw in items:
        item = raw.lstrip(_SPACES)
        if not item:
            raise _Bad("empty element in the list" if len(items) > 1 else "empty list")
        if item != item.rstrip():
            raise _Bad(f"space after {_short(item.strip())}")
        bangs = len(item) - len(item.lstrip("!"))
        item = item[bangs:]
        if item.startswith("[") and item.endswith("]"):
            value = _parse_list(item[1:-1], atom, space, depth + 1)
        elif "[" in item or "]" in item or not item:
            raise _Bad(f"malformed element {_short(raw)}")
        else:
            value = atom(item)
        if value is None:
            unknown = True
        else:
            (negative if bangs % 2 else positive).append(value)
    if unknown:
        return None
    return _minus(_union(positive) if positive else [space], _union(negative))


def _short(text: str, limit: int = 60) -> str:
    return repr(text if len(text) <= limit else text[:limit] + "...")


@functools.lru_cache(maxsize=4096)  # rule files repeat the same few fields ($HOME_NET, any, 80)
def _check_list(text: str, atom, space: tuple[int, int], what: str) -> str | None:
    """The problem with an address or port field, or None."""
    if text.strip("[] !") == "":
        return f"empty {what} list {_short(text)}"
    try:
        result = _parse_list(text, atom, space)
    except _Bad as bad:
        return f"bad {what} {_short(text)}: {bad}"
    if result == []:
        return f"bad {what} {_short(text)}: the negations leave nothing to match"
    return None


def _variable(item: str) -> None:
    if not _VAR.fullmatch(item):
        raise _Bad(f"malformed variable {_short(item)}")


def _port_atom(item: str) -> Intervals | None:
    if item.lower() == "any":
        return [_PORT_SPACE]
    if item.startswith("$"):
        return _variable(item)
    match = _PORT.fullmatch(item)
    if not match:
        raise _Bad(f"{_short(item)} is not a port or a port range")
    low = int(match.group(1)) if match.group(1) else 0
    high = low if not match.group(2) else (int(match.group(3)) if match.group(3) else 65535)
    if max(low, high) > 65535:
        raise _Bad(f"port {max(low, high)} is above 65535")
    if low > high:
        raise _Bad(f"range {_short(item)} runs backwards")
    return [(low, high)]


def _ip(text: str) -> tuple[int, int]:
    """An address as (its value in the unified space, the bits of its family)."""
    if "%" in text:  # Python accepts an IPv6 scope id; Suricata does not
        raise ValueError(text)
    address = ipaddress.ip_address(text)
    if address.version == 4:
        return int(address), 32
    return _V6_BASE + int(address), 128


def _prefix(mask: str, bits: int) -> int:
    if mask.isascii() and mask.isdigit() and len(mask) <= 3:
        prefix = int(mask)
    elif bits == 32:  # a dotted netmask, contiguous only
        netmask = int(ipaddress.IPv4Address(mask))
        prefix = bin(netmask).count("1")
        if netmask != (1 << 32) - (1 << (32 - prefix)):
            raise _Bad(f"netmask {_short(mask)} is not contiguous")
    else:
        raise ValueError(mask)
    if prefix > bits:
        raise _Bad(f"prefix /{prefix} is longer than {bits} bits")
    return prefix


def _address_atom(item: str) -> Intervals | None:
    if item.lower() == "any":
        return [_ADDRESS_SPACE]
    if item.startswith("$"):
        return _variable(item)
    try:
        if "-" in item:
            first, _, last = item.partition("-")
            (low, bits), (high, bits_high) = _ip(first), _ip(last)
            if bits != 32 or bits_high != 32:
                raise _Bad(f"{_short(item)}: Suricata takes address ranges for IPv4 only")
            if low > high:
                raise _Bad(f"range {_short(item)} runs backwards")
            return [(low, high)]
        address, slash, mask = item.partition("/")
        value, bits = _ip(address)
        size = 1 << (bits - (_prefix(mask, bits) if slash else bits))
        low = value - (value - (0 if bits == 32 else _V6_BASE)) % size
        return [(low, low + size - 1)]
    except ValueError:
        raise _Bad(f"{_short(item)} is not an IP address, a CIDR block or a range") from None


# --------------------------------------------------------------------------- header check

def _protocol_known(proto: str) -> bool:
    return (proto.lower() in IP_PROTOCOLS or proto in APP_PROTOCOLS or proto.lower() in APP_PROTOCOLS_NOCASE
            or proto in APP_PROTOCOLS_DISABLED)


def check_header(header: Header) -> str | None:
    """The first problem of the header, checked in the engine's order, or None."""
    if header.options is None:
        return "no rule options: the header is incomplete, or a '[' in it is never closed"
    if header.action.lower() not in ACTIONS:
        return f"unknown action {_short(header.action)} (expected one of {', '.join(sorted(ACTIONS))})"
    if not _protocol_known(header.protocol):
        return f"unknown protocol {_short(header.protocol)}"
    fields = (header.src, header.sport, header.dst, header.dport)
    if header.direction not in ("->", "<>"):
        if any(f in ("->", "<>") for f in fields):
            return "the header has a field too few or too many before the direction operator"
        return f"missing direction operator: {_short(header.direction)} stands where '->' or '<>' belongs"
    if any(f.startswith("(") for f in fields):
        return "the header has too few fields (action protocol src sport -> dst dport)"
    for text, atom, space, what in ((header.src, _address_atom, _ADDRESS_SPACE, "address"),
                                    (header.dst, _address_atom, _ADDRESS_SPACE, "address"),
                                    (header.sport, _port_atom, _PORT_SPACE, "port"),
                                    (header.dport, _port_atom, _PORT_SPACE, "port")):
        problem = _check_list(text, atom, space, what)
        if problem:
            return problem
    return None


# --------------------------------------------------------------------------- options check

@dataclass
class RuleInfo:
    errors: list[str] = field(default_factory=list)
    sid: int | None = None
    gid: int = 1
    rev: int = 0


def _unescaped_quote(text: str) -> bool:
    escaped = False
    for char in text:
        if escaped:
            escaped = False
        elif char == "\\":
            escaped = True
        elif char == '"':
            return True
    return False


def _content_problem(text: str) -> str | None:
    """What DetectContentDataParse refuses in a content string: quotes, escapes, |hex| blocks."""
    in_hex, digits, escaped = False, 0, False
    for char in text:
        if in_hex:
            if char == "|":
                if digits % 2:
                    return "odd number of hex digits in a |..| block"
                in_hex, digits = False, 0
            elif char in _HEX:
                digits += 1
            elif char not in " ,":
                return f"invalid character {char!r} in a |..| hex block"
        elif escaped:
            if char not in '\\";:':
                return f"invalid escape '\\{char}' (only \\\\, \\\", \\; and \\: are allowed)"
            escaped = False
        elif char == "\\":
            escaped = True
        elif char == "|":
            in_hex = True
        elif char == '"':
            return "unescaped '\"' inside the content (write it as \\\" or |22|)"
    if in_hex:
        return "unterminated |..| hex block"
    if escaped:
        return "the content ends with a lone backslash"
    return None


def _swallowed_keyword(value: str, key: str) -> str | None:
    """The keyword that a missing ';' glued into this value, if any."""
    for match in _WORD_THEN_COLON.finditer(value):
        if match.group(1).lower() in ALL_KEYWORDS:
            return match.group(1)
    words = value.split()
    if key not in FREE_TEXT and len(words) > 1 and words[-1].lower() in NO_VALUE:
        return words[-1]
    return None


def _unterminated(value: str) -> str:
    closing = re.search(r'(?<!\\)"\s+([A-Za-z0-9_.-]+)', value[1:])
    if closing:
        return f"missing ';' after the quoted value, before {_short(closing.group(1))}"
    return "unterminated quoted value: an unescaped ';' inside the quotes ends the option (write it as \\;)"


def _value_problem(option: Option, key: str) -> str | None:
    """Presence, quoting and missing-semicolon problems of one option's value."""
    value = option.text
    if key in NO_VALUE:
        if not value:
            return None
        swallowed = _swallowed_keyword(" " + value, key)
        if swallowed:
            return f"missing ';' between {_short(option.name)} and {_short(swallowed)}"
        return f"{option.name} takes no value, got {_short(value)}"
    if not value:
        return None if key in OPTIONAL_VALUE else f"{option.name} needs a value"
    if key in NEGATABLE and value.startswith("!"):
        value = value[1:].lstrip(_SPACES)
    if value.startswith('"'):
        if key not in QUOTED_VALUES:
            return f"{option.name} does not take a quoted value"
        if len(value) < 2 or not value.endswith('"'):
            return f"{option.name}: {_unterminated(value)}"
        if len(value) == 2:
            return f"{option.name}: empty quoted value"
        return None
    if key in QUOTES_REQUIRED:
        return f"{option.name}: the value must be double-quoted"
    swallowed = _swallowed_keyword(value, key)
    if swallowed:
        return f"{option.name}: missing ';' before {_short(swallowed)}"
    return None


_NUMBERS = {"sid": (1, 4294967295), "rev": (1, 4294967295), "gid": (0, 4294967295), "priority": (0, 4294967295)}


def _number(text: str, key: str) -> int | None:
    """The value of a sid, rev, gid or priority option, or None when the engine would refuse it."""
    low, high = _NUMBERS[key]
    digits = text.lstrip("0") or ("0" if text else "")
    if not (text.isascii() and text.isdigit() and len(digits) <= 10):
        return None
    return int(digits) if low <= int(digits) <= high else None


def _sid_fields(options: list[Option], info: RuleInfo) -> list[Option]:
    """Read sid, gid and rev first, as the engine does; return the sid options."""
    sids = [o for o in options if o.key == "sid"]
    if sids:
        info.sid = _number(sids[0].text, "sid")
        if info.sid is None:
            info.errors.append(f"sid must be a whole number from 1 to 4294967295, got {_short(sids[0].text)}")
    for option in options:
        if option.key in ("gid", "rev"):
            setattr(info, option.key, _number(option.text, option.key) or 0)
    return sids


def check_options(body: str, classtypes: set[str] | None = None) -> RuleInfo:
    """Check the text after the header: the ( ) around it, then each option in order."""
    info = RuleInfo()
    stripped = body.strip()
    if not stripped.startswith("("):
        info.errors.append("missing '(' before the rule options")
    elif re.match(r"\(\s*\(", stripped):
        info.errors.append("unbalanced parentheses: an extra '(' before the options")
    if not stripped.endswith(")"):
        info.errors.append("missing ')' after the rule options")
    elif re.search(r"\)\s*\)$", stripped):
        info.errors.append("unbalanced parentheses: an extra ')' after the options")
    # Like the engine: drop every leading '(' and trailing ')', then split.
    options, rest = split_options(stripped.lstrip(" \t\r\n(").rstrip(" \t\r\n)"))
    sids = _sid_fields(options + ([_option(rest)] if rest.strip() else []), info)

    seen: set[str] = set()
    buffer: str | None = None  # the sticky buffer in force; None for the packet payload
    buffer_has_content = any_content = False
    for option in options:
        key = option.key
        if key not in ALL_KEYWORDS:
            words = option.name.split()
            if len(words) > 1 and words[0].lower() in ALL_KEYWORDS:
                info.errors.append(f"missing ';' between {_short(words[0])} and {_short(words[1])}")
            elif not option.name:
                info.errors.append("empty option (';;' or a stray ';')")
            elif option.name.strip("() \t").lower() in ALL_KEYWORDS:
                info.errors.append(f"unbalanced parentheses: a stray parenthesis in {_short(option.name)}")
            else:
                info.errors.append(f"unknown keyword {_short(option.name)}")
            break
        problem = _value_problem(option, key)
        if problem:
            info.errors.append(problem)
            break
        if key in ("msg", "sid") and key in seen:
            info.errors.append(f"{key} appears twice in the rule")
            break
        seen.add(key)
        value = option.text
        if key == "msg" and _unescaped_quote(value[1:-1]):
            info.errors.append("msg: unescaped '\"' inside the message (write it as \\\")")
            break
        if key in CONTENT_KEYWORDS:
            problem = _content_problem(value.lstrip("!").lstrip(_SPACES)[1:-1])
            if problem:
                info.errors.append(f"{option.name}: {problem}")
                break
            any_content = buffer_has_content = True
        elif key in STICKY_BUFFERS:
            buffer, buffer_has_content = key, False
        elif key == "pkt_data":
            buffer = None
        elif key in CONTENT_MODIFIERS and not (buffer_has_content if buffer else any_content):
            where = f" in the {buffer} buffer" if buffer else ""
            info.errors.append(f"{option.name} needs a preceding content{where}")
            break
        elif key in ("rev", "gid", "priority") and _number(value, key) is None:
            low, high = _NUMBERS[key]
            info.errors.append(f"{key} must be a whole number from {low} to {high}, got {_short(value)}")
            break
        elif key == "classtype" and classtypes is not None and value not in classtypes:
            info.errors.append(f"{UNKNOWN_CLASSTYPE} {_short(value)}")  # the engine only warns: lint
    else:
        if rest.strip():
            info.errors.append(f"missing ';' after the last option {_short(_option(rest).name)}")
    if not sids and not (info.errors and _SID_ANYWHERE.search(stripped)):
        info.errors.append("missing sid")
    return info


# --------------------------------------------------------------------------- file

def _physical_lines(data: bytes) -> list[bytes]:
    lines = data.split(b"\n")
    if lines and lines[-1] == b"":
        lines.pop()
    return [line[:-1] if line.endswith(b"\r") else line for line in lines]


def _rules(lines: list[bytes]):
    """(line number, raw rule) pairs; raw is None for an indented rule. Trailing backslashes join lines."""
    index = 0
    while index < len(lines):
        number, raw = index + 1, lines[index]
        index += 1
        if not raw or raw[:1] == b"#":
            continue  # blank, comment, or a rule disabled with '# alert'
        if raw[:1] in (b" ", b"\t"):  # the engine skips these lines too
            if raw.lstrip()[:12].split(b" ", 1)[0].lower() in _ACTION_BYTES:
                yield number, None
            continue
        while raw.rstrip().endswith(b"\\") and index < len(lines) and len(raw) <= MAX_LINE_BYTES:
            raw = raw.rstrip()[:-1] + lines[index]
            index += 1
        yield number, raw


def _sid_hint(rule: str) -> int | None:
    match = _SID_ANYWHERE.search(rule)
    return int(match.group(1)) if match else None


UNKNOWN_CLASSTYPE = "unknown classtype"


def check_file(path: Path, classtypes: set[str] | None = None) -> list[Finding]:
    """Findings for one Suricata rule file: what the engine would refuse, plus a few warnings."""
    name = str(path)
    findings: list[Finding] = []
    first_seen: dict[tuple[int, int], tuple[int, int]] = {}  # (gid, sid) -> (line, rev) of loadable rules

    def report(line: int, message: str, sid: int | None = None, severity: str = "error") -> None:
        findings.append(Finding(name, line, ENGINE, message, severity, sid))

    try:
        data = Path(path).read_bytes()
    except OSError as error:
        report(0, f"cannot read the file: {error}")
        return findings
    for line, raw in _rules(_physical_lines(data)):
        if raw is None:
            report(line, "indented rule: Suricata skips lines that start with a space or a tab", severity="warning")
            continue
        if len(raw) > MAX_LINE_BYTES:
            report(line, f"the rule is {len(raw)} bytes long; Suricata reads at most {MAX_LINE_BYTES} per line")
            continue
        try:
            rule = raw.decode("utf-8")
        except UnicodeDecodeError as error:
            text = raw.decode("utf-8", errors="replace")
            report(line, f"the rule is not valid UTF-8 (byte {error.start + 1}): {text[:60]!r}", _sid_hint(text))
            continue
        sid = _sid_hint(rule)
        control = _CONTROL.search(rule)
        if control:
            report(line, f"the rule contains the control character {control.group(0)!r}", sid)
            continue
        header = split_header(rule)
        problem = check_header(header)
        if problem:
            report(line, problem, sid)
            continue
        if header.protocol in APP_PROTOCOLS_DISABLED:
            report(line, f"protocol {_short(header.protocol)} is disabled in Suricata's default configuration "
                         f"(app-layer.protocols.{header.protocol})", sid, "warning")
        info = check_options(header.options or "", classtypes)
        for message in info.errors:
            if message.startswith(UNKNOWN_CLASSTYPE):  # Suricata loads the rule and warns: lint, as with the engine
                findings.append(Finding(name, line, ENGINE, message, "error", info.sid or sid, kind="lint",
                                        code="unknown-classtype"))
            else:
                report(line, message, info.sid or sid)
        if [m for m in info.errors if not m.startswith(UNKNOWN_CLASSTYPE)] or info.sid is None:
            continue
        key = (info.gid, info.sid)
        if key not in first_seen:
            first_seen[key] = (line, info.rev)
            continue
        first_line, first_rev = first_seen[key]
        if info.rev > first_rev:  # the engine keeps the newer rule and only warns
            report(line, f"sid {info.sid} repeats line {first_line} with a newer rev; Suricata replaces that rule",
                   info.sid, "warning")
            first_seen[key] = (line, info.rev)
        else:
            report(line, f"duplicate sid {info.sid}: first used at line {first_line}", info.sid)
    return findings
