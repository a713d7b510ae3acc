"""Prove the Sigma rules: each rule matches log events that show its pattern, and no normal event.

How it works (no engine beyond pySigma is needed, so nothing is ever skipped):
- Events are generated from each pattern's typed fields, in the field names of shared/DESIGN.md:
  firewall connection records (`src_ip`, `src_port`, `dst_ip`, `dst_port`, `action`, `protocol`), DNS query
  records (`query`, `record_type`, `src_ip`, `dst_ip`) and Zeek conn/dns/ftp/snmp/dhcp/smtp records with Zeek's
  own names (`id.orig_h`, `id.resp_p`, `proto`, `qtype_name`, `user`, `community`, `msg_types`, `server_addr`,
  `last_reply`...). Each rule gets the events of its own log source. Values come from the pattern: every port
  spec (a range gives its first and last port), a port outside `dst_ports_except`, both broadcast forms
  (x.x.x.255 and 255.255.255.255), every address of an IP list, an address outside a negated list, the DNS name
  or qtype, the SNMP community, the FTP user, the DHCP message type, the SMTP reply or recipient. A new pattern
  therefore needs no new code here.
- Normal events (`NORMAL`: web in and out, DNS A/AAAA lookups, NTP, SSH out, SMTP delivery in and an unknown
  local user, FTP and SNMP with site credentials, DHCP from a listed server, a home application's Redis and
  memcached, a home admin's `docker ps`, SSDP on the LAN) are rendered into every log source
  they belong to. They are connection records as a stateful firewall or Zeek logs them: one record per
  connection, in the direction of the side that opened it; a reply is not a record of its own.
- The generated rules are converted with pySigma-backend-sqlite: one backend instance per rule collection
  (a backend's pipelines may change the rules it converts, so every backend gets a freshly loaded collection).
  The events go into the table that backend expects (`logs`, one column per field, dotted Zeek names as
  quoted identifiers, ISO `timestamp`), with text columns `COLLATE NOCASE` as in Zircolite, because Sigma
  compares strings case-insensitively and the backend emits plain `=`; ports are INTEGER columns, so that
  `|gte`/`|lte` compare numbers. A multi-valued Zeek field (`msg_types`) becomes one row per value of the same
  event, which gives Sigma's match-any-value semantics to the equality the rules use.
- Each rule must also stay quiet on the look-alikes of its pattern (`lookalike_flows`, a Proof with side "quiet"),
  generated from the typed fields too: the same events from a home address (inbound), to a home address (outbound;
  for DNS query records, whose destination is the name server asked, from an outside address instead), from
  outside (internal), to one unicast host instead of a broadcast (a home /24 host and a .254 host of a wider home
  net), and over loopback (127.0.0.1 and ::1 at both ends, 127.255.255.255 for a broadcast, for every rule with
  address fields); and ordinary use of the service (another FTP user, another SNMP community, another DNS name or
  record type, a DHCP DISCOVER, an offer from a listed server, an SMTP local delivery and an unknown local user).
  A correlation rule stays quiet on one source making `count + 2` connections to one host (or one port), and on
  its burst from each look-alike source.
- Home and outside addresses come from the knowledge's home set (rulegen.prove.addresses), as the captures' do.
- Correlation (scan) rules run natively: pySigma-backend-sqlite 2.0.0 compiles `value_count` with `group-by`
  and `timespan` into one SQL query (its `default` correlation method). Each runs over the normal events plus a
  burst from one source: it must alert, for that source only, on `count` distinct values within the timespan,
  and stay quiet on `count - 1` of them and on `count` spread over more than the timespan.
"""

from __future__ import annotations

import ipaddress
import itertools
import json
import sqlite3
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import yaml

from rulegen.model import KnowledgeBase, Net, Pattern, PortRange
from rulegen.prove import Proof, captures
from rulegen.prove.addresses import addressing

TARGET = "sigma"
NORMAL = "normal-traffic"
TABLE = "logs"  # pySigma-backend-sqlite's default table (and Zircolite's)
EVENT_COLUMN = "rulegen_event"  # which generated event a row belongs to
START = datetime(2026, 1, 1, tzinfo=UTC)

LOOPBACKS = ("127.0.0.1", "::1")
LOOPBACK_BROADCAST = "127.255.255.255"  # ends in .255 like a directed broadcast, and is loopback
# Ordinary use of a service, for the payload patterns' look-alikes (and the normal events).
ORDINARY = {"ftp_user": "alice", "community": "n0c-monitor", "query": "www.example.com", "qtype": "A"}
SMTP_DELIVERED = "250 2.0.0 Ok: queued as 4Tq9Xk1Zz3"
SMTP_UNKNOWN_USER = "550 5.1.1 <nobody@example.net>: Recipient address rejected: User unknown in local recipient table"
CLIENT_PORT = 50123  # a client's ephemeral port, inside Linux's default range (32768-60999)
SERVER_PORT = 40123  # a client's port when only the source port of a flow is given
FIREWALL_ACTION = {"drop": "drop", "reject": "reject"}  # otherwise the firewall let it through


