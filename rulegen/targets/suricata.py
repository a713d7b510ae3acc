"""Suricata 7 rules in ET Open's conventions: what a pattern becomes, and the escaping of values."""

from __future__ import annotations

import calendar
import datetime as dt
import hashlib
import re
from typing import Any

from rulegen.archive import targz
from rulegen.attack import et_name, tactics, techniques
from rulegen.model import NTP_REQUESTS, ContentMatch, Detect, Direction, KnowledgeBase, Match, Net, Pattern, PortRange
from rulegen.severity import SEVERITY
from rulegen.targets import Artifact, Plan, Stamp, gap, sanitize_line

NAME = "suricata"
RULES_PATH = "suricata/rulegen.rules"
SID_MAP_PATH = "suricata/sid-msg.map"
# A suricata-update source: the rules in a tarball, in ET Open's layout, and the tarball's MD5 beside it
# (suricata-update fetches URL.md5 to tell whether the source changed).
TARBALL_PATH = "suricata/rulegen.tar.gz"
TARBALL_MD5_PATH = TARBALL_PATH + ".md5"
TARBALL_RULES = "rules/rulegen.rules"
SID_RANGE = (1000000, 1999999)

# Suricata 7.0.10's default classification.config: classtype -> priority.
CLASSTYPES = {
    "not-suspicious": 3, "unknown": 3, "bad-unknown": 2, "attempted-recon": 2,
    "successful-recon-limited": 2, "successful-recon-largescale": 2, "attempted-dos": 2,
    "successful-dos": 2, "attempted-user": 1, "unsuccessful-user": 1, "successful-user": 1,
    "attempted-admin": 1, "successful-admin": 1, "rpc-portmap-decode": 2, "shellcode-detect": 1,
    "string-detect": 3, "suspicious-filename-detect": 2, "suspicious-login": 2, "system-call-detect": 2,
    "tcp-connection": 4, "trojan-activity": 1, "unusual-client-port-connection": 2, "network-scan": 3,
    "denial-of-service": 2, "non-standard-protocol": 2, "protocol-command-decode": 3,
    "web-application-activity": 2, "web-application-attack": 1, "misc-activity": 3, "misc-attack": 2,
    "icmp-event": 3, "inappropriate-content": 1, "policy-violation": 1, "default-login-attempt": 2,
    "targeted-activity": 1, "exploit-kit": 1, "external-ip-check": 2, "domain-c2": 1, "pup-activity": 2,
    "credential-theft": 1, "social-engineering": 2, "coin-mining": 2, "command-and-control": 1,
}
ATTACK_TARGET = {Direction.INBOUND: "Server", Direction.OUTBOUND: "Client_Endpoint",
                 Direction.INTERNAL: "Client_and_Server", Direction.BROADCAST: "Client_and_Server",
                 Direction.ANY: "Client_and_Server"}
DEPLOYMENT = {Direction.INBOUND: ("Perimeter",), Direction.OUTBOUND: ("Perimeter",),
              Direction.INTERNAL: ("Internal",), Direction.BROADCAST: ("Internal",),
              Direction.ANY: ("Perimeter", "Internal")}
DNS_QTYPE_CODES = {"AXFR": 252, "IXFR": 251, "ANY": 255}
DHCP_TYPES = {"discover": 1, "offer": 2, "request": 3, "decline": 4, "ack": 5, "nak": 6, "release": 7, "inform": 8}
PROBE_LIMIT_SECONDS = 3600
# A broadcast destination (docs/knowledge.md, "Broadcasts"): Suricata knows no subnet masks, so a rule matches the
# last byte of the IPv4 destination address (bytes 16-19 of the header): 255 is the limited broadcast
# 255.255.255.255 and the directed broadcast of every subnet of /24 or shorter (192.168.1.255, 10.0.1.255 of a /23).
# The same rule as Sigma's `dst_ip|endswith: .255`. ipv4.hdr is a sticky buffer: these options come after the payload
# options of a pattern, never before them.
BROADCAST_OPTIONS = ["ipv4.hdr", 'content:"|ff|"', "offset:19", "depth:1"]

