"""Packet captures that show a threat pattern on the wire, derived from the pattern's typed fields.

Addresses, ports, transport, direction and the kind of detection come from the pattern, so a new
pattern gets a capture without new code. Only the application messages are hand-written: one
builder per match kind (`_MESSAGES`), each producing the real protocol message with scapy's layers
where scapy has them. Packets only ever go into pcap files; nothing here sends on an interface.

Every capture is deterministic: fixed timestamps, sequence numbers, ids and MAC addresses.
"""

from __future__ import annotations

import ipaddress
import itertools
import struct
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path

from rulegen.model import NTP_REQUESTS, ContentMatch, Detect, Direction, KnowledgeBase, Match, Net, Pattern, PortRange
from rulegen.prove.addresses import Addressing, addressing

# Concrete addresses beside the home and outside hosts of `hosts(kb)`.
BROADCAST = "255.255.255.255"
LOOPBACK4, LOOPBACK6 = "127.0.0.1", "::1"
LOOPBACK_BROADCAST = "127.255.255.255"  # ends in .255 like a directed broadcast, and is loopback
EPHEMERAL = 49152  # first client port of the IANA dynamic range
FALLBACK_SERVER_PORT = 40000  # a server port for patterns that leave the destination port open
BASE_TIME = 1_700_000_000.0  # 2023-11-14T22:13:20Z: fixed, so captures are byte-identical
STEP = 0.01  # seconds between packets

# Well-known server ports, used only when a pattern leaves its destination port open.
KIND_PORTS = {"dns": 53, "snmp": 161, "ftp": 21, "tftp": 69, "dhcp": 67, "login": 23, "netbios": 137, "smtp": 25,
              "http": 80, "ntp": 123}
RPC_PORTS = {100000: 111, 100003: 2049}

Message = tuple[bool, bytes]  # (sent by the client?, application bytes)


def _scapy():  # noqa: ANN202 - imported lazily: scapy is slow to import and only needed here
    import scapy.all as scapy_all

    return scapy_all


# --------------------------------------------------------------------------- addresses and ports

@dataclass(frozen=True)
class Hosts:
    """The home and outside hosts of the captures, from the knowledge's home set (rulegen.prove.addresses), so that
    the replays' HOME_NET (the same set) reads them as the pattern means. IPv6 twins (same host number) serve a flow
    whose other end an IPv6 list gives; a home without IPv6 has no home twins (None)."""

    nets: Addressing
    home: str  # the home end of a flow
    peer: str  # the other home host of an internal flow
    client: str  # look-alikes (quiet captures): a home host in the client's place
    server: str  # ... and in the server's place
    external: str
    directed_broadcast: str  # the broadcast of the home hosts' /24, as a neighbour on the segment sends it
    wide: tuple[str, str]  # a client and a unicast host (.254) of a home net wider than /24
    spare: tuple[str, ...]  # further outside hosts, for an address a negated list must not hold
    home6: str | None
    peer6: str | None
    client6: str | None
    server6: str | None
    external6: str


def hosts(kb: KnowledgeBase) -> Hosts:
    """Host numbers .10 (home), .20 (peer), .30 (client), .40 (server) and .5 (outside) of the picked networks."""
    nets = addressing(kb)
    home, peer, client, server = (nets.home.format(n) for n in (10, 20, 30, 40))
    home6, peer6, client6, server6 = (nets.home6.format(n) if nets.home6 else None for n in (10, 20, 30, 40))
    return Hosts(nets, home, peer, client, server, external=nets.outside.format(5),
                 directed_broadcast=nets.broadcasts[0], wide=(nets.wide.format(10), nets.wide.format(254)),
                 spare=tuple(o.format(7) for o in nets.spare), home6=home6, peer6=peer6, client6=client6,
                 server6=server6, external6=nets.outside6.format(5))


def _list_address(addresses: tuple[str, ...]) -> str:
    """The list's first address (the first host of a CIDR block)."""
    net = ipaddress.ip_network(addresses[0], strict=False)
    if net.num_addresses == 1:
        return str(net.network_address)
    return str(net.network_address + 1)


def _in_list(addr: str, addresses: tuple[str, ...]) -> bool:
    ip = ipaddress.ip_address(addr)
    return any(ip in ipaddress.ip_network(a, strict=False) for a in addresses)


def _side_default(pattern: Pattern, side: str, h: Hosts) -> str:
    """What `any` (or an empty list) becomes on one side of the pattern's flow."""
    if side == "src":
        return h.home if pattern.direction in (Direction.BROADCAST, Direction.INTERNAL,
                                               Direction.OUTBOUND) else h.external
    if pattern.direction is Direction.BROADCAST:
        return BROADCAST
    return h.external if pattern.direction is Direction.OUTBOUND else h.home


def resolve(net: Net, pattern: Pattern, kb: KnowledgeBase, side: str) -> str:
    """A concrete address for one side (`src` = the client, `dst` = the server) of a pattern."""
    h = hosts(kb)
    if net.kind == "home":
        return h.peer if side == "dst" and pattern.src_net.kind == "home" else h.home
    if net.kind == "external":
        return h.external
    if net.kind == "broadcast":
        return BROADCAST
    if net.kind == "list":
        addresses = kb.ip_lists[net.list_id].addresses
        if addresses and not net.negated:
            return _list_address(addresses)
        for candidate in (_side_default(pattern, side, h), h.home, h.external, *h.spare):
            if not addresses or not _in_list(candidate, addresses):
                return candidate
    return _side_default(pattern, side, h)


def _as_v6(address: str, net: Net, h: Hosts) -> str:
    """The IPv6 twin of a home or outside host, for a flow whose other end is IPv6. Without a home twin (home holds
    no IPv6), a home side cannot be shown (the replays' HOME_NET has no IPv6 address); any other side takes an
    outside host, which its rule's address (any, a negated list) takes in as well."""
    twin = {h.home: h.home6, h.peer: h.peer6, h.external: h.external6}.get(address, address)
    if twin is None and net.kind == "home":
        raise ValueError("the home set holds no IPv6 network, and the other end of the flow is an IPv6 list's")
    return twin or h.external6


def endpoints(pattern: Pattern, kb: KnowledgeBase) -> tuple[str, str]:
    """(client address, server address); IPv4 unless an IP list forces IPv6."""
    src = resolve(pattern.src_net, pattern, kb, "src")
    dst = resolve(pattern.dst_net, pattern, kb, "dst")
    v6 = [ipaddress.ip_address(a).version == 6 for a in (src, dst)]
    if any(v6) and not all(v6):
        h = hosts(kb)
        src, dst = _as_v6(src, pattern.src_net, h), _as_v6(dst, pattern.dst_net, h)
    return src, dst


def _outside(ranges: tuple[PortRange, ...], start: int) -> int:
    """The first port from `start` upward that none of the ranges covers."""
    for port in itertools.chain(range(start, 65536), range(1, start)):
        if not any(r.low <= port <= r.high for r in ranges):
            return port
    raise ValueError("the ranges cover every port")