@dataclass(frozen=True)
class Flow:
    """One connection and the application facts seen on it; rendered into each log source that records it."""

    transport: str
    src_ip: str
    src_port: int
    dst_ip: str
    dst_port: int
    action: str = "allow"
    service: str | None = None  # Zeek's service guess for conn.log
    query: str | None = None  # DNS
    qtype: str | None = None
    community: str | None = None  # SNMP
    ftp_user: str | None = None  # FTP
    ftp_command: tuple[str, str] | None = None
    dhcp_types: tuple[str, ...] = ()  # DHCP message types, in order
    dhcp_server: str | None = None
    dhcp_assigned: str | None = None
    smtp_rcpt: tuple[str, ...] = ()  # SMTP: RCPT TO addresses, and the last reply of the transaction
    smtp_last_reply: str | None = None
    http_method: str | None = None  # HTTP: one request, as Zeek's http.log records it
    http_uri: str | None = None
    http_host: str | None = None
    http_user_agent: str | None = None
    http_referrer: str | None = None
    seconds: float = 0.0  # offset from START


@dataclass
class Event:
    label: str  # "<pattern>#<n>/<log source>", "normal:<name>/<log source>" or "burst:..."
    record: dict[str, Any]


@dataclass
class RuleFile:
    pattern: str
    path: Path
    logsource: tuple[str, str, str]  # (product, category, service), "" where absent
    events: list[Event] = field(default_factory=list)


# --- events ---------------------------------------------------------------------------------------------------


def _zeek_id(flow: Flow) -> dict[str, Any]:
    return {"id.orig_h": flow.src_ip, "id.orig_p": flow.src_port, "id.resp_h": flow.dst_ip,
            "id.resp_p": flow.dst_port}


def _firewall(flow: Flow) -> dict[str, Any]:
    return {"src_ip": flow.src_ip, "src_port": flow.src_port, "dst_ip": flow.dst_ip, "dst_port": flow.dst_port,
            "action": flow.action, "protocol": flow.transport}


def _dns(flow: Flow) -> dict[str, Any] | None:
    if flow.query is None:
        return None
    return {"query": flow.query, "record_type": flow.qtype, "src_ip": flow.src_ip, "dst_ip": flow.dst_ip}


def _zeek_conn(flow: Flow) -> dict[str, Any]:
    state = "S0" if flow.action != "allow" else "SF"
    return {**_zeek_id(flow), "proto": flow.transport, "service": flow.service, "conn_state": state}


def _zeek_dns(flow: Flow) -> dict[str, Any] | None:
    if flow.query is None:
        return None
    return {**_zeek_id(flow), "proto": flow.transport, "query": flow.query, "qtype_name": flow.qtype,
            "rcode_name": "NOERROR"}


def _zeek_ftp(flow: Flow) -> dict[str, Any] | None:
    if flow.ftp_user is None:
        return None
    command, arg = flow.ftp_command or ("RETR", f"ftp://{flow.dst_ip}/pub/README")
    return {**_zeek_id(flow), "user": flow.ftp_user, "password": "<hidden>", "command": command, "arg": arg,
            "reply_code": 226}


def _zeek_snmp(flow: Flow) -> dict[str, Any] | None:
    if flow.community is None:
        return None
    return {**_zeek_id(flow), "version": "2c", "community": flow.community, "get_requests": 1}


def _zeek_dhcp(flow: Flow) -> dict[str, Any] | None:
    if not flow.dhcp_types:
        return None
    return {"client_port": 68, "server_port": 67, "server_addr": flow.dhcp_server or flow.src_ip,
            "assigned_addr": flow.dhcp_assigned, "mac": "00:00:5e:00:53:01", "msg_types": list(flow.dhcp_types),
            "lease_time": 86400}


def _zeek_smtp(flow: Flow) -> dict[str, Any] | None:
    if flow.smtp_last_reply is None:
        return None
    return {**_zeek_id(flow), "trans_depth": 1, "helo": "mx.example.com", "mailfrom": "alice@example.com",
            "rcptto": list(flow.smtp_rcpt), "last_reply": flow.smtp_last_reply, "tls": False}


def _zeek_http(flow: Flow) -> dict[str, Any] | None:
    if flow.http_method is None:
        return None
    return {**_zeek_id(flow), "trans_depth": 1, "method": flow.http_method, "host": flow.http_host,
            "uri": flow.http_uri, "referrer": flow.http_referrer, "version": "1.1", "user_agent": flow.http_user_agent,
            "request_body_len": 0, "response_body_len": 2, "status_code": 200, "status_msg": "OK"}


# (product, category, service) -> record of a flow, or None when that log source does not record the flow
LOG_SOURCES = {
    ("", "firewall", ""): _firewall,
    ("", "dns", ""): _dns,
    ("zeek", "", "conn"): _zeek_conn,
    ("zeek", "", "dns"): _zeek_dns,
    ("zeek", "", "ftp"): _zeek_ftp,
    ("zeek", "", "snmp"): _zeek_snmp,
    ("zeek", "", "dhcp"): _zeek_dhcp,
    ("zeek", "", "smtp"): _zeek_smtp,
    ("zeek", "", "http"): _zeek_http,
}