# Bytes that may stand literally inside a content string; everything else goes into |hex|.
_SAFE_CONTENT = re.compile(rb"[A-Za-z0-9 #$%&'*+,./:<=>?@\[\]^_`{}~-]")


# --------------------------------------------------------------------------- escaping

def escape_msg(text: str) -> str:
    """A msg string: one line, with `\\`, `"` and `;` escaped the way Suricata's parser expects."""
    line = sanitize_line(text)
    return line.replace("\\", "\\\\").replace('"', '\\"').replace(";", "\\;")


def content_string(data: bytes) -> str:
    """Bytes as a Suricata content string: printable runs literal, the rest as lowercase |hex|."""
    binary = sum(not _SAFE_CONTENT.fullmatch(bytes([b])) for b in data)
    if binary * 2 >= len(data):  # mostly binary: all hex reads better than a mix
        return '"|' + " ".join(f"{b:02x}" for b in data) + '|"'
    out: list[str] = []
    pending: list[str] = []
    for byte in data:
        if _SAFE_CONTENT.fullmatch(bytes([byte])):
            if pending:
                out.append("|" + " ".join(pending) + "|")
                pending = []
            out.append(chr(byte))
        else:
            pending.append(f"{byte:02x}")
    if pending:
        out.append("|" + " ".join(pending) + "|")
    return '"' + "".join(out) + '"'


_DOMAIN_DOT = re.compile(r"(?<=\w)\.(?=[A-Za-z]{2})")


def defang_domains(text: str) -> str:
    """ET writes a domain in msg as `ads .conducent .com`, so the msg is not a live name (S406)."""
    return _DOMAIN_DOT.sub(" .", text)


def metadata_value(text: str) -> str:
    """A metadata value: letters, digits and underscores (ET style), nothing that ends an option."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", text).strip("_") or "none"


def reference_url(url: str) -> str:
    """`reference:url,` takes the URL without its scheme; `;` and `"` cannot appear in an option."""
    bare = re.sub(r"^https?://", "", url)
    return bare.replace(";", "%3B").replace('"', "%22").replace("\\", "%5C")


# Loopback as Suricata addresses; `any` becomes "anything but loopback" (DESIGN.md: no pattern matches it).
LOOPBACK = ("127.0.0.0/8", "::1")
NOT_LOOPBACK = "![" + ",".join(LOOPBACK) + "]"


def address(net: Net, kb: KnowledgeBase) -> str:
    """One side of a rule header. Loopback never matches: `any` and negated lists leave it out here;
    `$HOME_NET` (which holds loopback) is left to `header_addresses`, which knows the other side."""
    if net.kind == "home":
        return "$HOME_NET"
    if net.kind == "external":
        return "$EXTERNAL_NET"
    if net.kind == "broadcast":
        return NOT_LOOPBACK  # the broadcast byte: BROADCAST_OPTIONS; loopback (127.255.255.255) stays out
    addresses = kb.ip_lists[net.list_id].addresses if net.kind == "list" else ()
    if net.kind == "any" or not addresses:
        return NOT_LOOPBACK
    if net.negated:
        return "![" + ",".join((*addresses, *LOOPBACK)) + "]"
    return "[" + ",".join(addresses) + "]"


def home_net(kb: KnowledgeBase) -> str:
    """The HOME_NET value the rules assume: the knowledge's home set."""
    return "[" + ",".join(kb.home.addresses) + "]"


def home_without_loopback(kb: KnowledgeBase) -> str:
    """$HOME_NET minus loopback, negating only the families the home set has: Suricata reads a group whose
    family holds only negations as "every address of that family but these" (checked in 7.0.10)."""
    negated = [f"!{lo}" for lo, family in zip(LOOPBACK, (4, 6), strict=True) if kb.home.by_family(family)]
    return "[" + ",".join(["$HOME_NET", *negated]) + "]"