def server_port(pattern: Pattern) -> int:
    if pattern.dst_ports_except:
        return _outside(pattern.dst_ports_except, 1024)
    if pattern.dst_ports:
        return pattern.dst_ports[0].low
    match = pattern.match
    if match is not None and match.kind == "rpc":
        return RPC_PORTS.get(match.rpc_program, FALLBACK_SERVER_PORT)
    if match is not None and match.kind in KIND_PORTS:
        return KIND_PORTS[match.kind]
    return FALLBACK_SERVER_PORT


def client_port(pattern: Pattern, index: int = 0) -> int:
    return pattern.src_ports[0].low if pattern.src_ports else EPHEMERAL + index


# --------------------------------------------------------------------------- packets

class Wire:
    """Builds the packets of one capture: a clock, MAC addresses, UDP datagrams and TCP flows."""

    def __init__(self, start: float = BASE_TIME, broadcasts: tuple[str, ...] = (BROADCAST,)) -> None:
        self.s = _scapy()
        self.clock = start
        self.packets: list = []
        self._macs: dict[str, str] = {}
        self.broadcasts = broadcasts  # addresses sent to the Ethernet broadcast

    def _mac(self, addr: str) -> str:
        if addr in self.broadcasts:
            return "ff:ff:ff:ff:ff:ff"
        if addr not in self._macs:
            self._macs[addr] = f"02:00:5e:00:00:{len(self._macs) + 1:02x}"
        return self._macs[addr]

    def _ip(self, src: str, dst: str):  # noqa: ANN202
        s = self.s
        if ipaddress.ip_address(src).version == 6:
            return s.Ether(src=self._mac(src), dst=self._mac(dst)) / s.IPv6(src=src, dst=dst)
        return s.Ether(src=self._mac(src), dst=self._mac(dst)) / s.IP(src=src, dst=dst, id=len(self.packets) + 1)

    def emit(self, packet, gap: float = STEP) -> None:  # noqa: ANN001
        self.clock += gap
        packet.time = self.clock
        self.packets.append(packet)

    def udp(self, src: str, dst: str, sport: int, dport: int, payload: bytes = b"") -> None:
        self.emit(self._ip(src, dst) / self.s.UDP(sport=sport, dport=dport) / self.s.Raw(payload)
                  if payload else self._ip(src, dst) / self.s.UDP(sport=sport, dport=dport))

    def tcp(self, client: str, server: str, sport: int, dport: int) -> TcpFlow:
        return TcpFlow(self, client, server, sport, dport)

    def syn_probe(self, client: str, server: str, sport: int, dport: int, reset: bool = True) -> None:
        """A connection attempt: SYN, answered by a closed port's RST+ACK."""
        flow = self.tcp(client, server, sport, dport)
        flow.segment(True, "S")
        if reset:
            flow.segment(False, "RA", ack_only=True)

    def write(self, path: Path) -> Path:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.s.wrpcap(str(path), self.packets)
        return path


class TcpFlow:
    """One TCP connection with real sequence numbers: handshake, data segments, FIN/ACK close."""

    def __init__(self, wire: Wire, client: str, server: str, sport: int, dport: int) -> None:
        self.wire, self.client, self.server, self.sport, self.dport = wire, client, server, sport, dport
        self.seq = {True: 1_000_000 + sport, False: 2_000_000 + dport}  # next sequence number per side
        self.acked = {True: 0, False: 0}  # what each side has acknowledged

    def segment(self, from_client: bool, flags: str, payload: bytes = b"", ack_only: bool = False) -> None:
        s = self.wire.s
        src, dst = (self.client, self.server) if from_client else (self.server, self.client)
        sport, dport = (self.sport, self.dport) if from_client else (self.dport, self.sport)
        seq = self.seq[from_client]
        if ack_only and flags == "RA":  # a RST answering a SYN: seq 0, acknowledges the SYN
            seq, ack = 0, self.seq[not from_client]
        else:
            ack = self.seq[not from_client] if "A" in flags else 0
        tcp = s.TCP(sport=sport, dport=dport, flags=flags, seq=seq, ack=ack, window=64240)
        packet = self.wire._ip(src, dst) / tcp
        if payload:
            packet = packet / s.Raw(payload)
        self.wire.emit(packet)
        self.seq[from_client] += len(payload) + (1 if ("S" in flags or "F" in flags) else 0)

    def handshake(self) -> TcpFlow:
        self.segment(True, "S")
        self.segment(False, "SA")
        self.segment(True, "A")
        return self

    def send(self, from_client: bool, data: bytes) -> TcpFlow:
        """Data in segments of at most 1400 bytes, each acknowledged by the other side."""
        for start in range(0, len(data), 1400):
            self.segment(from_client, "PA", data[start:start + 1400])
            self.segment(not from_client, "A")
        return self

    def close(self) -> None:
        self.segment(True, "FA")
        self.segment(False, "FA")
        self.segment(True, "A")

    def conversation(self, messages: list[Message]) -> None:
        self.handshake()
        for from_client, data in messages:
            self.send(from_client, data)
        self.close()


# --------------------------------------------------------------------------- protocol messages

def _dns_query(match: Match, transport: str) -> list[Message]:
    s = _scapy()
    if match.dns_qtype == "ANY":  # an ANY query, answered the RFC 8482 way: one synthesized HINFO record
        question = s.DNSQR(qname="example.com", qtype=255)
        query = s.DNS(id=0x4A20, rd=1, qd=question)
        answer = s.DNS(id=0x4A20, qr=1, aa=1, rd=1, qd=question,
                       an=s.DNSRR(rrname="example.com", type="HINFO", ttl=3600, rdata=b"\x07RFC8482\x00"))
    elif match.dns_qtype:  # a zone transfer request, refused by the server
        question = s.DNSQR(qname="example.com", qtype=match.dns_qtype)
        query = s.DNS(id=0x4A1F, rd=0, qd=question)
        answer = s.DNS(id=0x4A1F, qr=1, aa=1, rcode=5, qd=question)
    else:
        question = s.DNSQR(qname=match.dns_query, qtype="A")
        query = s.DNS(id=0x4A1E, rd=1, qd=question)
        answer = s.DNS(id=0x4A1E, qr=1, rd=1, ra=1, qd=question,
                       an=s.DNSRR(rrname=match.dns_query, type="A", ttl=300, rdata="198.51.100.80"))
    messages = [(True, bytes(query)), (False, bytes(answer))]
    if transport == "tcp":  # DNS over TCP: each message behind a 2-byte length prefix
        messages = [(c, struct.pack("!H", len(m)) + m) for c, m in messages]
    return messages


def _snmp(match: Match, transport: str) -> list[Message]:
    s = _scapy()
    oid = s.ASN1_OID("1.3.6.1.2.1.1.5.0")  # sysName.0
    request = s.SNMP(community=match.snmp_community,
                     PDU=s.SNMPget(id=0x2C1B, varbindlist=[s.SNMPvarbind(oid=oid)]))
    return [(True, bytes(request))]