def render(flow: Flow, logsource: tuple[str, str, str]) -> dict[str, Any] | None:
    renderer = LOG_SOURCES.get(logsource)
    record = renderer(flow) if renderer else None
    if record is None:
        return None
    stamp = (START + timedelta(seconds=flow.seconds)).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    return {"timestamp": stamp, **{k: v for k, v in record.items() if v is not None}}


def _in(address: str, networks: Iterable[str]) -> bool:
    ip = ipaddress.ip_address(address)
    return any(ip in ipaddress.ip_network(n, strict=False) for n in networks)


def _list_hosts(addresses: tuple[str, ...]) -> list[str]:
    """One address inside every entry of an IP list (its first host, or the address itself)."""
    hosts = []
    for item in addresses:
        net = ipaddress.ip_network(item, strict=False)
        hosts.append(str(net.network_address + (1 if net.num_addresses > 2 else 0)))
    return hosts


def addresses(net: Net, side: str, kb: KnowledgeBase, host: int) -> list[str]:
    """Addresses that show one side of a pattern; `host` picks the host number in the home or external net."""
    nets = addressing(kb)
    home, external = nets.home.format(host), nets.outside.format(host)
    if net.kind == "home":
        return [home]
    if net.kind == "external":
        return [external]
    if net.kind == "broadcast":
        return list(nets.broadcasts)
    if net.kind == "list":
        listed = kb.ip_lists[net.list_id].addresses
        if net.negated or not listed:
            candidates = [home, external] + [nets.home.format(n) for n in range(2, 254)]
            return [next(a for a in candidates if not _in(a, listed))]
        return _list_hosts(listed)
    return [external] if side == "src" else [home]  # any: from outside, to a home host


def ports(ranges: tuple[PortRange, ...], default: int, excluded: tuple[PortRange, ...] = ()) -> list[int]:
    """Both ends of every range (one port for a single port); without ranges, a default port outside `excluded`."""
    if ranges:
        return sorted({p for r in ranges for p in (r.low, r.high)})
    port = default
    while any(r.low <= port <= r.high for r in excluded):
        port += 1
    return [port]


def app_facts(pattern: Pattern, kb: KnowledgeBase) -> dict[str, Any]:
    """The application facts of a pattern's match, as Flow fields."""
    m = pattern.match
    if m is None:
        return {}
    if m.kind == "dns":
        return {"service": "dns", "query": m.dns_query or "example.com", "qtype": (m.dns_qtype or "A").upper()}
    if m.kind == "snmp":
        return {"service": "snmp", "community": m.snmp_community}
    if m.kind == "ftp":
        return {"service": "ftp", "ftp_user": m.ftp_user}
    if m.kind == "dhcp":
        return {"service": "dhcp", "dhcp_types": ((m.dhcp_message_type or "").upper(),),
                "dhcp_assigned": addressing(kb).home.format(150)}
    if m.kind == "smtp" and m.smtp_reply == "relay-denied":  # the client hung up after the refusal
        return {"service": "smtp", "smtp_rcpt": ("victim@example.org",),
                "smtp_last_reply": "554 5.7.1 <victim@example.org>: Relay access denied"}
    if m.kind == "smtp":  # a % path, accepted by an open relay
        return {"service": "smtp", "smtp_rcpt": ("victim%example.org@mail.example.net",),
                "smtp_last_reply": "250 2.0.0 Ok: queued as 3Fq2Lx0Yz1"}
    if m.kind == "http":  # the request the Suricata capture sends, as http.log records it
        return http_facts(captures.http_match_request(m)) or {}
    return {}


def http_facts(request: bytes) -> dict[str, Any] | None:
    """An HTTP request's http.log fields (method, uri, and the Host, User-Agent and Referer headers), or None when
    the bytes are no HTTP/1 request."""
    head = request.split(b"\r\n\r\n", 1)[0].decode("latin-1").split("\r\n")
    parts = head[0].split(" ")
    if len(parts) != 3 or not parts[2].startswith("HTTP/"):
        return None
    headers = {}
    for line in head[1:]:
        name, _, value = line.partition(":")
        headers.setdefault(name.strip().lower(), value.strip())
    return {"service": "http", "http_method": parts[0], "http_uri": parts[1], "http_host": headers.get("host"),
            "http_user_agent": headers.get("user-agent"), "http_referrer": headers.get("referer")}


def sample_facts(pattern: Pattern, side: str) -> list[dict[str, Any]]:
    """The application facts of the pattern's samples (`fires` or `quiet`) where a log record shows them: an HTTP
    request becomes its http.log fields. Other samples (a RESP command, an NTP datagram) are payload bytes that no
    log source of the Sigma output records, so they have no event here; the Suricata proofs replay them."""
    if pattern.match is None or pattern.match.kind != "http":
        return []
    return [facts for data in getattr(pattern.samples, side) if (facts := http_facts(data)) is not None]