def header_addresses(pattern: Pattern, kb: KnowledgeBase) -> tuple[str, str]:
    """(source, destination) of the rule header. Home to home (internal) would match loopback, as $HOME_NET
    holds it: the source side leaves loopback out; the destination stays $HOME_NET, so a family that only
    the source group opens up (see home_without_loopback) still cannot match."""
    src, dst = address(pattern.src_net, kb), address(pattern.dst_net, kb)
    if src == dst == "$HOME_NET":
        src = home_without_loopback(kb)
    return src, dst


def ports(ranges: tuple[PortRange, ...], negate: bool = False) -> str:
    if not ranges:
        return "any"
    parts = [str(r.low) if r.is_single else f"{r.low}:{r.high}" for r in ranges]
    text = parts[0] if len(parts) == 1 else "[" + ",".join(parts) + "]"
    return "!" + text if negate else text


# --------------------------------------------------------------------------- planning

def _content_options(items: tuple[ContentMatch, ...]) -> list[str]:
    """Each item in order: absolute (offset/depth), relative to the previous match (distance/within), or, for an
    item that says neither, anywhere after it (distance:0). Suricata 7.0.10 counts `within` from `distance` bytes
    past the end of the previous match (measured): the item starts at least `distance` bytes after it and ends at
    most `distance + within` bytes after it."""
    opts: list[str] = []
    longest = max(range(len(items)), key=lambda i: len(items[i].data))
    for index, item in enumerate(items):
        opts.append(f"content:{content_string(item.data)}")
        if item.nocase:
            opts.append("nocase")
        absolute = item.offset is not None or item.depth is not None
        if item.offset or (index and item.offset is not None):
            opts.append(f"offset:{item.offset}")
        if item.depth:
            opts.append(f"depth:{item.depth}")
        if index and not absolute:
            opts.append(f"distance:{item.distance or 0}")
            if item.within is not None:
                opts.append(f"within:{item.within}")
        if len(items) > 1 and index == longest:
            opts.append("fast_pattern")
    return opts


# A URI value with dot segments, doubled slashes, %-escapes or backslashes is about the request as sent (a path
# traversal): libhtp's normalized http.uri resolves or decodes those, so such a value is matched in http.uri.raw.
RAW_URI = re.compile(r"/\.\.?(/|$)|//|%|\\")


def _http_options(match: Match) -> list[str]:
    """The request's sticky buffers: http.method (whole), http.uri (normalized; contains, startswith or the whole
    of it, with urilen; http.uri.raw for a value about the request as sent, RAW_URI), and http.request_header,
    which holds one header at a time as `Name: value` (so the value is matched in that header's line only, which
    http.header, all headers in one buffer, cannot promise). HTTP on any port: the buffers make the rule wait
    for Suricata's HTTP parser, which protocol detection starts on any port."""
    opts: list[str] = []
    uri = match.http_uri.encode() if match.http_uri else None
    if match.http_method:
        method = match.http_method.encode()
        opts += ["http.method", f"bsize:{len(method)}", f"content:{content_string(method)}"]
        if uri is None and not match.http_header:
            opts.append("fast_pattern")
    if uri is not None:
        raw = bool(RAW_URI.search(match.http_uri))
        if match.http_uri_match == "equals":  # urilen, not bsize on the URI buffer (slow, says suricata-check S902)
            opts.append(f"urilen:{len(uri)}{',raw' if raw else ''}")
        opts += ["http.uri.raw" if raw else "http.uri", f"content:{content_string(uri)}", "fast_pattern"]
        if match.http_uri_match == "startswith":
            opts.append("startswith")
    if match.http_header:
        name = match.http_header.encode() + b": "
        opts += ["http.request_header", f"content:{content_string(name if match.http_header_value else name[:-1])}",
                 "nocase", "startswith"]
        if match.http_header_value:
            opts += [f"content:{content_string(match.http_header_value.encode())}", "nocase", "distance:0"]
            if uri is None:
                opts.append("fast_pattern")
    return opts