def _ftp(match: Match, transport: str) -> list[Message]:
    return [(False, b"220 ProFTPD Server ready.\r\n"),
            (True, b"USER " + match.ftp_user.encode() + b"\r\n"),
            (False, b"331 Anonymous login ok, send your complete email address as your password\r\n"),
            (True, b"PASS guest@example.org\r\n"),
            (False, b"230 Anonymous access granted, restrictions apply\r\n"),
            (True, b"QUIT\r\n"),
            (False, b"221 Goodbye.\r\n")]


def _tftp(match: Match, transport: str) -> list[Message]:
    s = _scapy()
    if match.tftp_opcode == "read":
        request = s.TFTP() / s.TFTP_RRQ(filename=(match.tftp_filename or "pxelinux.0").encode(), mode=b"octet")
    else:
        request = s.TFTP() / s.TFTP_WRQ(filename=(match.tftp_filename or "router-confg").encode(), mode=b"octet")
    return [(True, bytes(request))]


def _dhcp(match: Match, transport: str) -> list[Message]:
    s = _scapy()
    server = "192.168.1.1"
    bootp = s.BOOTP(op=1 if match.dhcp_message_type in ("discover", "request", "decline", "release",
                                                          "inform") else 2,
                    xid=0x3903F326, flags=0x8000, yiaddr="192.168.1.100", siaddr=server,
                    chaddr=bytes.fromhex("02005e1000aa") + bytes(10))
    options = [("message-type", match.dhcp_message_type), ("server_id", server),
               ("subnet_mask", "255.255.255.0"), ("router", server), ("name_server", server),
               ("lease_time", 86400), "end"]
    return [(True, bytes(bootp / s.DHCP(options=options)))]


def _login(match: Match, transport: str) -> list[Message]:
    """A telnet login: option negotiation, the prompt, then the user name line."""
    iac = b"\xff"
    do, will, sb, se = b"\xfd", b"\xfb", b"\xfa", b"\xf0"
    ttype, naws, echo, sga = b"\x18", b"\x1f", b"\x01", b"\x03"
    user = match.login_users[0].encode()
    messages: list[Message] = [
        (False, iac + do + ttype + iac + do + naws),
        (True, iac + will + ttype + iac + will + naws),
        (True, iac + sb + naws + b"\x00\x50\x00\x18" + iac + se),
        (False, iac + sb + ttype + b"\x01" + iac + se),
        (True, iac + sb + ttype + b"\x00XTERM" + iac + se),
        (False, iac + will + echo + iac + will + sga),
        (True, iac + do + echo + iac + do + sga),
        (False, b"\r\nIRIX (octane)\r\n\r\nlogin: "),
    ]
    # a scripted login sends the whole line at once; the server echoes it (it negotiated WILL ECHO)
    messages += [(True, user + b"\r\n"), (False, user + b"\r\n"),
                 (False, b"IRIX Release 6.5 IP30 octane\r\n$ ")]
    return messages


def _rpc(match: Match, transport: str) -> list[Message]:
    """An ONC RPC call (RFC 5531) with AUTH_NULL, and the server's accepted reply."""
    program = match.rpc_program
    if program == 100000:  # portmapper GETPORT: where does mountd (100005 v1, udp) listen?
        version, procedure, args = 2, 3, struct.pack("!IIII", 100005, 1, 17, 0)
        result = struct.pack("!I", 635)
    else:  # the NULL procedure every program answers
        version, procedure, args, result = 1, 0, b"", b""
    xid = 0x5EED0001
    call = struct.pack("!IIIIII", xid, 0, 2, program, version, procedure) + bytes(16) + args
    reply = struct.pack("!III", xid, 1, 0) + bytes(8) + struct.pack("!I", 0) + result
    messages = [(True, call), (False, reply)]
    if transport == "tcp":  # record marking: last fragment bit + length
        messages = [(c, struct.pack("!I", 0x80000000 | len(m)) + m) for c, m in messages]
    return messages


def _netbios(match: Match, transport: str) -> list[Message]:
    s = _scapy()
    query = s.NBNSHeader(NAME_TRN_ID=0x81C2, NM_FLAGS=0) / s.NBNSNodeStatusRequest()
    return [(True, bytes(query))]


def _shell(match: Match, transport: str) -> list[Message]:
    """The intruder types `id`; the backdoor's shell answers with the response."""
    return [(False, b"# "), (True, b"id\n"), (False, match.shell_response.encode() + b"\n# "),
            (True, b"exit\n")]


def _smtp(match: Match, transport: str) -> list[Message]:
    """One SMTP session of a relay test: a foreign recipient refused by the server (it hangs up after the
    refusal), or a recipient with a % path that an open relay accepts."""
    if match.smtp_reply == "relay-denied":
        rcpt, answer = b"<victim@example.org>", b"554 5.7.1 <victim@example.org>: Relay access denied\r\n"
    else:
        rcpt, answer = b"<victim%example.org@mail.example.net>", b"250 2.1.5 Ok\r\n"
    return [(False, b"220 mail.example.net ESMTP Postfix (Debian/GNU)\r\n"),
            (True, b"EHLO relaytest.example.com\r\n"),
            (False, b"250-mail.example.net\r\n250-PIPELINING\r\n250-SIZE 10240000\r\n250 8BITMIME\r\n"),
            (True, b"MAIL FROM:<spammer@example.com>\r\n"), (False, b"250 2.1.0 Ok\r\n"),
            (True, b"RCPT TO:" + rcpt + b"\r\n"), (False, answer)]


def content_payload(items: tuple[ContentMatch, ...], gaps: tuple[int, ...] | None = None) -> bytes:
    """The items laid out as the match reads them: an absolute item at its offset, a relative one `distance` bytes
    after the previous item (or `gaps[i]` bytes, to place it elsewhere on purpose), the rest right after the
    previous item. The filler is spaces between text items, zero bytes where an item is binary."""
    printable = all(0x20 <= b < 0x7F for item in items for b in item.data)
    filler = b" " if printable else b"\x00"
    buf = bytearray()
    for index, item in enumerate(items):
        if gaps is not None and index:
            start = len(buf) + gaps[index]
        elif item.offset is not None:
            start = max(item.offset, len(buf))
        else:
            start = len(buf) + (item.distance or 0)
        buf += filler * (start - len(buf)) + item.data
    return bytes(buf) + b"\r\n"


def _content(match: Match, transport: str) -> list[Message]:
    """The contents in order, each where the match expects it; the client sends them."""
    return [(True, content_payload(match.contents))]


def http_request(method: str, uri: str, headers: list[tuple[str, str]]) -> bytes:
    """An HTTP/1.1 request as curl or a Docker client writes it; a POST carries a small JSON body."""
    body = b'{"Image":"alpine","Cmd":["sh"]}' if method in ("POST", "PUT", "PATCH") else b""
    lines = [f"{method} {uri} HTTP/1.1", *(f"{name}: {value}" for name, value in headers)]
    if body:
        lines += ["Content-Type: application/json", f"Content-Length: {len(body)}"]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


HTTP_OK = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}"
HTTP_HOST = "192.168.1.10:8080"
HTTP_AGENT = "curl/7.88.1"