def pattern_flows(pattern: Pattern, kb: KnowledgeBase, host: int = 20) -> list[Flow]:
    """Every combination of the pattern's source and destination addresses and ports."""
    action = FIREWALL_ACTION.get(pattern.response.value, "allow")
    flows = []
    combos = itertools.product(addresses(pattern.src_net, "src", kb, host),
                               addresses(pattern.dst_net, "dst", kb, host + 1),
                               ports(pattern.src_ports, CLIENT_PORT),
                               ports(pattern.dst_ports, SERVER_PORT, pattern.dst_ports_except))
    facts = [app_facts(pattern, kb), *sample_facts(pattern, "fires")]
    for (src_ip, dst_ip, src_port, dst_port), fact in itertools.product(combos, facts):
        flows.append(Flow(pattern.transport, src_ip, src_port, dst_ip, dst_port, action=action, **fact))
    return flows


def normal_flows(kb: KnowledgeBase) -> dict[str, Flow]:
    """Ordinary traffic of a small site: none of it may raise a Sigma rule."""
    home, outside = addressing(kb).home, addressing(kb).outside
    client, resolver, web, mail, ftp, nms, router, app, store = (home.format(n) for n in (10, 1, 80, 25, 21, 5, 2,
                                                                                         30, 40))
    flows = {
        "web-out-https": Flow("tcp", client, CLIENT_PORT, outside.format(80), 443, service="ssl"),
        "web-out-http": Flow("tcp", client, CLIENT_PORT + 1, outside.format(80), 80, service="http",
                             http_method="GET", http_uri="/", http_host="www.example.org",
                             http_user_agent="curl/7.88.1"),
        "web-in-http": Flow("tcp", outside.format(44), CLIENT_PORT + 2, web, 80, service="http", http_method="GET",
                            http_uri="/index.html", http_host="www.example.net", http_user_agent=captures.BROWSER,
                            http_referrer="https://www.example.net/"),
        "dns-a-lookup": Flow("udp", client, CLIENT_PORT + 3, resolver, 53, service="dns",
                             query="www.example.com", qtype="A"),
        "dns-aaaa-lookup": Flow("udp", client, CLIENT_PORT + 4, resolver, 53, service="dns",
                                query="www.example.com", qtype="AAAA"),
        "dns-recursion": Flow("udp", resolver, CLIENT_PORT + 5, outside.format(53), 53, service="dns",
                              query="www.example.com", qtype="A"),
        "ntp-client": Flow("udp", client, CLIENT_PORT + 6, outside.format(123), 123, service="ntp"),
        "ssh-out": Flow("tcp", client, CLIENT_PORT + 7, outside.format(22), 22, service="ssh"),
        "smtp-delivery-in": Flow("tcp", outside.format(25), CLIENT_PORT + 8, mail, 25, service="smtp",
                                 smtp_rcpt=("bob@example.net",), smtp_last_reply=SMTP_DELIVERED),
        "smtp-unknown-user": Flow("tcp", outside.format(26), CLIENT_PORT + 11, mail, 25, service="smtp",
                                  smtp_rcpt=("nobody@example.net",), smtp_last_reply=SMTP_UNKNOWN_USER),
        "ftp-named-user": Flow("tcp", client, CLIENT_PORT + 9, ftp, 21, service="ftp", ftp_user="alice",
                               ftp_command=("STOR", f"ftp://{ftp}/home/alice/report.pdf")),
        "snmp-monitoring": Flow("udp", nms, CLIENT_PORT + 10, router, 161, service="snmp",
                                community="n0c-monitor"),
        # home services used from inside (issue 14): an application and its Redis and memcached, an admin's
        # `docker ps`, SSDP on the LAN (the multicast group is no home address), a sync from an ephemeral port
        "redis-home-app": Flow("tcp", app, CLIENT_PORT + 12, store, 6379, service="redis"),
        "memcached-home-app": Flow("tcp", app, CLIENT_PORT + 13, store, 11211),
        "docker-ps-home-admin": Flow("tcp", app, CLIENT_PORT + 14, store, 2375, service="http", http_method="GET",
                                     http_uri="/v1.43/containers/json", http_host=f"{store}:2375",
                                     http_user_agent="Docker-Client/24.0.7 (linux)"),
        "ssdp-notify-lan": Flow("udp", store, 1900, "239.255.255.250", 1900, service="ssdp"),
        "ssdp-m-search-lan": Flow("udp", app, CLIENT_PORT + 15, "239.255.255.250", 1900, service="ssdp"),
        "ntp-client-ephemeral": Flow("udp", app, CLIENT_PORT + 16, outside.format(123), 123, service="ntp"),
    }
    listed = kb.ip_lists.get("dhcp-servers")
    if listed and listed.addresses:  # "from a listed server": only when the site lists its servers
        server = _list_hosts(listed.addresses)[0]
        flows["dhcp-from-listed-server"] = Flow(
            "udp", server, 67, home.format(150), 68, service="dhcp",
            dhcp_types=("DISCOVER", "OFFER", "REQUEST", "ACK"), dhcp_server=server, dhcp_assigned=home.format(150))
    return flows


