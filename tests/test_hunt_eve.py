"""`rulegen hunt` over the EVE JSON of the real Suricata: every capture that proves a Suricata rule (and the capture
of each Sigma-only pattern) is replayed with EVE flow, netflow, dns, dhcp, ftp, smtp, snmp, tftp and http records
on; each Sigma pattern whose log source an EVE record carries must alert on its own capture, and the normal traffic
must raise nothing above informational."""

from __future__ import annotations

import json
import re
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import yaml

from rulegen.hunt.formats import EVE
from rulegen.hunt.rules import plan, rule_paths
from rulegen.hunt.session import Hunt
from rulegen.prove import captures, suricata
from rulegen.validate import engines
from rulegen.validate.suricata import minimal_config
from tests.conftest import run_rulegen

EVE_TYPES = ("flow", "netflow", "dns", "dhcp", "ftp", "smtp", "snmp", "tftp", "http")
EVE_CONFIG = ("outputs:\n  - eve-log:\n      enabled: yes\n      filetype: regular\n      filename: eve.json\n"
              "      types:\n" + "".join(f"        - {t}\n" for t in EVE_TYPES if t not in ("dhcp", "http"))
              + "        - dhcp:\n            extended: yes\n"  # dhcp_type (offer, ack...) is an extended field
              + "        - http:\n            extended: yes\n")  # and so is http_method


def _manifest(out: Path) -> dict:
    return json.loads((out / "manifest.json").read_text())


def _sigma_rules(out: Path) -> dict[str, str]:
    """pattern id -> its Sigma rule file (the correlation where the pattern has one)."""
    rules = {}
    for row in _manifest(out)["patterns"]:
        arts = [a for a in row["coverage"].get("sigma", {}).get("artifacts", []) if a.startswith("sigma/")]
        corr = [a for a in arts if Path(a).name.startswith("correlation_")]
        if arts:
            rules[row["id"]] = str(out / (corr or arts)[0])
    return rules


@pytest.fixture(scope="module")
def eve_logs(built, kb, tmp_path_factory) -> dict[str, Path]:
    binary = engines.find("suricata")
    if binary is None:
        engines.unavailable("suricata", "not found")
        pytest.skip("suricata not found")
    work = tmp_path_factory.mktemp("eve")
    config = work / "suricata.yaml"
    config.write_text(minimal_config(kb.home.addresses) + EVE_CONFIG)
    patterns = {p.id: p for p in kb.patterns}
    # every pattern with a Suricata proof, and the Sigma-only ones (a port sweep, informational source ports):
    # captures.py derives a capture from any pattern
    shown = set(suricata.expressed(built)) | set(_sigma_rules(built))
    pcaps = [captures.write(patterns[pid], kb, work / "pcap" / f"{pid}.pcap") for pid in sorted(shown)
             if pid in patterns]
    pcaps.append(captures.normal_traffic(kb).write(work / "pcap" / "normal-traffic.pcap"))
    rules = built / "suricata" / "rulegen.rules"
    with ThreadPoolExecutor(max_workers=2) as pool:
        replays = list(pool.map(lambda p: suricata.replay_one(binary, config, rules, p, work / "logs" / p.stem), pcaps))
    failed = [r.error for r in replays if r.error]
    assert not failed, failed
    return {r.name: work / "logs" / r.name / "eve.json" for r in replays}


def _carried(built: Path) -> set[str]:
    """Sigma rule files an EVE record can carry (the EVE pipeline converts them)."""
    eve = plan(rule_paths([built / "sigma"]), EVE)
    return {str(Path(p).resolve()) for p in map(str, rule_paths([built / "sigma"]))} - \
        {str(Path(p).resolve()) for p in eve.not_applicable}


def _hunt(built: Path, log: Path, *extra: str) -> tuple[int, list[dict], str]:
    result = run_rulegen("hunt", "--rules", str(built / "sigma"), "--json", *extra, str(log))
    return result.returncode, [json.loads(line) for line in result.stdout.splitlines()], result.stderr


def test_every_eve_carried_pattern_alerts_on_its_capture(built, eve_logs):
    """One hunt session (the rules converted once), a fresh run per capture: no window spans two captures."""
    carried = _carried(built)
    rule_ids = {pid: yaml.safe_load(Path(rule).read_text())["id"] for pid, rule in _sigma_rules(built).items()}
    session = Hunt([built / "sigma"], "informational")
    checked, missed = [], []
    for pid, rule in sorted(_sigma_rules(built).items()):
        if pid not in eve_logs or str(Path(rule).resolve()) not in carried:
            continue
        alerts = list(session.run([eve_logs[pid]]))
        checked.append(pid)
        if rule_ids[pid] not in {a.rule.id for a in alerts}:
            missed.append(f"{pid}: {sorted(a.rule.title for a in alerts)}")
    expected = {pid for pid, rule in _sigma_rules(built).items() if str(Path(rule).resolve()) in carried}
    assert set(checked) == expected and expected, sorted(expected - set(checked))  # each had its own capture
    assert not missed, f"{len(missed)}/{len(checked)} patterns did not alert on their own EVE:\n" + "\n".join(missed)


def test_normal_traffic_raises_nothing_above_informational(built, eve_logs):
    code, alerts, err = _hunt(built, eve_logs["normal-traffic"])
    assert code == 0, [a["rule"]["title"] for a in alerts] or err
    assert alerts == []
    events = [json.loads(line) for line in eve_logs["normal-traffic"].read_text().splitlines()]
    assert {"flow", "dns"} <= {e["event_type"] for e in events}  # the normal traffic did reach the rules


def test_siem_dns_queries_compare_the_record_type_as_suricata_writes_it(built, kb, eve_logs, tmp_path):
    """A SIEM fed by Suricata's EVE (the Splunk TA, Filebeat's suricata module) keeps its rrtype: 7.0 writes AXFR as
    "252". Every record type that the real Suricata wrote for a DNS type pattern's capture is in the query that
    each backend converts from the pattern's Sigma rule."""
    out = tmp_path / "siem"
    result = run_rulegen("convert", "-o", str(out), str(built / "sigma"))
    assert result.returncode == 0, result.stderr
    rules = _sigma_rules(built)
    typed = [p.id for p in kb.patterns if p.match is not None and p.match.dns_qtype and p.id in rules]
    assert typed
    for pid in typed:
        events = [json.loads(line) for line in eve_logs[pid].read_text().splitlines()]
        written = {e["dns"]["rrtype"] for e in events if e["event_type"] == "dns"}
        assert written, pid
        stem = Path(rules[pid]).stem
        for backend, suffix, field in (("splunk", ".spl", "record_type"), ("lucene", ".lucene", "dns.question.type"),
                                       ("esql", ".esql", "dns.question.type")):
            query = (out / backend / "queries" / f"{stem}{suffix}").read_text()
            compared = re.search(rf"{re.escape(field)}(?:(?: IN | in |:)\(([^)]*)\)|(?:==|=|:)(\"[^\"]*\"|\w+))",
                                 query)
            assert compared, f"{pid} {backend}: {query}"
            values = {v.strip(' "') for v in re.split(r",| OR ", compared.group(1) or compared.group(2))}
            assert written <= values, f"{pid} {backend}: Suricata wrote {written}, the query compares {values}"