def _http_uri(match: Match) -> str:
    """A request target the match's uri fits: inside a longer path or in a query (contains), followed by a query
    (startswith), or exactly (equals)."""
    uri = match.http_uri or "/"
    if match.http_uri_match == "contains" and match.http_uri:  # inside a longer path, or a query
        return "/v1.41" + uri if uri.startswith("/") else "/app?" + uri
    if match.http_uri_match == "startswith" and match.http_uri:
        return uri + ("&" if "?" in uri else "?") + "all=1"
    return uri


def _http_headers(match: Match, named: bool = True) -> list[tuple[str, str]]:
    """Host, User-Agent and Accept, with the match's header in its place (holding the match's value) or, with
    `named` false, without it."""
    headers = {"Host": HTTP_HOST, "User-Agent": HTTP_AGENT, "Accept": "*/*"}
    if match.http_header:
        for name in [n for n in headers if n.lower() == match.http_header.lower()]:
            del headers[name]
        if named:
            headers[match.http_header] = match.http_header_value or "1"
    return list(headers.items())


def http_match_request(match: Match) -> bytes:
    """The request an http match describes."""
    return http_request(match.http_method or "GET", _http_uri(match), _http_headers(match))


def _http(match: Match, transport: str) -> list[Message]:
    """The request the match describes, and the server's answer."""
    return [(True, http_match_request(match)), (False, HTTP_OK)]


def ntp_message(mode: int, code: int | None = None, version: int | None = None, sequence: int = 1) -> bytes:
    """An NTP request of `mode`: a mode 7 request (ntpdc's req_pkt: version 2, implementation XNTPD (3), request
    `code`, 40 data bytes), a mode 6 control request (ntpq's header: opcode `code`, `sequence`), or a standard
    48-byte message (RFC 5905) of the mode."""
    if mode == 7:
        return bytes([(version or 2) << 3 | 7, 0, 3, code or 0]) + bytes(44)
    if mode == 6:
        return bytes([(version or 2) << 3 | 6, code or 1]) + struct.pack("!HHHHH", sequence, 0, 0, 0, 0)
    s = _scapy()
    sent = BASE_TIME + 2_208_988_800  # NTP era: seconds since 1900
    return bytes(s.NTP(version=version or 4, mode=mode, stratum=0 if mode == 3 else 2, ref=0, orig=0, recv=0,
                       sent=sent))  # every timestamp given: scapy fills a missing one with the clock


def _ntp(match: Match, transport: str) -> list[Message]:
    codes = NTP_REQUESTS[match.ntp_request][1] if match.ntp_request else (None,)
    return [(True, ntp_message(match.ntp_mode, codes[0]))]


_MESSAGES: dict[str, Callable[[Match, str], list[Message]]] = {
    "content": _content, "dns": _dns_query, "snmp": _snmp, "ftp": _ftp, "tftp": _tftp, "dhcp": _dhcp,
    "login": _login, "rpc": _rpc, "netbios": _netbios, "shell": _shell, "smtp": _smtp, "http": _http, "ntp": _ntp,
}


def messages(match: Match, transport: str, flow: str = "to_server") -> list[Message]:
    """The application messages that show `match`; for `flow: to_client` the server's side carries it."""
    built = _MESSAGES[match.kind](match, transport)
    if match.kind == "content" and flow == "to_client":
        built = [(not c, m) for c, m in built]
    return built


# --------------------------------------------------------------------------- captures

def _sweep_targets(pattern: Pattern, client: str, server: str, count: int) -> Iterator[tuple[str, int]]:
    """`count` distinct (address, port) targets: distinct ports of the pattern, or distinct hosts."""
    port = server_port(pattern)
    if pattern.sweep.distinct == "dst_port":
        if pattern.dst_ports:
            ports = (p for r in pattern.dst_ports for p in range(r.low, r.high + 1))
        else:
            ports = (p for p in range(1, 65536) if not any(r.low <= p <= r.high for r in pattern.dst_ports_except))
        for p in itertools.islice(ports, count):
            yield server, p
        return
    if server == LOOPBACK6:  # IPv6 has one loopback address: every probe goes to it
        yield from itertools.repeat((server, port), count)
        return
    network = ipaddress.ip_network(f"{server}/{24 if ':' not in server else 120}", strict=False)
    hosts = (str(h) for h in network.hosts() if str(h) not in (server, client))
    for host in itertools.chain([server], itertools.islice(hosts, count - 1)):
        yield host, port


def _datagrams(pattern: Pattern) -> list[bytes]:
    """What a client sends in one UDP flow of the pattern (a probe: one empty datagram)."""
    if pattern.detect is Detect.PAYLOAD:
        return [data for from_client, data in messages(pattern.match, pattern.transport, pattern.flow) if from_client]
    if pattern.detect is Detect.TRAFFIC:
        return [bytes([n]) * 32 for n in range(3)]
    return [b""]


def broadcast_forms(pattern: Pattern, kb: KnowledgeBase) -> list[tuple[str, str]]:
    """(source, destination) of each broadcast form: a neighbour's directed broadcast, another's limited one.
    Two sources, because Suricata's per-source alert limit would hide the second form behind the first."""
    client, _ = endpoints(pattern, kb)
    h = hosts(kb)
    other = h.home if client == h.peer else h.peer
    return [(client, h.directed_broadcast),
            (other if pattern.src_net.kind in ("any", "home") else client, BROADCAST)]


def _broadcasts(pattern: Pattern, kb: KnowledgeBase, targets: list[tuple[str, str]]) -> Wire:
    wire = Wire(broadcasts=tuple(target for _, target in targets))
    for index, (source, target) in enumerate(targets):
        for data in _datagrams(pattern):
            wire.udp(source, target, client_port(pattern, index), server_port(pattern), data)
    return wire


def _converse(wire: Wire, pattern: Pattern, client: str, server: str, conversation: list[Message],
              sport: int | None = None) -> None:
    """Application messages between client and server on the pattern's ports (or client port `sport`): one TCP
    flow, or datagrams."""
    sport, dport = sport or client_port(pattern), server_port(pattern)
    if pattern.transport == "tcp":
        wire.tcp(client, server, sport, dport).conversation(conversation)
        return
    for from_client, data in conversation:
        if from_client:
            wire.udp(client, server, sport, dport, data)
        else:
            wire.udp(server, client, dport, sport, data)


def _show(wire: Wire, pattern: Pattern, client: str, server: str) -> None:
    """The pattern's own traffic between client and server, from its typed fields."""
    sport, dport = client_port(pattern), server_port(pattern)
    tcp = pattern.transport == "tcp"
    if pattern.detect is Detect.PROBE:
        if tcp:
            wire.syn_probe(client, server, sport, dport)
        else:
            wire.udp(client, server, sport, dport)
    elif pattern.detect is Detect.TRAFFIC:
        if tcp:
            wire.tcp(client, server, sport, dport).conversation([(True, b"hello\r\n"), (False, b"hello\r\n")])
        else:
            for n in range(3):
                wire.udp(client, server, sport, dport, bytes([n]) * 32)
    elif pattern.detect is Detect.PAYLOAD:
        _converse(wire, pattern, client, server, messages(pattern.match, pattern.transport, pattern.flow))
    else:  # a sweep: enough distinct targets inside the window to pass the threshold
        count = pattern.sweep.count + 2
        gap = min(0.5, pattern.sweep.seconds / (2 * count))
        for index, (host, port) in enumerate(_sweep_targets(pattern, client, server, count)):
            wire.clock += gap
            if tcp:
                wire.syn_probe(client, host, client_port(pattern, index), port)
            else:
                wire.udp(client, host, client_port(pattern, index), port, b"\x00" * 2)