def _direction_lookalikes(pattern: Pattern, kb: KnowledgeBase,
                          logsource: tuple[str, str, str]) -> dict[str, dict[str, str]]:
    """Address changes that turn the pattern's events into their look-alikes of the other direction, or, for a
    broadcast destination, into unicast. A DNS query record's destination is the name server asked, so DNS
    look-alikes change the source only."""
    src, dst = pattern.src_net.kind, pattern.dst_net.kind
    nets = addressing(kb)
    dst_is_far_end = logsource != ("", "dns", "")
    if dst == "broadcast" and dst_is_far_end:  # the port's unicast use, in the home /24 and in a wider home net
        return {"unicast-home": {"dst_ip": nets.home.format(31)}, "unicast-wide": {"dst_ip": nets.wide.format(254)}}
    if src == "external":
        return {"from-home": {"src_ip": nets.home.format(30)}}
    if src == "home" and (dst == "home" or not dst_is_far_end):
        return {"from-outside": {"src_ip": nets.outside.format(30)}}
    if src == "home":
        return {"to-home": {"dst_ip": nets.home.format(31)}}
    return {}


def _loopback_lookalikes(pattern: Pattern) -> dict[str, dict[str, str]]:
    v4_dst = LOOPBACK_BROADCAST if pattern.dst_net.kind == "broadcast" else LOOPBACKS[0]
    return {"loopback-v4": {"src_ip": LOOPBACKS[0], "dst_ip": v4_dst},
            "loopback-v6": {"src_ip": LOOPBACKS[1], "dst_ip": LOOPBACKS[1]}}


def _payload_lookalikes(pattern: Pattern, kb: KnowledgeBase) -> dict[str, dict[str, Any]]:
    """Ordinary use of the service the pattern's match names."""
    m = pattern.match
    if m is None:
        return {}
    if m.kind == "ftp":
        return {"ftp-named-user": {"ftp_user": ORDINARY["ftp_user"]}}
    if m.kind == "snmp":
        return {"snmp-site-community": {"community": ORDINARY["community"]}}
    if m.kind == "dns" and m.dns_query:
        return {"dns-another-name": {"query": ORDINARY["query"]}}
    if m.kind == "dns":
        return {"dns-ordinary-type": {"qtype": ORDINARY["qtype"]}}
    if m.kind == "smtp":
        return {"smtp-local-delivery": {"smtp_rcpt": ("bob@example.net",), "smtp_last_reply": SMTP_DELIVERED},
                "smtp-unknown-user": {"smtp_rcpt": ("nobody@example.net",), "smtp_last_reply": SMTP_UNKNOWN_USER}}
    if m.kind == "http":
        return _http_lookalikes(pattern)
    if m.kind == "dhcp":
        cases: dict[str, dict[str, Any]] = {"dhcp-discover": {"dhcp_types": ("DISCOVER",)}}
        net = pattern.src_net
        if net.kind == "list" and net.negated and kb.ip_lists[net.list_id].addresses:
            server = _list_hosts(kb.ip_lists[net.list_id].addresses)[0]
            cases["dhcp-from-listed-server"] = {"src_ip": server, "dhcp_server": server}
        return cases
    return {}


def _http_lookalikes(pattern: Pattern) -> dict[str, dict[str, Any]]:
    """The requests of the Suricata quiet capture (a browser's page request, the match one part off) and the quiet
    samples, as http.log records them."""
    _, ordinary = captures.ordinary_use(pattern.match, "tcp")
    requests = [("http-ordinary", ordinary[0][1])]
    requests += [(f"http-variant-{n + 1}", talk[0][1]) for n, (_, talk) in enumerate(captures.match_variants(pattern))]
    cases = {case: facts for case, request in requests if (facts := http_facts(request)) is not None}
    cases.update({f"http-quiet-sample-{n + 1}": facts for n, facts in enumerate(sample_facts(pattern, "quiet"))})
    return cases


def lookalikes(pattern: Pattern, kb: KnowledgeBase, logsource: tuple[str, str, str]) -> dict[str, dict[str, Any]]:
    """Case name -> the Flow field changes that make a look-alike the pattern's rule must not match. Zeek's dhcp.log
    records no flow addresses (the server's address is the whole of it), so DHCP has no loopback case."""
    cases = {**_direction_lookalikes(pattern, kb, logsource), **_payload_lookalikes(pattern, kb)}
    if logsource != ("zeek", "", "dhcp"):
        cases.update(_loopback_lookalikes(pattern))
    return cases


def lookalike_flows(pattern: Pattern, kb: KnowledgeBase, logsource: tuple[str, str, str]) -> dict[str, list[Flow]]:
    """Each look-alike case applied to every one of the pattern's own flows."""
    flows = pattern_flows(pattern, kb)
    return {case: list(dict.fromkeys(replace(f, **changes) for f in flows))
            for case, changes in lookalikes(pattern, kb, logsource).items()}


# --- the SQLite side ------------------------------------------------------------------------------------------


def _quote(name: str) -> str:
    return "`" + name.replace("`", "``") + "`"