def _ntp_options(match: Match) -> list[str]:
    """The NTP header (RFC 5905; RFC 1305 appendix B for mode 6; ntpd's ntp_request.h for mode 7): the mode is the
    low 3 bits of byte 0. A mode 7 request has its response bit (0x80 of byte 0) clear and its request code in
    byte 3; a mode 6 request has its response bit (0x80 of byte 1) clear and its opcode in the low 5 bits of
    byte 1. byte_test's bitmask keeps only those bits."""
    mode = match.ntp_mode
    if mode == 7:
        opts = ["byte_test:1,=,7,0,bitmask 0x87"]
        if match.ntp_request:
            codes = "".join(f"\\x{c:02x}" for c in sorted(NTP_REQUESTS[match.ntp_request][1]))
            opts.append(f'pcre:"/^.{{3}}[{codes}]/s"')
        return opts
    opts = [f"byte_test:1,=,{mode},0,bitmask 0x07"]
    if mode == 6:
        if match.ntp_request:
            opts.append(f"byte_test:1,=,{NTP_REQUESTS[match.ntp_request][1][0]},1,bitmask 0x9f")
        else:
            opts.append("byte_test:1,=,0,1,bitmask 0x80")
    return opts


def _match_options(match: Match, transport: str) -> list[str]:
    kind = match.kind
    if kind == "content":
        return _content_options(match.contents)
    if kind == "dns" and match.dns_query:
        name = match.dns_query
        return ["dns.query", f"bsize:{len(name)}", f"content:{content_string(name.encode())}", "nocase"]
    if kind == "dns":
        code = DNS_QTYPE_CODES[match.dns_qtype]
        # 7.0 has no dns.rrtype: match the end of the question name, the type and class IN.
        question = bytes([0, code >> 8, code & 0xFF, 0, 1])
        offset = 14 if transport == "tcp" else 12
        return [f"content:{content_string(question)}", f"offset:{offset}"]
    if kind == "snmp":
        community = match.snmp_community.encode()
        return ["snmp.community", f"bsize:{len(community)}", f"content:{content_string(community)}"]
    if kind == "ftp":
        user = match.ftp_user.encode()
        return ['content:"USER|20|"', "depth:5", "nocase", f"content:{content_string(user)}", "distance:0",
                f"within:{len(user)}", "nocase", "fast_pattern",
                f'pcre:"/^USER\\s+{re.escape(match.ftp_user)}\\r?$/mi"']
    if kind == "tftp":
        opcode = b"\x00\x01" if match.tftp_opcode == "read" else b"\x00\x02"
        opts = [f"content:{content_string(opcode)}", "depth:2"]
        if match.tftp_filename:
            opts += [f"content:{content_string(match.tftp_filename.encode())}", "distance:0", "nocase",
                     "fast_pattern"]
        return opts
    if kind == "dhcp":
        code = DHCP_TYPES[match.dhcp_message_type]
        return ['content:"|63 82 53 63|"', "offset:236", "depth:4",
                f"content:{content_string(bytes([53, 1, code]))}", "distance:0", "fast_pattern"]
    if kind == "login":
        names = "|".join(re.escape(u) for u in match.login_users)
        # The name starts a line: at the start of the client's data, after a line end, or right after
        # the client's last telnet negotiation (IAC WILL/WONT/DO/DONT option, or IAC SE). Raw stream
        # chunks do not begin at the login prompt, so `^` alone misses a name sent after negotiation.
        start = "(?:^|[\\r\\n\\x00]|\\xff[\\xfb-\\xfe][\\x00-\\xff]|\\xff\\xf0)"
        return [f'pcre:"/{start}(?:{names})\\r?[\\r\\n\\x00]/"']
    if kind == "rpc":
        program = match.rpc_program.to_bytes(4, "big")
        call = bytes(4) + bytes([0, 0, 0, 2]) + program  # msg_type CALL, rpcvers 2, program
        offset = 8 if transport == "tcp" else 4  # tcp carries a 4-byte record mark before the xid
        return [f"content:{content_string(call)}", f"offset:{offset}", f"depth:{len(call)}"]
    if kind == "netbios":
        # wildcard name "*" in first-level encoding, type NBSTAT (0x21), class IN
        question = b"CK" + b"A" * 30 + b"\x00\x00\x21\x00\x01"
        return [f"content:{content_string(question)}", "offset:13", f"depth:{len(question)}"]
    if kind == "shell":
        return [f"content:{content_string(match.shell_response.encode())}"]
    if kind == "smtp":
        return _smtp_options(match)
    if kind == "http":
        return _http_options(match)
    if kind == "ntp":
        return _ntp_options(match)
    raise ValueError(f"unhandled match kind {kind}")