def _sample(pattern: Pattern, data: bytes) -> list[Message]:
    """One sample as a conversation: the message travels in the pattern's direction (client to server, or the
    server's answer for `flow: to_client`); a tcp one inside a session of its own (the handshake is added)."""
    return [(pattern.flow != "to_client", data)]


def sample_ports(pattern: Pattern) -> list[int]:
    """The client port of each fires sample's flow in the capture."""
    return [client_port(pattern, index + 1) for index in range(len(pattern.samples.fires))]


def fires_flows(pattern: Pattern) -> tuple[tuple[str, int], ...]:
    """(what, client port) of each flow of a capture with fires samples, which must each raise the rule: the
    derived message and every sample. None without samples, or with a fixed source port, which gives every flow
    the same port (their alerts cannot be told apart; the capture still holds them all)."""
    if not pattern.samples.fires or pattern.src_ports:
        return ()
    return (("the derived message", client_port(pattern)),
            *((f"fires sample {n + 1}", port) for n, port in enumerate(sample_ports(pattern))))


def build(pattern: Pattern, kb: KnowledgeBase) -> Wire:
    """The packets that show `pattern`, from its typed fields, then each of its fires samples in a flow of its own
    (client port `sample_ports`), sent the same way."""
    if pattern.dst_net.kind == "broadcast":  # udp only (the loader refuses a tcp broadcast)
        return _broadcasts(pattern, kb, broadcast_forms(pattern, kb))
    wire = Wire()
    client, server = endpoints(pattern, kb)
    _show(wire, pattern, client, server)
    for data, port in zip(pattern.samples.fires, sample_ports(pattern), strict=True):
        _converse(wire, pattern, client, server, _sample(pattern, data), sport=port)
    return wire


def write(pattern: Pattern, kb: KnowledgeBase, path: Path) -> Path:
    return build(pattern, kb).write(path)


# --------------------------------------------------------------------------- look-alike (quiet) captures

def _elsewhere(pattern: Pattern, client: str, server: str, kb: KnowledgeBase) -> list[tuple[str, str, str]]:
    """(what, client, server): the pattern's own traffic where its direction says it is not the threat:
    from home for inbound, to home for outbound (IPv6: when home holds IPv6), from outside for internal, unicast
    for a broadcast; and over loopback, which no pattern matches."""
    v6, h = ipaddress.ip_address(client).version == 6, hosts(kb)
    direction, places = pattern.direction, []
    if direction is Direction.INBOUND and (h.client6 or not v6):
        places.append(("from a home client", h.client6 if v6 else h.client, server))
    elif direction is Direction.OUTBOUND and (h.server6 or not v6):
        places.append(("to a home server", client, h.server6 if v6 else h.server))
    elif direction is Direction.INTERNAL:
        places.append(("from an outside client", h.external6 if v6 else h.external, server))
    elif pattern.dst_net.kind == "broadcast":  # the port's unicast use (a broadcast is IPv4 only)
        places.append(("unicast to one home host", client, h.server))
        places.append(("unicast to a .254 host of a wider home net", *h.wide))
    loopback = LOOPBACK6 if v6 else LOOPBACK4
    loopback_dst = LOOPBACK_BROADCAST if pattern.dst_net.kind == "broadcast" else loopback
    places.append(("over loopback", loopback, loopback_dst))
    return places


def _busy_peer(wire: Wire, pattern: Pattern, client: str, server: str) -> str:
    """One peer making count + 2 connections to one host and port within the sweep's window."""
    count = pattern.sweep.count + 2
    gap = min(0.5, pattern.sweep.seconds / (2 * count))
    port = server_port(pattern)
    for index in range(count):
        wire.clock += gap
        if pattern.transport == "tcp":
            wire.tcp(client, server, EPHEMERAL + index, port).conversation([(True, b"hello\r\n"),
                                                                              (False, b"hello\r\n")])
        else:
            wire.udp(client, server, EPHEMERAL + index, port, b"\x00" * 2)
    kind = "connections" if pattern.transport == "tcp" else "datagrams"
    return f"one peer, {count} {kind} to one host ({client} -> {server}:{port}) in {count * gap:g} s"


def _other(value: str, *choices: str) -> str:
    return next(c for c in choices if c.lower() != value.lower())


def _ordinary_dns(match: Match) -> tuple[str, Match]:
    if match.dns_qtype:
        return f"an A query instead of {match.dns_qtype}", replace(match, dns_qtype=None, dns_query="www.example.org")
    name = _other(match.dns_query, "www.example.org", "www.example.net")
    return f"an A query for {name}", replace(match, dns_query=name)


def _ordinary_tftp(match: Match) -> tuple[str, Match]:
    if match.tftp_filename:
        name = _other(match.tftp_filename, "pxelinux.0", "boot.cfg")
        return f"a TFTP {match.tftp_opcode} of {name}", replace(match, tftp_filename=name)
    other = "write" if match.tftp_opcode == "read" else "read"
    return f"a TFTP {other} of pxelinux.0", replace(match, tftp_opcode=other, tftp_filename="pxelinux.0")


def _smtp_ordinary() -> list[Message]:
    """A mail server's ordinary session: one local recipient accepted, one unknown local user refused with a 550
    that is no relay refusal, and the message delivered."""
    return [(False, b"220 mail.example.net ESMTP Postfix (Debian/GNU)\r\n"),
            (True, b"EHLO mx.example.com\r\n"),
            (False, b"250-mail.example.net\r\n250-PIPELINING\r\n250-SIZE 10240000\r\n250 8BITMIME\r\n"),
            (True, b"MAIL FROM:<alice@example.com>\r\n"), (False, b"250 2.1.0 Ok\r\n"),
            (True, b"RCPT TO:<bob@example.net>\r\n"), (False, b"250 2.1.5 Ok\r\n"),
            (True, b"RCPT TO:<nobody@example.net>\r\n"),
            (False, b"550 5.1.1 <nobody@example.net>: Recipient address rejected: User unknown in local "
                    b"recipient table\r\n"),
            (True, b"DATA\r\n"), (False, b"354 End data with <CR><LF>.<CR><LF>\r\n"),
            (True, b"From: alice@example.com\r\nTo: bob@example.net\r\nSubject: lunch\r\n\r\nNoon?\r\n.\r\n"),
            (False, b"250 2.0.0 Ok: queued as 4Tq9Xk1Zz3\r\n"), (True, b"QUIT\r\n"), (False, b"221 2.0.0 Bye\r\n")]


BROWSER = "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0"