def load_events(events: list[Event]) -> sqlite3.Connection:
    """An in-memory `logs` table of the events; a list value gives one row per element (same event label)."""
    rows: list[dict[str, Any]] = []
    for event in events:
        lists = {k: v for k, v in event.record.items() if isinstance(v, list)}
        base = {k: v for k, v in event.record.items() if k not in lists}
        for values in itertools.product(*lists.values()) if lists else [()]:
            rows.append({**base, **dict(zip(lists, values, strict=True)), EVENT_COLUMN: event.label})
    columns: dict[str, str] = {}
    for row in rows:
        for key, value in row.items():
            kind = "INTEGER" if isinstance(value, int) and not isinstance(value, bool) else "TEXT COLLATE NOCASE"
            columns.setdefault(key, kind)
    db = sqlite3.connect(":memory:")
    db.execute(f"CREATE TABLE {TABLE} ({', '.join(f'{_quote(c)} {t}' for c, t in columns.items())})")
    for row in rows:
        db.execute(f"INSERT INTO {TABLE} ({', '.join(map(_quote, row))}) VALUES ({', '.join('?' * len(row))})",
                   list(row.values()))
    return db


def matched(db: sqlite3.Connection, query: str) -> set[str]:
    return {label for (label,) in db.execute(f"SELECT DISTINCT {EVENT_COLUMN} FROM ({query})")}


def correlation_alerts(db: sqlite3.Connection, query: str) -> list[dict[str, Any]]:
    cursor = db.execute(query)
    names = [d[0] for d in cursor.description]
    return [dict(zip(names, row, strict=True)) for row in cursor]


# --- the rules ------------------------------------------------------------------------------------------------


def _logsource(path: Path) -> tuple[str, str, str]:
    source = (yaml.safe_load(path.read_text(encoding="utf-8")) or {}).get("logsource") or {}
    return tuple(str(source.get(k) or "") for k in ("product", "category", "service"))  # type: ignore[return-value]


def rule_files(out_dir: Path) -> tuple[dict[str, RuleFile], dict[str, Path]]:
    """From out/manifest.json: each pattern's Sigma rule, and its correlation rule where it has one."""
    manifest = json.loads((out_dir / "manifest.json").read_text(encoding="utf-8"))
    rules: dict[str, RuleFile] = {}
    correlations: dict[str, Path] = {}
    for row in manifest["patterns"]:
        cover = row.get("coverage", {}).get(TARGET) or {}
        if not cover.get("built"):
            continue
        for artifact in cover.get("artifacts", []):
            path = out_dir / artifact
            if Path(artifact).name.startswith("correlation_"):
                correlations[row["id"]] = path
            else:
                rules[row["id"]] = RuleFile(row["id"], path, _logsource(path))
    return rules, correlations


def convert_rules(paths: list[Path]) -> dict[Path, list[str] | str]:
    """Standalone SQL for each rule file (one collection, one backend), or why it could not be converted."""
    from sigma.backends.sqlite import sqliteBackend
    from sigma.collection import SigmaCollection
    from sigma.exceptions import SigmaError

    try:
        collection = SigmaCollection.load_ruleset(paths)
    except SigmaError as exc:
        return {path: f"the rules do not load: {exc}" for path in paths}
    backend = sqliteBackend()
    result: dict[Path, list[str] | str] = {}
    for rule in collection.rules:
        try:
            result[Path(rule.source.path)] = backend.convert_rule(rule)
        except SigmaError as exc:
            result[Path(rule.source.path)] = f"not converted: {exc}"
    return result


def convert_correlation(correlation: Path, base: Path) -> list[str]:
    """SQL of a correlation rule with its base rule: a fresh collection and backend of their own."""
    from sigma.backends.sqlite import sqliteBackend
    from sigma.collection import SigmaCollection

    return sqliteBackend().convert(SigmaCollection.load_ruleset([base, correlation]))


# --- proofs ---------------------------------------------------------------------------------------------------


def burst(pattern: Pattern, kb: KnowledgeBase, count: int, step: float,
          changes: dict[str, Any] | None = None) -> list[Flow]:
    """`count` flows of one source, each with a new value of the swept field, `step` seconds apart; `changes` moves
    the burst's template to a look-alike source or destination."""
    template = replace(pattern_flows(pattern, kb, host=200)[0], **(changes or {}))
    distinct = pattern.sweep.distinct
    if distinct == "dst_port":
        values = [p for r in pattern.dst_ports for p in range(r.low, r.high + 1)] if pattern.dst_ports \
            else list(range(1, 65536))
        values = [p for p in dict.fromkeys(values) if not any(r.low <= p <= r.high for r in pattern.dst_ports_except)]
        steps = [{"dst_port": p} for p in values[:count]]
    else:
        base = ipaddress.ip_address(template.dst_ip)
        steps = [{"dst_ip": str(base + i)} for i in range(count)]
    if len(steps) < count:
        raise ValueError(f"the pattern offers only {len(steps)} distinct values of {distinct}, not {count}")
    return [replace(template, seconds=1000 + i * step, **change) for i, change in enumerate(steps)]


