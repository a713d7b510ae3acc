"""Synthetic knowledge bases for the benchmark: every detect kind, every match kind, both transports,
single ports, port lists, ranges, IP lists (list: and not-list:) and every response."""

from __future__ import annotations

from pathlib import Path

import yaml

REF = "http://www.robertgraham.com/pubs/firewall-seen.html"
# IP lists of IPv4 addresses and CIDR blocks. IPv4 only: a list mixing IPv4 and IPv6 makes nft reject the
# rule ("conflicting protocols specified: ip vs. ip6") and suricata-check fail to parse it (a known defect).
LISTS = 20


def _port(i: int, salt: int = 0) -> int:
    return 1 + (i * 37 + salt * 7919) % 65000


def _kinds(i: int) -> list[dict]:
    """The pattern templates; pattern i uses template i % len(templates)."""
    p, q = _port(i), _port(i, 1)
    lst = f"list:bench-list-{i % LISTS}"
    nlst = f"not-list:bench-list-{i % LISTS}"
    return [
        dict(category="SCAN", direction="inbound", transport="tcp", dst_ports=[p], detect="probe",
             severity="low", classtype="attempted-recon", response="drop"),
        dict(category="SCAN", direction="inbound", transport="udp", dst_ports=[p], detect="probe",
             severity="medium", classtype="attempted-recon", response="reject"),
        dict(category="INFO", direction="inbound", transport="udp", dst_ports=[f"{p}-{p + 20}"], detect="traffic",
             severity="informational", classtype="not-suspicious", response="log"),
        dict(category="MALWARE", direction="outbound", transport="tcp", src_ports=[q], dst_ports=[p, p + 1],
             detect="traffic", severity="high", classtype="trojan-activity", response="alert"),
        dict(category="ADWARE", direction="outbound", transport="tcp", dst_ports=[p], dst_net=lst, detect="probe",
             severity="low", classtype="pup-activity", response="drop"),
        dict(category="EXPLOIT", direction="inbound", transport="udp", dst_ports=[p], src_net=nlst, detect="probe",
             severity="high", classtype="misc-attack", response="drop"),
        dict(category="SCAN", direction="inbound", transport="udp", src_ports=[p], dst_ports_except=[q],
             detect="probe", severity="low", classtype="unusual-client-port-connection", response="drop"),
        dict(category="SCAN", direction="inbound", transport="tcp", dst_ports=[f"{p}-{p + 100}"], detect="sweep",
             sweep={"distinct": "dst_port", "count": 20, "seconds": 60}, severity="medium",
             classtype="network-scan", response="alert"),
        dict(category="SCAN", direction="internal", transport="udp", dst_ports=[p], detect="sweep",
             sweep={"distinct": "dst_ip", "count": 10, "seconds": 60}, severity="low",
             classtype="network-scan", response="alert"),
        dict(category="POLICY", direction="inbound", transport="tcp", dst_ports=[p], detect="payload",
             match={"content": [{"text": f"BN{i:06d}", "offset": 0, "depth": 8}]}, severity="low",
             classtype="policy-violation", response="alert"),
        dict(category="MALWARE", direction="inbound", transport="udp", dst_ports=[p], detect="payload",
             match={"content": [{"hex": f"{i >> 16 & 255:02x} {i >> 8 & 255:02x} {i & 255:02x} be ef"}]},
             severity="high", classtype="trojan-activity", response="alert"),
        dict(category="ADWARE", direction="outbound", transport="udp", dst_ports=[53], detect="payload",
             match={"dns": {"query": f"ads{i}.example.com"}}, severity="low", classtype="pup-activity",
             response="alert"),
        dict(category="SCAN", direction="inbound", transport="tcp", dst_ports=[53], detect="payload",
             match={"dns": {"qtype": "AXFR"}}, severity="medium", classtype="attempted-recon", response="alert"),
        dict(category="SCAN", direction="inbound", transport="udp", dst_ports=[161], detect="payload",
             match={"snmp": {"community": f"comm{i}"}}, severity="medium", classtype="attempted-recon",
             response="alert"),
        dict(category="POLICY", direction="inbound", transport="tcp", dst_ports=[21], detect="payload",
             match={"ftp": {"user": f"user{i}"}}, severity="low", classtype="attempted-recon", response="alert"),
        dict(category="EXPLOIT", direction="inbound", transport="udp", dst_ports=[69], detect="payload",
             match={"tftp": {"opcode": "read", "filename": f"file{i}"}}, severity="high",
             classtype="suspicious-filename-detect", response="alert"),
        dict(category="EXPLOIT", direction="broadcast", transport="udp", src_ports=[67], dst_ports=[68],
             src_net=nlst, dst_net="any", detect="payload", match={"dhcp": {"message_type": "offer"}},
             severity="high", classtype="misc-attack", response="alert"),
        dict(category="EXPLOIT", direction="inbound", transport="tcp", dst_ports=[p], detect="payload",
             match={"login": {"users": [f"u{i}a", f"u{i}b"]}}, severity="high",
             classtype="default-login-attempt", response="alert"),
        dict(category="SCAN", direction="inbound", transport="udp", dst_ports=[f"{p}-{p + 130}"], detect="payload",
             match={"rpc": {"program": 100000 + i}}, severity="medium", classtype="rpc-portmap-decode",
             response="alert"),
        dict(category="SCAN", direction="inbound", transport="udp", dst_ports=[137], detect="payload",
             match={"netbios": {"query": "nbstat"}}, severity="low", classtype="attempted-recon", response="alert"),
        dict(category="MALWARE", direction="inbound", transport="tcp", dst_ports=[p], detect="payload",
             flow="to_client", match={"shell": {"response": f"uid=0(root) gid={i}"}}, severity="critical",
             classtype="successful-admin", response="alert"),
        dict(category="INFO", direction="broadcast", transport="udp", dst_ports=[p], detect="traffic",
             severity="informational", classtype="not-suspicious", response="log"),
        dict(category="SCAN", direction="inbound", transport="tcp", dst_ports=[p, q, f"{p + 2}-{p + 9}"],
             detect="probe", severity="medium", classtype="attempted-recon", response="reject"),
        dict(category="DOS", direction="any", transport="udp", src_ports=[p], dst_ports=[q], detect="traffic",
             severity="medium", classtype="attempted-dos", response="drop"),
        dict(category="SCAN", direction="inbound", transport="tcp", dst_ports=[25, p], detect="payload",
             match={"smtp": {"reply": "relay-denied"}}, severity="low", classtype="attempted-recon",
             response="alert"),
        dict(category="SCAN", direction="inbound", transport="tcp", dst_ports=[25, q], detect="payload",
             match={"smtp": {"rcpt": "relay-route"}}, severity="medium", classtype="misc-attack", response="alert"),
    ]