def _http_ordinary(match: Match) -> tuple[str, list[Message]]:
    """A browser's page request: another method and path than the match's, without its header."""
    method = _other(match.http_method or "", "GET", "HEAD")
    uri = next(u for u in ("/index.html", "/static/app.css", "/") if not match.http_uri or match.http_uri not in u)
    headers = [(n, v) for n, v in (("Host", "www.example.net"), ("User-Agent", BROWSER), ("Accept", "text/html"))
               if not match.http_header or n.lower() != match.http_header.lower()]
    return f"a browser's {method} {uri}", [(True, http_request(method, uri, headers)), (False, HTTP_OK)]


def _content_variants(match: Match) -> list[tuple[str, list[Message]]]:
    """The items placed where a relative match must not take them: beyond `within` (each item `distance + within
    + 8` bytes after the previous one), and right after one another where an item asks for a `distance`."""
    items = match.contents
    variants = []
    if any(i.within is not None for i in items[1:]):
        gaps = tuple((i.distance or 0) + (i.within + 8 if i.within is not None else 0) for i in items)
        variants.append(("the items scattered beyond within", [(True, content_payload(items, gaps))]))
    if any(i.distance for i in items[1:]):
        variants.append(("the items without the distance between them",
                         [(True, content_payload(items, (0,) * len(items)))]))
    return variants


def _http_variants(match: Match) -> list[tuple[str, list[Message]]]:
    """The request of the match with one part changed: the method, the URI (without it; with it inside for
    startswith; longer for equals), the header's value moved to another header or the header left out."""
    method, uri, headers = match.http_method or "GET", _http_uri(match), _http_headers(match)
    variants = []
    if match.http_method:
        other = _other(match.http_method, "GET", "POST")
        variants.append((f"{other} instead of {match.http_method}", http_request(other, uri, headers)))
    if match.http_uri:
        other_uri = {"contains": "/index.html", "startswith": "/x" + match.http_uri,
                     "equals": match.http_uri + "/x"}[match.http_uri_match]
        variants.append((f"the URI {other_uri}", http_request(method, other_uri, headers)))
    if match.http_header and match.http_header_value:  # the value after the header: one buffer of all headers
        headers = [*_http_headers(match, named=False), (match.http_header, "ordinary-client/2.0"),
                   ("X-Note", match.http_header_value)]
        variants.append((f"{match.http_header} another value, the value in a later header",
                         http_request(method, uri, headers)))
    elif match.http_header:
        variants.append((f"no {match.http_header} header", http_request(method, uri, _http_headers(match, False))))
    return [(what, [(True, request), (False, HTTP_OK)]) for what, request in variants]


def _ntp_variants(match: Match) -> list[tuple[str, list[Message]]]:
    """NTP messages one field away from the match: another request of the same mode, and another mode whose
    bytes 1-3 hold the match's request code (a mode 6 sequence number 42, a mode 7 sequence byte 2)."""
    mode = match.ntp_mode
    if match.ntp_request and mode == 7:
        return [("a mode 7 peer list request (code 0)", [(True, ntp_message(7, 0))]),
                ("a mode 6 request with sequence number 42", [(True, ntp_message(6, 1, sequence=42))])]
    if match.ntp_request and mode == 6:
        return [("a mode 6 readstat request (opcode 1)", [(True, ntp_message(6, 1))]),
                ("a mode 7 request whose byte 1 is 2", [(True, bytes([0x17, 2, 3, 0]) + bytes(44))])]
    other = (mode + 1) % 8
    return [(f"a mode {other} message", [(True, ntp_message(other, 1))])]


def match_variants(pattern: Pattern) -> list[tuple[str, list[Message]]]:
    """Look-alikes of a payload pattern beyond ordinary use, each a conversation of its own: the match one part
    off (content placement, an http part, an NTP field)."""
    match = pattern.match
    found = {"content": _content_variants, "http": _http_variants, "ntp": _ntp_variants}.get(match.kind)
    out = found(match) if found else []
    if match.kind == "content" and pattern.flow == "to_client":
        out = [(what, [(not c, m) for c, m in conversation]) for what, conversation in out]
    return out


def _ordinary_match(match: Match) -> tuple[str, Match | list[Message]]:
    """Ordinary use of the service the match is about: (what, another match or the messages themselves)."""
    kind = match.kind
    if kind == "content":
        # every byte one higher: the same length at the same place, and no byte equal even ignoring case
        shifted = tuple(replace(c, data=bytes((b + 1) % 256 for b in c.data)) for c in match.contents)
        return "other bytes at the same place", replace(match, contents=shifted)
    if kind == "dns":
        return _ordinary_dns(match)
    if kind == "snmp":
        community = _other(match.snmp_community, "n0c-readonly", "n0c-readwrite")
        return f"SNMP community {community}", replace(match, snmp_community=community)
    if kind == "ftp":
        user = _other(match.ftp_user, "alice", "bob")
        return f"FTP USER {user}", replace(match, ftp_user=user)
    if kind == "tftp":
        return _ordinary_tftp(match)
    if kind == "login":
        user = next(u for u in ("alice", "bob", "carol") if u not in match.login_users)
        return f"login as {user}", replace(match, login_users=(user,))
    if kind == "rpc":
        program = 100003 if match.rpc_program != 100003 else 100005
        return f"an RPC call to program {program}", replace(match, rpc_program=program)
    if kind == "dhcp":
        kinds = [k for k in ("discover", "request") if k != match.dhcp_message_type]
        return "DHCP " + " and ".join(kinds), [m for k in kinds
                                               for m in _dhcp(replace(match, dhcp_message_type=k), "udp")]
    if kind == "netbios":
        s = _scapy()
        query = s.NBNSHeader(NAME_TRN_ID=0x81C3) / s.NBNSQueryRequest(QUESTION_NAME="WORKSTATION",
                                                                       QUESTION_TYPE="NB")
        return "a NetBIOS name query for WORKSTATION", [(True, bytes(query))]
    if kind == "smtp":
        return "a local delivery and a 550 5.1.1 for an unknown local user", _smtp_ordinary()
    if kind == "http":
        return _http_ordinary(match)
    if kind == "ntp":
        if match.ntp_mode in (3, 4):
            return "a symmetric peer exchange (modes 1 and 2)", [(True, ntp_message(1)), (False, ntp_message(2))]
        return "an NTP sync (a mode 3 request, a mode 4 answer)", [(True, ntp_message(3)), (False, ntp_message(4))]
    if kind == "shell":
        return "a server banner and a session without the shell's answer", [
            (False, b"220 service ready\r\n"), (True, b"HELP\r\n"), (False, b"214 HELP QUIT\r\n"),
            (True, b"QUIT\r\n"), (False, b"221 bye\r\n")]
    raise ValueError(f"unhandled match kind {kind}")


def ordinary_use(match: Match, transport: str, flow: str = "to_server") -> tuple[str, list[Message]]:
    """(what, messages): ordinary use of the service a payload match is about, which the match must not fit."""
    what, other = _ordinary_match(match)
    return what, other if isinstance(other, list) else messages(other, transport, flow)