def one_target_burst(pattern: Pattern, kb: KnowledgeBase, count: int) -> list[Flow]:
    """`count` connections, a second apart, from one source to one host and port (a busy ordinary client): each a
    new client port where the pattern leaves the source port open."""
    template = pattern_flows(pattern, kb, host=200)[0]
    return [replace(template, seconds=1000 + i, **({} if pattern.src_ports else {"src_port": CLIENT_PORT + i}))
            for i in range(count)]


def quiet_bursts(pattern: Pattern, kb: KnowledgeBase, logsource: tuple[str, str, str]) -> dict[str, list[Flow]]:
    """The look-alikes of a sweep: `count + 2` connections to one target, and the full burst from each look-alike
    source. A host sweep over ::1 would leave loopback at its second host, so it has the IPv4 loopback case only."""
    sweep = pattern.sweep
    cases = {"one-target": one_target_burst(pattern, kb, sweep.count + 2)}
    for case, changes in lookalikes(pattern, kb, logsource).items():
        if not (case == "loopback-v6" and sweep.distinct == "dst_ip"):
            cases[case] = burst(pattern, kb, sweep.count, 1, changes)
    return cases


def prove_correlation(pattern: Pattern, kb: KnowledgeBase, query: str, rule: RuleFile, path: Path,
                      normal: list[Event]) -> tuple[bool, str]:
    """Run the correlation over the normal events plus a burst at, below and spread beyond its threshold."""
    sweep = pattern.sweep
    spread = sweep.seconds // max(sweep.count - 1, 1) + 1  # no window of `seconds` holds `count` of these

    def run(name: str, count: int, step: float) -> tuple[list[dict[str, Any]], str]:
        flows = burst(pattern, kb, count, step)
        events = [Event(f"burst:{name}#{i}", render(f, rule.logsource)) for i, f in enumerate(flows)]
        return correlation_alerts(load_events(normal + events), query), flows[0].src_ip

    try:
        hit, source = run("at-count", sweep.count, 1)
        below, _ = run("below-count", sweep.count - 1, 1)
        slow, _ = run("spread", sweep.count, spread)
    except (ValueError, sqlite3.Error) as exc:
        return False, f"correlation not run: {exc}"
    keys = [json.loads(a["group_keys"]) if isinstance(a["group_keys"], str) else a["group_keys"] for a in hit]
    fired = bool(hit) and all(str(k.get("src_ip")).lower() == source for k in keys)
    top = max((a["metric_value"] for a in hit), default=0)
    ok = fired and not below and not slow
    detail = (f"{path.parent.name}/{path.name}: {'alerted' if fired else 'did NOT alert as expected'} on "
              f"{sweep.count} distinct {sweep.distinct} from {source} within {sweep.seconds}s (metric {top}); "
              f"{'quiet' if not below else 'ALERTED'} at {sweep.count - 1}; "
              f"{'quiet' if not slow else 'ALERTED'} with {sweep.count} spread {spread}s apart")
    return ok, detail


def prove_correlation_quiet(pattern: Pattern, kb: KnowledgeBase, query: str, rule: RuleFile, path: Path,
                            normal: list[Event]) -> tuple[bool, str]:
    """Run the correlation over the normal events plus each look-alike burst: none may alert."""
    try:
        cases = quiet_bursts(pattern, kb, rule.logsource)
        loud = []
        for case, flows in cases.items():
            events = [Event(f"quiet:{case}#{i}", render(f, rule.logsource)) for i, f in enumerate(flows)]
            if correlation_alerts(load_events(normal + events), query):
                loud.append(case)
    except (ValueError, sqlite3.Error) as exc:
        return False, f"correlation not run: {exc}"
    detail = (f"{path.parent.name}/{path.name}: quiet on {len(cases) - len(loud)}/{len(cases)} look-alike bursts "
              f"({', '.join(cases)}; one-target: {pattern.sweep.count + 2} connections to one host and port)")
    if loud:
        detail += "; ALERTED on " + ", ".join(loud)
    return not loud, detail


def _event_label(pid: str, n: int, logsource: tuple[str, str, str], case: str | None = None) -> str:
    return f"{pid}{f'~{case}' if case else ''}#{n}/{'-'.join(filter(None, logsource))}"


