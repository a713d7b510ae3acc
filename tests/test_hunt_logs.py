"""`rulegen hunt` on Zeek JSON logs, kernel LOG lines and ulogd2 JSON written here in each producer's documented
layout (not derived from the rules), on bad input, and against the SQLite proof on CIDR, regex and a
correlation window."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest

from rulegen.hunt import formats
from rulegen.hunt.engine import regexp
from rulegen.prove import sigma as proof
from tests.conftest import run_rulegen


def _hunt(rules: Path, *logs: Path, level: str = "informational") -> tuple[int, list[dict], str]:
    result = run_rulegen("hunt", "--rules", str(rules), "--json", "--min-level", level, *map(str, logs))
    return result.returncode, [json.loads(line) for line in result.stdout.splitlines()], result.stderr


def _titles(alerts: list[dict]) -> set[str]:
    return {a["rule"]["title"] for a in alerts}


# Zeek 6 JSON (LogAscii::use_json=T): one object per line, flat dotted id fields, ts in epoch seconds.
ZEEK = {
    "conn.log": [
        {"ts": 1764400000.1, "uid": "CHhAvVGS1DHFjwGM9", "id.orig_h": "198.51.100.7", "id.orig_p": 51514,
         "id.resp_h": "192.168.1.20", "id.resp_p": 23, "proto": "tcp", "duration": 0.01, "conn_state": "REJ",
         "local_orig": False, "local_resp": True, "missed_bytes": 0, "history": "Sr", "orig_pkts": 1,
         "resp_pkts": 1},
        {"ts": 1764400001.2, "uid": "C4J4Th3PJpwUYZZ6gc", "id.orig_h": "192.168.1.10", "id.orig_p": 50432,
         "id.resp_h": "198.51.100.80", "id.resp_p": 443, "proto": "tcp", "service": "ssl", "duration": 2.5,
         "conn_state": "SF", "history": "ShADadfF", "orig_pkts": 12, "resp_pkts": 14},
    ],
    "dns.log": [
        {"ts": 1764400002.0, "uid": "CpjMvj2Cvj8Gq2Wk2", "id.orig_h": "198.51.100.9", "id.orig_p": 40001,
         "id.resp_h": "192.168.1.1", "id.resp_p": 53, "proto": "tcp", "trans_id": 7, "query": "example.com",
         "qclass": 1, "qclass_name": "C_INTERNET", "qtype": 252, "qtype_name": "AXFR", "rcode": 5,
         "rcode_name": "REFUSED", "AA": False, "TC": False, "RD": False, "RA": False, "Z": 0, "rejected": True},
        {"ts": 1764400003.0, "uid": "CxLd0N4uX2kZ7b0Yb", "id.orig_h": "192.168.1.10", "id.orig_p": 53211,
         "id.resp_h": "192.168.1.1", "id.resp_p": 53, "proto": "udp", "trans_id": 8, "query": "www.example.com",
         "qtype": 1, "qtype_name": "A", "rcode": 0, "rcode_name": "NOERROR", "answers": ["93.184.215.14"],
         "TTLs": [300.0], "rejected": False},
    ],
    "snmp.log": [
        {"ts": 1764400004.0, "uid": "CYKb1j3Y0Qq4y1Y7c", "id.orig_h": "198.51.100.11", "id.orig_p": 40100,
         "id.resp_h": "192.168.1.5", "id.resp_p": 161, "duration": 0.0, "version": "2c", "community": "public",
         "get_requests": 1, "get_bulk_requests": 0, "get_responses": 0, "set_requests": 0},
    ],
    "ftp.log": [
        {"ts": 1764400005.0, "uid": "CwY2sB1yQZz8x6hH5", "id.orig_h": "198.51.100.12", "id.orig_p": 40200,
         "id.resp_h": "192.168.1.21", "id.resp_p": 21, "user": "anonymous", "password": "<hidden>",
         "command": "RETR", "arg": "ftp://192.168.1.21/pub/README", "reply_code": 226, "reply_msg": "Done"},
    ],
    "dhcp.log": [
        {"ts": 1764400006.0, "uids": ["C8mgJ73YQmz3sQGzH4"], "client_addr": "192.168.1.100",
         "server_addr": "192.168.1.66", "mac": "02:00:5e:10:00:aa", "assigned_addr": "192.168.1.100",
         "lease_time": 86400.0, "msg_types": ["DISCOVER", "OFFER", "REQUEST", "ACK"], "duration": 0.4},
    ],
}
ZEEK_EXPECTED = {"Inbound Telnet Connection Attempt", "DNS Zone Transfer Request (AXFR) from Outside",
                 "Anonymous FTP Login Attempt from Outside", "DHCP Offer from a Server Not on the Allowed List"}


def test_zeek_json_logs(built, tmp_path):
    for name, records in ZEEK.items():
        path = tmp_path / (name + ".gz" if name == "dns.log" else name)
        text = "".join(json.dumps(r) + "\n" for r in records)
        path.write_bytes(gzip.compress(text.encode()) if path.suffix == ".gz" else text.encode())
    code, alerts, err = _hunt(built / "sigma", *sorted(tmp_path.iterdir()))
    assert code == 1, err
    titles = _titles(alerts)
    assert {t for t in titles if any(t.startswith(e.split(" (")[0][:20]) for e in ZEEK_EXPECTED)}, titles
    assert any("SNMP" in t and "public" in t.lower() or "Community" in t for t in titles), titles
    lines = {(Path(a["source"]["file"]).name, a["source"]["line"]) for a in alerts}
    assert ("conn.log", 2) not in lines  # the HTTPS session out raised nothing
    assert ("dns.log.gz", 2) not in lines  # nor the A lookup
    axfr = next(a for a in alerts if "AXFR" in a["rule"]["title"])
    assert axfr["events"][0]["fields"]["record_type"] == "AXFR"  # Sigma's name for Zeek's qtype_name
    assert axfr["events"][0]["record"]["qtype"] == 252


# The kernel's LOG target (nf_log_syslog): prefix, IN= OUT= [MAC=] SRC= DST= LEN= TOS= PREC= TTL= ID= [DF]
# PROTO= SPT= DPT= [WINDOW= RES= flags URGP=]; in /var/log/kern.log (rsyslog) and journalctl -k text.
KERNEL_LINES = [
    "2026-11-29T13:12:09.123456+00:00 gw kernel: [12345.678901] rulegen:{sid}:drop IN=eth0 OUT= "
    "MAC=52:54:00:12:34:56:52:54:00:65:43:21:08:00 SRC=198.51.100.7 DST=192.168.1.20 LEN=60 TOS=0x00 PREC=0x00 "
    "TTL=52 ID=54321 DF PROTO=TCP SPT=51514 DPT=23 WINDOW=64240 RES=0x00 SYN URGP=0",
    "Nov 29 13:12:10 gw kernel: usb 1-1: new high-speed USB device number 2 using xhci_hcd",
    "Nov 29 13:12:11 gw kernel: IN=eth0 OUT= MAC=52:54:00:12:34:56:52:54:00:65:43:21:08:00 SRC=192.168.1.30 "
    "DST=192.168.1.20 LEN=60 TOS=0x00 PREC=0x00 TTL=64 ID=1 DF PROTO=TCP SPT=40000 DPT=23 WINDOW=64240 "
    "RES=0x00 SYN URGP=0",
]


def test_kernel_log_lines_name_the_rulegen_pattern(built, manifest, tmp_path):
    telnet = next(p for p in manifest["patterns"] if p["id"] == "telnet-probe")
    log = tmp_path / "kern.log"
    log.write_text("\n".join(KERNEL_LINES).format(sid=telnet["sid"]) + "\n")
    assert formats.detect(log) is formats.KERNEL
    code, alerts, err = _hunt(built / "sigma", log)
    assert code == 1, err
    assert [a["source"]["line"] for a in alerts] == [1]  # the home client on line 3 is no inbound probe
    assert alerts[0]["rulegen_patterns"][0] == "telnet-probe"
    # the fields the rule reads, under their Sigma names
    assert alerts[0]["events"][0]["fields"] == {"dst_port": 23, "protocol": "TCP", "src_ip": "198.51.100.7"}


def test_ulogd2_json(built, tmp_path):
    # ulogd_output_JSON.c: CIM names where ulogd has one (src_ip, dest_ip, src_port, dest_port), else ulogd's
    record = {"timestamp": "2026-11-29T14:12:09.123456+0100", "dvc": "Netfilter", "raw.pktlen": 60,
              "raw.pktcount": 1, "oob.prefix": "rulegen:1000001:log ", "oob.time.sec": 1764421929,
              "oob.time.usec": 123456, "oob.mark": 0, "oob.hook": 1, "oob.family": 2, "oob.protocol": 2048,
              "oob.in": "eth0", "oob.out": "", "ip.protocol": 6, "ip.tos": 0, "ip.ttl": 52, "ip.totlen": 60,
              "ip.ihl": 5, "ip.id": 54321, "ip.fragoff": 16384, "src_port": 51514, "dest_port": 23,
              "tcp.seq": 1, "tcp.ackseq": 0, "tcp.window": 64240, "tcp.syn": 1, "src_ip": "198.51.100.7",
              "dest_ip": "192.168.1.20"}
    udp = {**record, "ip.protocol": 17, "dest_port": 23}
    log = tmp_path / "ulogd.json"
    log.write_text(json.dumps(record) + "\n" + json.dumps(udp) + "\n")
    assert formats.detect(log) is formats.ULOGD2
    code, alerts, err = _hunt(built / "sigma", log)
    assert code == 1, err
    assert [(a["rule"]["title"], a["source"]["line"]) for a in alerts] == [("Inbound Telnet Connection Attempt", 1)]
    assert alerts[0]["events"][0]["record"]["rulegen.action"] == "log"


@pytest.mark.parametrize("content, message", [
    (b"just some text\n", "unknown log format"),
    (b'{"hello": 1}\n', "unknown producer"),
    (b'{"event_type": "flow", "src_ip": "1.2.3.4"}\n{"event_type": \n', ":2: not a JSON object"),
    (b"#separator \\x09\n#fields\tts\n", "Zeek TSV"),
])
def test_bad_input_exits_2_with_file_and_line(built, tmp_path, content, message):
    log = tmp_path / "bad.log"
    log.write_bytes(content)
    result = run_rulegen("hunt", "--rules", str(built / "sigma"), str(log))
    assert result.returncode == 2
    assert f"{log}" in result.stderr and message in result.stderr
    assert "Traceback" not in result.stderr


def test_a_broken_rule_exits_2(tmp_path):
    (tmp_path / "rules").mkdir()
    (tmp_path / "rules" / "broken.yml").write_text("title: x\nlogsource: {category: firewall}\ndetection: {}\n")
    log = tmp_path / "k.log"
    log.write_text(KERNEL_LINES[2] + "\n")
    result = run_rulegen("hunt", "--rules", str(tmp_path / "rules"), str(log))
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr


# --- the same answers as the SQLite proof: a CIDR filter, a regex, a correlation window -------------------------

RULES = {
    "cidr.yml": """title: CIDR telnet