def _smtp_options(match: Match) -> list[str]:
    """A relay refusal is a 55x reply that names relaying (Postfix "554 5.7.1 ...: Relay access denied", sendmail
    "550 5.7.1 ... Relaying denied", Exchange "550 5.7.1 Unable to relay", Exim "550 relay not permitted"). It is
    matched in the raw stream to the client: on 7.0.10 `app-layer-protocol:smtp` does not match in that direction
    (the SMTP parser is detected from the client's commands only: APPLAYER_DETECT_PROTOCOL_ONLY_ONE_DIRECTION).
    A relay route is a RCPT TO address that asks the server to pass the mail on: a source route `<@host:user@dom>`,
    a `%` hack `<user%dom@host>`, a `!` path `<dom!user@host>` or a quoted local part holding an `@`."""
    if match.smtp_reply == "relay-denied":
        return ['content:"relay"', "nocase", "fast_pattern", 'pcre:"/^55\\d[ -][^\\r\\n]*relay/mi"']
    return ["app-layer-protocol:smtp", 'content:"RCPT"', "nocase", "fast_pattern",
            'pcre:"/^RCPT\\s+TO\\s*:\\s*<?(?:@|[^\\s<>@]*[%!][^\\s<>@]*@|\\x22[^\\x22]*@)/mi"']


def _confidence(pattern: Pattern) -> str:
    if pattern.match is None:
        return "Low"
    return "High" if pattern.match.kind in ("dns", "snmp", "ftp", "rpc", "netbios", "dhcp", "smtp", "http",
                                                            "ntp") else "Medium"


# Why a sweep of many ports has no Suricata rule (DESIGN.md: a message says what it measures).
DISTINCT_PORTS_GAP = ("counts distinct destination ports per source, which Suricata 7 cannot: threshold and "
                      "detection_filter count packets, xbits key on hosts (ip_src, ip_dst, ip_pair) and flowbits "
                      "on one connection, so one busy client of one port would pass for a port scan")


def _sweep_options(pattern: Pattern) -> list[str]:
    """Count distinct destination hosts per source: the xbit (one per rule, per source/destination pair)
    lets only the first packet of each pair within the window through, and the threshold counts those.
    Measured on 7.0.10: with count N it alerts on the Nth distinct host, never on N-1, and not on
    N+2 connections to one host, in single and autofp runmodes (autofp reports, as the alert's
    destination, the host whose packet completed the count in processing order, not capture order)."""
    sweep = pattern.sweep
    bit = f"rulegen.{pattern.id}"
    return [f"xbits:isnotset,{bit},track ip_pair", f"xbits:set,{bit},track ip_pair,expire {sweep.seconds}",
            f"threshold:type both, track by_src, count {sweep.count}, seconds {sweep.seconds}"]


def _measure(pattern: Pattern) -> str:
    """What the rule counts, for its msg: a sweep names its count, window and what is distinct."""
    if pattern.detect is not Detect.SWEEP:
        return ""
    return f", {pattern.sweep.count} distinct hosts in {pattern.sweep.seconds} s"