def quiet(pattern: Pattern, kb: KnowledgeBase) -> tuple[Wire, list[str]]:
    """The look-alike traffic `pattern` must stay quiet on, in one capture, and what each part shows.

    Its own traffic in the places its direction excludes (and over loopback); for a sweep, one busy peer
    to one host; for a payload pattern, ordinary use of the service. Each part has its own addresses, so
    no flow, xbit or threshold of one part sees another's packets."""
    wire, shown = Wire(), []
    client, server = endpoints(pattern, kb)
    for what, there_client, there_server in _elsewhere(pattern, client, server, kb):
        _show(wire, pattern, there_client, there_server)
        hosts = f"{pattern.sweep.count + 2} targets from " if pattern.detect is Detect.SWEEP else ""
        shown.append(f"{what} ({there_client} -> {hosts}{there_server})")
    if pattern.detect is Detect.SWEEP:
        shown.append(_busy_peer(wire, pattern, client, server))
    if pattern.detect is Detect.PAYLOAD:
        what, conversation = ordinary_use(pattern.match, pattern.transport, pattern.flow)
        _converse(wire, pattern, client, server, conversation)
        shown.append(f"ordinary use: {what} ({client} -> {server})")
        quiet_samples = [(f"quiet sample {n + 1}", _sample(pattern, data))
                         for n, data in enumerate(pattern.samples.quiet)]
        for index, (what, conversation) in enumerate(match_variants(pattern) + quiet_samples):
            port = client_port(pattern, index + 1)
            _converse(wire, pattern, client, server, conversation, sport=port)
            shown.append(f"{what} ({client}:{port} -> {server})")
    return wire, shown


def write_quiet(pattern: Pattern, kb: KnowledgeBase, path: Path) -> tuple[Path, list[str]]:
    wire, shown = quiet(pattern, kb)
    return wire.write(path), shown


# --------------------------------------------------------------------------- normal traffic

def _client_hello(server_name: str) -> bytes:
    """A TLS 1.2/1.3 ClientHello record with SNI (hand-built: scapy's TLS layer needs cryptography)."""
    name = server_name.encode()
    sni = struct.pack("!HBH", len(name) + 3, 0, len(name)) + name
    groups = struct.pack("!H", 6) + struct.pack("!HHH", 0x001D, 0x0017, 0x0018)
    versions = bytes([4]) + struct.pack("!HH", 0x0304, 0x0303)
    sigalgs = struct.pack("!H", 8) + struct.pack("!HHHH", 0x0403, 0x0804, 0x0401, 0x0503)
    alpn_list = b"\x02h2\x08http/1.1"
    alpn = struct.pack("!H", len(alpn_list)) + alpn_list
    key_share = struct.pack("!HHH", 36, 0x001D, 32) + bytes(range(32))

    def ext(kind: int, body: bytes) -> bytes:
        return struct.pack("!HH", kind, len(body)) + body

    extensions = (ext(0, sni) + ext(10, groups) + ext(11, b"\x01\x00") + ext(13, sigalgs) + ext(16, alpn)
                  + ext(43, versions) + ext(51, key_share))
    suites = struct.pack("!HHHHH", 0x1301, 0x1302, 0x1303, 0xC02F, 0xC030)
    body = (struct.pack("!H", 0x0303) + bytes(range(32)) + b"\x20" + bytes(range(32, 64))
            + struct.pack("!H", len(suites)) + suites + b"\x01\x00"
            + struct.pack("!H", len(extensions)) + extensions)
    handshake = b"\x01" + len(body).to_bytes(3, "big") + body
    return b"\x16\x03\x01" + struct.pack("!H", len(handshake)) + handshake


def _server_hello() -> bytes:
    body = (struct.pack("!H", 0x0303) + bytes(range(64, 96)) + b"\x20" + bytes(range(32, 64))
            + struct.pack("!H", 0x1301) + b"\x00"
            + struct.pack("!H", 46) + struct.pack("!HHH", 43, 2, 0x0304)
            + struct.pack("!HHHH", 51, 36, 0x001D, 32) + bytes(range(96, 128)))
    handshake = b"\x02" + len(body).to_bytes(3, "big") + body
    return (b"\x16\x03\x03" + struct.pack("!H", len(handshake)) + handshake
            + b"\x14\x03\x03\x00\x01\x01" + b"\x17\x03\x03\x00\x20" + bytes(32))


def normal_traffic(kb: KnowledgeBase) -> Wire:
    """Ordinary traffic of a small site with a web and a mail server, and its home services used from inside: it
    should raise nothing above informational."""
    s = _scapy()
    wire = Wire()
    h = hosts(kb)
    web, mail, resolver, ntp, ssh, mail2 = (h.nets.outside.format(n) for n in (80, 25, 53, 123, 22, 26))
    # DNS A query and answer from an ephemeral port
    question = s.DNSQR(qname="www.example.org", qtype="A")
    wire.udp(h.home, resolver, 53211, 53, bytes(s.DNS(id=0x1A2B, rd=1, qd=question)))
    wire.udp(resolver, h.home, 53, 53211, bytes(s.DNS(id=0x1A2B, qr=1, rd=1, ra=1, qd=question,
                                                       an=s.DNSRR(rrname="www.example.org", ttl=300, rdata=web))))
    # outbound HTTP GET and its response
    page = b"<!doctype html><html><head><title>Example</title></head><body>Hello</body></html>\n"
    wire.tcp(h.home, web, 51000, 80).conversation([
        (True, b"GET / HTTP/1.1\r\nHost: www.example.org\r\nUser-Agent: curl/7.88.1\r\nAccept: */*\r\n\r\n"),
        (False, b"HTTP/1.1 200 OK\r\nContent-Type: text/html; charset=UTF-8\r\nContent-Length: "
         + str(len(page)).encode() + b"\r\n\r\n" + page)])
    # TLS ClientHello to 443
    wire.tcp(h.home, web, 51001, 443).conversation([(True, _client_hello("www.example.org")),
                                                    (False, _server_hello())])
    # NTP client request and server reply
    _ntp_sync(wire, h.home, ntp, 123, wire.clock + 2_208_988_800)  # NTP era: seconds since 1900
    # outbound SSH session: banners, key exchange init, then encrypted data
    kexinit = (b"\x14" + bytes(16) + b"\x00\x00\x00\x1acurve25519-sha256,ext-info-c"
               + b"\x00\x00\x00\x0bssh-ed25519" + (b"\x00\x00\x00\x16chacha20-poly1305@openssh.com" * 2)
               + (b"\x00\x00\x00\x0dhmac-sha2-256" * 2) + (b"\x00\x00\x00\x04none" * 2) + bytes(8) + b"\x00"
               + bytes(4))
    padding = 8 - (len(kexinit) + 5) % 8 + 8
    kex_packet = struct.pack("!IB", len(kexinit) + padding + 1, padding) + kexinit + bytes(padding)
    wire.tcp(h.home, ssh, 51002, 22).conversation([
        (True, b"SSH-2.0-OpenSSH_9.2p1 Debian-2+deb12u3\r\n"),
        (False, b"SSH-2.0-OpenSSH_8.9p1 Ubuntu-3ubuntu0.6\r\n"),
        (True, kex_packet), (False, kex_packet), (True, bytes(range(96))), (False, bytes(range(128)))])
    # inbound HTTP to the home web server
    wire.tcp(h.external, h.peer, 52000, 80).conversation([
        (True, b"GET /index.html HTTP/1.1\r\nHost: www.example.net\r\nUser-Agent: Mozilla/5.0\r\n"
               b"Accept: text/html\r\n\r\n"),
        (False, b"HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nContent-Length: "
         + str(len(page)).encode() + b"\r\n\r\n" + page)])
    # SMTP delivery from outside to the home mail server for a local recipient
    wire.tcp(mail, h.home, 52001, 25).conversation([
        (False, b"220 mail.example.net ESMTP Postfix (Debian/GNU)\r\n"),
        (True, b"EHLO mx.example.com\r\n"),
        (False, b"250-mail.example.net\r\n250-PIPELINING\r\n250-SIZE 10240000\r\n250-8BITMIME\r\n"
                b"250 SMTPUTF8\r\n"),
        (True, b"MAIL FROM:<alice@example.com>\r\n"), (False, b"250 2.1.0 Ok\r\n"),
        (True, b"RCPT TO:<bob@example.net>\r\n"), (False, b"250 2.1.5 Ok\r\n"),
        (True, b"DATA\r\n"), (False, b"354 End data with <CR><LF>.<CR><LF>\r\n"),
        (True, b"From: alice@example.com\r\nTo: bob@example.net\r\nSubject: lunch\r\n\r\nNoon?\r\n.\r\n"),
        (False, b"250 2.0.0 Ok: queued as 4Tq9Xk1Zz3\r\n"),
        (True, b"QUIT\r\n"), (False, b"221 2.0.0 Bye\r\n")])
    # SMTP to the home mail server for a local recipient who does not exist: a 550 that is not a relay refusal
    wire.tcp(mail2, h.home, 52002, 25).conversation([
        (False, b"220 mail.example.net ESMTP Postfix (Debian/GNU)\r\n"),
        (True, b"EHLO mx2.example.com\r\n"), (False, b"250-mail.example.net\r\n250 8BITMIME\r\n"),
        (True, b"MAIL FROM:<carol@example.com>\r\n"), (False, b"250 2.1.0 Ok\r\n"),
        (True, b"RCPT TO:<nobody@example.net>\r\n"),
        (False, b"550 5.1.1 <nobody@example.net>: Recipient address rejected: User unknown in local recipient "
                b"table\r\n"),
        (True, b"QUIT\r\n"), (False, b"221 2.0.0 Bye\r\n")])
    _home_services(wire, h)
    return wire