KINDS = len(_kinds(0))


def pattern(i: int, entry: str) -> dict:
    body = _kinds(i)[i % KINDS]
    return {"id": f"{entry}-p{i}", "title": f"Synthetic pattern {i} ({body['detect']} {body['transport']})",
            **body, "false_positives": "Synthetic benchmark pattern."}


def knowledge(n: int, per_entry: int = 4) -> dict:
    lists = [{"id": f"bench-list-{k}", "title": f"Benchmark list {k}",
              "addresses": [f"198.18.{k}.{j}" for j in range(1, 6)] + [f"198.19.{k}.0/24"]}
             for k in range(LISTS)]
    entries = []
    for start in range(0, n, per_entry):
        eid = f"bench-{start // per_entry:05d}"
        entries.append({
            "id": eid, "table": "destination", "ports": [_port(start)], "protocols": ["tcp", "udp"],
            "service": "synthetic", "title": f"Synthetic entry {start // per_entry}",
            "description": {"en": "Synthetic entry for the benchmark.", "zh": "基准测试用的合成条目。"},
            "references": [REF], "tags": ["benchmark"],
            "patterns": [pattern(i, eid) for i in range(start, min(n, start + per_entry))]})
    return {"ip_lists": lists, "entries": entries}


def write(n: int, folder: Path) -> Path:
    """Write a knowledge folder of n patterns (split over files of 2,000 patterns); returns the folder."""
    folder.mkdir(parents=True, exist_ok=True)
    data = knowledge(n)
    chunk = 500  # entries per file
    (folder / "bench-lists.yaml").write_text(yaml.safe_dump({"ip_lists": data["ip_lists"]}, allow_unicode=True,
                                                            sort_keys=False), encoding="utf-8")
    for k in range(0, len(data["entries"]), chunk):
        (folder / f"bench-{k // chunk:03d}.yaml").write_text(
            yaml.safe_dump({"entries": data["entries"][k:k + chunk]}, allow_unicode=True, sort_keys=False),
            encoding="utf-8")
    return folder


class _NoAliases(yaml.SafeDumper):
    """Knowledge files refuse YAML aliases: write shared objects out in full."""

    def ignore_aliases(self, data: object) -> bool:
        return True


def replicate(source: Path, times: int, folder: Path) -> Path:
    """The shipped knowledge `times` over: copy k renames every entry and pattern id with the suffix `-xK`;
    the home network, port classes and IP lists are written once (patterns refer to them by name)."""
    folder.mkdir(parents=True, exist_ok=True)
    for path in sorted(p for p in source.rglob("*.yaml") if p.name != "pack.yaml"):  # every pack's files, flat
        name = "-".join(path.relative_to(source).parts)
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
        entries = data.pop("entries", [])
        if data:
            (folder / f"shared-{name}").write_text(yaml.safe_dump(data, allow_unicode=True, sort_keys=False),
                                                        encoding="utf-8")
        copies = []
        for k in range(times):
            for entry in entries:
                copies.append({**entry, "id": f"{entry['id']}-x{k}",
                               "patterns": [{**p, "id": f"{p['id']}-x{k}", "title": f"{p['title']} (copy {k})"}
                                            for p in entry["patterns"]]})
        if copies:
            (folder / name).write_text(yaml.dump({"entries": copies}, Dumper=_NoAliases, allow_unicode=True,
                                                      sort_keys=False), encoding="utf-8")
    return folder