def plan(pattern: Pattern, kb: KnowledgeBase) -> Plan:
    if pattern.detect is Detect.SWEEP and pattern.sweep.distinct != "dst_ip":
        return gap(pattern, DISTINCT_PORTS_GAP)
    src, dst = header_addresses(pattern, kb)
    sport = ports(pattern.src_ports)
    dport = ports(pattern.dst_ports_except, negate=True) if pattern.dst_ports_except else ports(pattern.dst_ports)
    to_client = pattern.flow == "to_client"
    if to_client:  # the answer travels from the server port back to the client
        src, dst, sport, dport = dst, src, dport, sport
    tcp = pattern.transport == "tcp"
    options: list[str] = []
    if pattern.detect is Detect.PAYLOAD:
        options.append("flow:established,to_client" if to_client else
                       ("flow:established,to_server" if tcp else "flow:to_server"))
    else:
        options.append(f"flow:{pattern.flow}")
    if tcp and pattern.detect in (Detect.PROBE, Detect.SWEEP):
        # prefilter: the rule is looked at for SYN packets only, not for every packet of the port's flows
        options.append("flags:S,12; prefilter")
    if pattern.match is not None:
        options += _match_options(pattern.match, pattern.transport)
    if pattern.dst_net.kind == "broadcast":
        options += BROADCAST_OPTIONS
    if pattern.detect is Detect.SWEEP:
        options += _sweep_options(pattern)
    elif pattern.detect in (Detect.PROBE, Detect.TRAFFIC):
        options.append(f"threshold:type limit, track by_src, count 1, seconds {PROBE_LIMIT_SECONDS}")
    entry = kb.entry(pattern.entry_id)
    references = [f"url,{reference_url(u)}" for u in entry.references]
    references += [f"cve,{c.removeprefix('CVE-')}" for c in pattern.cves]
    meta = [
        ("attack_target", ATTACK_TARGET[pattern.direction]),
        *(("deployment", d) for d in DEPLOYMENT[pattern.direction]),
        ("performance_impact", "Moderate" if pattern.match and pattern.match.kind == "login" else "Low"),
        ("confidence", _confidence(pattern)),
        ("signature_severity", SEVERITY[pattern.severity].signature_severity),
    ]
    if pattern.attack:
        tactic, technique = tactics()[pattern.attack.tactic], techniques()[pattern.attack.technique]
        meta += [("mitre_tactic_id", tactic.id), ("mitre_tactic_name", et_name(tactic.name)),
                 ("mitre_technique_id", technique.id), ("mitre_technique_name", et_name(technique.name))]
    meta += [("cve", metadata_value(c.replace("-", "_"))) for c in pattern.cves]
    meta += [("rulegen_entry", metadata_value(entry.id)), ("rulegen_pattern", metadata_value(pattern.id))]
    context: dict[str, Any] = {
        "pattern_id": pattern.id,
        "entry_id": entry.id,
        "header": f"{pattern.transport} {src} {sport} -> {dst} {dport}",
        "msg": escape_msg(defang_domains(f"{kb.pack_of(pattern).msg_prefix} {pattern.category} {pattern.title}"
                                         f"{_measure(pattern)}")),
        "options": options,
        "references": references,
        "classtype": pattern.classtype,
        "priority": SEVERITY[pattern.severity].suricata_priority,
        "metadata": [f"{k} {metadata_value(v)}" for k, v in meta],
    }
    return Plan(pattern, context=context)


def render(plans: list[Plan], stamps: dict[str, Stamp], env: Any, kb: KnowledgeBase) -> list[Artifact]:
    rules = []
    for p in plans:
        stamp = stamps[p.pattern.id]
        rules.append({**p.context, "sid": stamp.sid, "rev": stamp.rev,
                      "created_at": stamp.created.replace("-", "_"), "updated_at": stamp.updated.replace("-", "_")})
    rules.sort(key=lambda r: r["sid"])
    ids = [r["pattern_id"] for r in rules]
    text = env.get_template("suricata/rulegen.rules.j2").render(rules=rules, home_net=home_net(kb))
    sid_map = env.get_template("suricata/sid-msg.map.j2").render(rules=rules)
    # The members' time is the newest rule's updated date, so the tarball changes only with the rules.
    newest = max((stamps[pid].updated for pid in ids), default="1970-01-01")
    mtime = calendar.timegm(dt.date.fromisoformat(newest).timetuple())
    tarball = targz({TARBALL_RULES: text.encode("utf-8")}, mtime)
    return [Artifact(RULES_PATH, text, ids), Artifact(SID_MAP_PATH, sid_map, ids),
            Artifact(TARBALL_PATH, "", ids, data=tarball),
            Artifact(TARBALL_MD5_PATH, hashlib.md5(tarball).hexdigest() + "\n")]