id: 5b1d3c52-4f3e-4a57-9d43-3a1f6f0a0001
status: experimental
logsource: {category: firewall}
detection:
    selection: {dst_port: 23, src_ip|cidr: ['198.51.100.0/25', '2001:db8::/33']}
    condition: selection
level: medium
""",
    "regex.yml": """title: Regex hosts
id: 5b1d3c52-4f3e-4a57-9d43-3a1f6f0a0002
status: experimental
logsource: {category: firewall}
detection:
    selection: {dst_ip|re: '^192\\.168\\.1\\.(1|2)[0-9]$'}
    condition: selection
level: medium
""",
    "base.yml": """title: Inbound TCP
id: 5b1d3c52-4f3e-4a57-9d43-3a1f6f0a0003
name: inbound_tcp
status: experimental
logsource: {category: firewall}
detection:
    selection: {protocol: tcp, dst_port|lt: 1024}
    condition: selection
level: low
""",
    "corr.yml": """title: Many ports
id: 5b1d3c52-4f3e-4a57-9d43-3a1f6f0a0004
status: experimental
correlation:
    type: value_count
    rules: [inbound_tcp]
    group-by: [src_ip]
    timespan: 10s
    condition: {gte: 5, field: dst_port}
level: high
""",
}


def _flows() -> list[dict]:
    flows = []
    t = 1764400000.0
    for i, (src, dst, port) in enumerate([("198.51.100.5", "192.168.1.15", 23), ("198.51.100.200", "192.168.1.3", 23),
                                          ("2001:db8::9", "192.168.1.30", 23), ("203.0.113.1", "192.168.1.12", 80)]):
        flows.append({"ts": t + i, "src": src, "dst": dst, "port": port})
    for i in range(5):  # a fast scan: 5 ports in 4 s (alerts), then a slow one: 5 ports over 40 s (quiet)
        flows.append({"ts": t + 100 + i, "src": "203.0.113.50", "dst": "192.168.1.40", "port": 20 + i})
        flows.append({"ts": t + 200 + 10 * i, "src": "203.0.113.60", "dst": "192.168.1.40", "port": 20 + i})
    return sorted(flows, key=lambda f: f["ts"])


def test_same_answers_as_the_sqlite_proof(tmp_path):
    rules = tmp_path / "rules"
    rules.mkdir()
    for name, text in RULES.items():
        (rules / name).write_text(text)
    flows = _flows()
    # the proof's way: Sigma's field names straight into SQLite, pySigma-backend-sqlite without a pipeline
    events = [proof.Event(str(n + 1), {"timestamp": proof.datetime.fromtimestamp(f["ts"], proof.UTC).strftime(
        "%Y-%m-%dT%H:%M:%S.%fZ"), "src_ip": f["src"], "src_port": 40000, "dst_ip": f["dst"], "dst_port": f["port"],
        "protocol": "tcp"}) for n, f in enumerate(flows)]
    db = proof.load_events(events)
    db.create_function("REGEXP", 2, regexp, deterministic=True)  # the proof's own rules use no regex
    queries = proof.convert_rules([rules / "cidr.yml", rules / "regex.yml"])
    expected = {name: proof.matched(db, queries[rules / name][0]) for name in ("cidr.yml", "regex.yml")}
    corr = proof.correlation_alerts(db, proof.convert_correlation(rules / "corr.yml", rules / "base.yml")[0])
    expected_groups = {json.loads(a["group_keys"])["src_ip"] for a in corr}
    # hunt's way: the same flows as Zeek conn.log records
    log = tmp_path / "conn.log"
    log.write_text("".join(json.dumps({"ts": f["ts"], "uid": f"C{n}", "id.orig_h": f["src"], "id.orig_p": 40000,
                                       "id.resp_h": f["dst"], "id.resp_p": f["port"], "proto": "tcp"}) + "\n"
                           for n, f in enumerate(flows)))
    code, alerts, err = _hunt(rules, log)
    assert code == 1, err
    got = {name: {str(a["source"]["line"]) for a in alerts if a["rule"]["title"] == title}
           for name, title in (("cidr.yml", "CIDR telnet"), ("regex.yml", "Regex hosts"))}
    assert got == expected and expected["cidr.yml"] and expected["regex.yml"]
    groups = {a["correlation"]["group"]["src_ip"] for a in alerts if a["rule"]["title"] == "Many ports"}
    assert groups == expected_groups == {"203.0.113.50"}
    assert "Inbound TCP" not in _titles(alerts)  # a correlation's base rule raises nothing alone


FOREIGN = {
    "zeek_http_put.yml": """title: WebDAV PUT from a home host