def prove(kb: KnowledgeBase, out_dir: Path, work_dir: Path) -> list[Proof]:
    rules, correlations = rule_files(out_dir)
    if not rules:
        return []
    patterns = {p.id: p for p in kb.patterns}
    normal_events = [Event(f"normal:{name}/{'-'.join(filter(None, source))}", record)
                     for name, flow in normal_flows(kb).items()
                     for source in LOG_SOURCES if (record := render(flow, source)) is not None]
    proofs: list[Proof] = []
    own_events: list[Event] = []
    quiet: dict[str, list[Event]] = {}  # a rule's look-alike events (sweeps: run through the correlation instead)
    for pid, rule in rules.items():
        pattern = patterns.get(pid)
        if pattern is None:
            continue
        for n, flow in enumerate(pattern_flows(pattern, kb)):
            record = render(replace(flow, seconds=float(n)), rule.logsource)
            if record is not None:
                rule.events.append(Event(_event_label(pid, n, rule.logsource), record))
        own_events += rule.events
        if pid not in correlations:
            quiet[pid] = [Event(_event_label(pid, n, rule.logsource, case), record)
                          for case, flows in lookalike_flows(pattern, kb, rule.logsource).items()
                          for n, flow in enumerate(flows)
                          if (record := render(replace(flow, seconds=float(n)), rule.logsource)) is not None]
    quiet_events = [e for events in quiet.values() for e in events]
    db = load_events(own_events + quiet_events + normal_events)
    queries = convert_rules([r.path for r in rules.values()])
    work_dir.mkdir(parents=True, exist_ok=True)
    with (work_dir / "sigma-events.jsonl").open("w", encoding="utf-8") as out:
        for event in own_events + quiet_events + normal_events:
            out.write(json.dumps({EVENT_COLUMN: event.label, **event.record}, sort_keys=True) + "\n")
    normal_labels = {e.label for e in normal_events}
    loud: dict[str, list[str]] = {}
    sql_log = []
    for pid, rule in rules.items():
        pattern = patterns.get(pid)
        name = f"{rule.path.parent.name}/{rule.path.name}"
        if pattern is None:
            proofs += both_sides(pid, False, f"{name}: pattern not in the knowledge, no events")
            continue
        sql = queries.get(rule.path, [])
        if isinstance(sql, str) or not sql:
            proofs += both_sides(pid, False, f"{name}: {sql or 'the sqlite backend gave no query'}")
            continue
        sql_log.append(f"-- {name}\n" + ";\n".join(sql) + ";")
        if not rule.events:
            proofs += both_sides(pid, False, f"{name}: no {rule.logsource} events can show this pattern")
            continue
        hits: set[str] = set()
        for q in sql:
            hits |= matched(db, q)
        own = {e.label for e in rule.events}
        missed = sorted(own - hits)
        noisy = sorted(hits & normal_labels)
        detail = f"{name}: matched {len(own) - len(missed)}/{len(own)} own events"
        if missed:
            detail += " (missed " + ", ".join(missed) + ")"
        swept = pid in correlations and pattern.sweep is not None
        # A sweep's base rule is no detection of its own: the correlation does not `generate` it, so pySigma
        # emits no standalone query for it, and the correlation is what must stay quiet on normal events.
        detail += f", {len(noisy)}/{len(normal_labels)} normal events"
        if swept:
            detail += " as a base rule (not generated on its own)"
        if noisy:
            detail += " (" + ", ".join(noisy) + ")"
            if not swept:
                loud[pid] = noisy
        ok = not missed and (swept or not noisy)
        for net in (pattern.src_net, pattern.dst_net):
            if net.kind == "list" and net.negated and not kb.ip_lists[net.list_id].addresses:
                detail += f"; ip list {net.list_id} is empty, so the rule exempts nobody until the site fills it"
        if swept:
            try:
                corr_sql = convert_correlation(correlations[pid], rule.path)
            except Exception as exc:  # any conversion error is the proof's finding
                corr_sql, corr_ok, corr_detail = [], False, f"correlation not converted: {exc}"
                quiet_ok, quiet_detail = False, corr_detail
            if corr_sql:
                sql_log.append(f"-- {correlations[pid].name}\n{corr_sql[0]};")
                corr_ok, corr_detail = prove_correlation(pattern, kb, corr_sql[0], rule, correlations[pid],
                                                         normal_events)
                quiet_ok, quiet_detail = prove_correlation_quiet(pattern, kb, corr_sql[0], rule, correlations[pid],
                                                                 normal_events)
            ok = ok and corr_ok
            detail += "; " + corr_detail
        else:
            quiet_ok, quiet_detail = prove_quiet(name, quiet[pid], hits)
        proofs.append(Proof(pid, TARGET, ok, detail, side="fires"))
        proofs.append(Proof(pid, TARGET, quiet_ok, quiet_detail, side="quiet"))
    (work_dir / "sigma-queries.sql").write_text("\n\n".join(sql_log) + "\n", encoding="utf-8")
    summary = "; ".join(f"{pid}: {', '.join(labels)}" for pid, labels in sorted(loud.items()))
    proofs.append(Proof(NORMAL, TARGET, not loud,
                        f"{len(normal_labels)} normal events, rules matching any: {summary or 'none'}", side="quiet"))
    return proofs


def prove_quiet(name: str, events: list[Event], hits: set[str]) -> tuple[bool, str]:
    """A rule's look-alike events (`events`) against the labels its queries matched."""
    if not events:
        return False, f"{name}: no look-alike events could be written for this log source"
    labels = {e.label for e in events}
    cases = list(dict.fromkeys(e.label.split("~", 1)[1].split("#", 1)[0] for e in events))
    loud = sorted(labels & hits)
    detail = f"{name}: quiet on {len(labels) - len(loud)}/{len(labels)} look-alike events ({', '.join(cases)})"
    if loud:
        detail += "; MATCHED " + ", ".join(loud)
    return not loud, detail


def both_sides(pid: str, proven: bool, detail: str) -> list[Proof]:
    """A finding that stops both proofs of a rule (no query, no events): one Proof per side."""
    return [Proof(pid, TARGET, proven, detail, side=side) for side in ("fires", "quiet")]