def _resp(*words: bytes) -> bytes:
    """A Redis command as clients send it: a RESP array of bulk strings."""
    return b"*%d\r\n" % len(words) + b"".join(b"$%d\r\n%s\r\n" % (len(w), w) for w in words)


SSDP_GROUP = "239.255.255.250"


def _home_services(wire: Wire, h: Hosts) -> None:
    """Services of a home network used as they are meant to be, from inside (issue 14): an application and its own
    Redis, memcached get/set, an admin's `docker ps` to the Docker API of a home host, SSDP announcements and a
    search on the LAN, and a chrony-style NTP sync from an ephemeral port with an outside server."""
    app, store = h.client, h.server
    info = b"# Server\r\nredis_version:7.0.15\r\nredis_mode:standalone\r\ntcp_port:6379\r\n"
    wire.tcp(app, store, 53000, 6379).conversation([
        (True, _resp(b"INFO", b"server")), (False, b"$%d\r\n%s\r\n" % (len(info), info)),
        (True, _resp(b"SET", b"session:42a", b"{\"user\":\"bob\"}", b"EX", b"3600")), (False, b"+OK\r\n"),
        (True, _resp(b"GET", b"session:42a")), (False, b"$14\r\n{\"user\":\"bob\"}\r\n"),
        (True, _resp(b"CONFIG", b"GET", b"maxmemory")), (False, b"*2\r\n$9\r\nmaxmemory\r\n$1\r\n0\r\n")])
    wire.tcp(app, store, 53001, 11211).conversation([
        (True, b"set page:/index 0 300 5\r\nhello\r\n"), (False, b"STORED\r\n"),
        (True, b"get page:/index\r\n"), (False, b"VALUE page:/index 0 5\r\nhello\r\nEND\r\n"),
        (True, b"version\r\n"), (False, b"VERSION 1.6.21\r\n")])
    containers = b'[{"Id":"8dfafdbc3a40","Names":["/web"],"Image":"nginx:1.25","State":"running"}]'
    wire.tcp(app, store, 53002, 2375).conversation([
        (True, b"GET /v1.43/containers/json HTTP/1.1\r\nHost: 192.168.1.40:2375\r\n"
               b"User-Agent: Docker-Client/24.0.7 (linux)\r\n\r\n"),
        (False, b"HTTP/1.1 200 OK\r\nApi-Version: 1.43\r\nContent-Type: application/json\r\n"
                b"Server: Docker/24.0.7 (linux)\r\nContent-Length: %d\r\n\r\n%s" % (len(containers), containers))])
    wire.udp(store, SSDP_GROUP, 1900, 1900,
             b"NOTIFY * HTTP/1.1\r\nHOST: 239.255.255.250:1900\r\nCACHE-CONTROL: max-age=1800\r\n"
             b"LOCATION: http://192.168.1.40:49152/description.xml\r\nNT: upnp:rootdevice\r\nNTS: ssdp:alive\r\n"
             b"SERVER: Linux/5.15 UPnP/1.0 MiniDLNA/1.3.3\r\nUSN: uuid:4d696e69-444c-164e-9d41-b827eb000001::"
             b"upnp:rootdevice\r\n\r\n")
    wire.udp(app, SSDP_GROUP, 50100, 1900,
             b"M-SEARCH * HTTP/1.1\r\nHOST: 239.255.255.250:1900\r\nMAN: \"ssdp:discover\"\r\nMX: 2\r\n"
             b"ST: ssdp:all\r\n\r\n")
    wire.udp(store, app, 1900, 50100,
             b"HTTP/1.1 200 OK\r\nCACHE-CONTROL: max-age=1800\r\nEXT:\r\n"
             b"LOCATION: http://192.168.1.40:49152/description.xml\r\nST: upnp:rootdevice\r\n"
             b"USN: uuid:4d696e69-444c-164e-9d41-b827eb000001::upnp:rootdevice\r\n\r\n")
    _ntp_sync(wire, app, h.nets.outside.format(123), 41234, BASE_TIME + 2_208_988_800 + 60)


def _ntp_sync(wire: Wire, client: str, server: str, sport: int, sent: float) -> None:
    """A client's mode 3 request and the server's mode 4 reply, at `sent` (NTP era). Every timestamp is given:
    scapy would fill a missing one with the clock of the build."""
    s = _scapy()
    wire.udp(client, server, sport, 123, bytes(s.NTP(version=4, mode=3, ref=0, orig=0, recv=0, sent=sent)))
    wire.udp(server, client, 123, sport, bytes(s.NTP(version=4, mode=4, stratum=2, ref=sent - 64, orig=sent,
                                                     recv=sent + 0.02, sent=sent + 0.021)))