id: 5b1d3c52-4f3e-4a57-9d43-3a1f6f0a0010
status: experimental
logsource: {product: zeek, service: http}
detection:
    selection: {method: PUT, user_agent|contains: WebDAV, id.orig_h|cidr: 192.168.0.0/16}
    condition: selection
level: low
""",
    "zeek_http_made_up.yml": """title: Not Zeek's field names
id: 5b1d3c52-4f3e-4a57-9d43-3a1f6f0a0011
status: experimental
logsource: {product: zeek, service: http}
detection:
    selection: {c-uri|endswith: .exe}
    condition: selection
level: high
""",
    "vendor.yml": """title: A router's own log
id: 5b1d3c52-4f3e-4a57-9d43-3a1f6f0a0012
status: experimental
logsource: {product: cisco, service: aaa}
detection:
    keywords: ['clear logging']
    condition: keywords
level: medium
""",
}


def test_foreign_rules_on_zeek_and_what_the_input_cannot_carry(tmp_path):
    rules = tmp_path / "rules"
    rules.mkdir()
    for name, text in FOREIGN.items():
        (rules / name).write_text(text)
    log = tmp_path / "http.log"
    log.write_text(json.dumps({"ts": 1764400004.0, "uid": "C1", "id.orig_h": "192.168.1.9", "id.orig_p": 40003,
                               "id.resp_h": "203.0.113.9", "id.resp_p": 80, "trans_depth": 1, "method": "PUT",
                               "host": "203.0.113.9", "uri": "/x", "version": "1.1",
                               "user_agent": "Microsoft-WebDAV-MiniRedir/10.0.19041", "status_code": 201}) + "\n")
    code, alerts, err = _hunt(rules, log)
    assert code == 1, err
    assert _titles(alerts) == {"WebDAV PUT from a home host"}
    skipped = [line for line in err.splitlines() if line.startswith("not applicable:")]
    assert len(skipped) == 2, err
    assert any("zeek_http_made_up.yml" in line and "not one of the fields Zeek documents" in line for line in skipped)
    assert any("vendor.yml" in line and "not this log source" in line for line in skipped)


def test_eve_dns_in_the_8x_version_3_layout(built, tmp_path):
    # Suricata 8 (dns version 3): requests and responses carry dns.queries[]; the response is no request
    base = {"flow_id": 1, "event_type": "dns", "src_ip": "198.51.100.9", "src_port": 40001, "dest_ip": "192.168.1.1",
            "dest_port": 53, "proto": "TCP", "pkt_src": "wire/pcap"}
    request = {"timestamp": "2026-11-29T13:12:09.000100+0000", **base,
               "dns": {"version": 3, "type": "request", "tx_id": 0, "id": 7, "flags": "0", "opcode": 0, "rd": False,
                       "queries": [{"rrname": "example.com", "rrtype": "AXFR"}]}}
    response = {"timestamp": "2026-11-29T13:12:09.000300+0000", **base, "src_ip": "192.168.1.1", "src_port": 53,
                "dest_ip": "198.51.100.9", "dest_port": 40001,
                "dns": {"version": 3, "type": "response", "tx_id": 0, "id": 7, "flags": "8505", "qr": True,
                        "opcode": 0, "rcode": "REFUSED", "queries": [{"rrname": "example.com", "rrtype": "AXFR"}]}}
    log = tmp_path / "eve.json"
    log.write_text(json.dumps(request) + "\n" + json.dumps(response) + "\n")
    code, alerts, err = _hunt(built / "sigma", log)
    assert code == 1, err
    assert [(a["rule"]["title"], a["source"]["line"]) for a in alerts] == [
        ("DNS Zone Transfer Request (AXFR) from Outside", 1)]
    assert alerts[0]["events"][0]["fields"]["record_type"] == ["AXFR"]
