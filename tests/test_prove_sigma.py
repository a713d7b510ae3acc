"""Issue 4, item 3: every generated Sigma rule matches log events that show its pattern and no normal event;
every correlation (scan) rule fires on a burst from one source and not below its count.
Issue 11: every rule stays quiet on the look-alikes of its pattern (the other direction, loopback, ordinary use of
the service; for scans, one busy peer to one host).

The rules run in SQLite through pySigma-backend-sqlite (no external engine, so nothing here skips).
The cases come from the knowledge: a new pattern with a Sigma rule is a new test case, with no new code.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import yaml
from conftest import copy_knowledge, run_rulegen

from rulegen.build import plan_all
from rulegen.knowledge import default_knowledge_dir, load_knowledge
from rulegen.model import LOOPBACK
from rulegen.prove import sigma as prove_sigma

KB = load_knowledge([default_knowledge_dir()])
PATTERNS = {p.id: p for p in KB.patterns}
SIGMA = [plan.pattern.id for plan in plan_all(KB)["sigma"] if plan.expressed]
SWEEPS = [pid for pid in SIGMA if PATTERNS[pid].sweep is not None]
# Patterns whose rule is right for its pattern and still matches a normal event: the knowledge has to change.
KNOWN_UNPROVEN: dict[str, str] = {}
DESIGN_FIELDS = {
    ("", "firewall", ""): {"src_ip", "src_port", "dst_ip", "dst_port", "action", "protocol"},
    ("", "dns", ""): {"query", "record_type", "src_ip", "dst_ip"},
}


def _case(pid: str):
    if pid in KNOWN_UNPROVEN:
        return pytest.param(pid, marks=pytest.mark.xfail(strict=True, reason=KNOWN_UNPROVEN[pid]))
    return pid


@pytest.fixture(scope="session")
def sigma_proofs(built, kb, tmp_path_factory) -> dict[tuple[str, str], prove_sigma.Proof]:
    """(pattern, side) -> Proof."""
    proofs = prove_sigma.prove(kb, built, tmp_path_factory.mktemp("prove-sigma"))
    keyed = {(p.pattern, p.side): p for p in proofs}
    assert len(keyed) == len(proofs), "one proof per pattern and side"
    return keyed


def test_every_rule_in_the_manifest_gets_a_proof_of_each_side(sigma_proofs, manifest):
    listed = {row["id"] for row in manifest["patterns"] if row["coverage"]["sigma"]["built"]}
    assert listed == set(SIGMA)
    assert set(sigma_proofs) == {(pid, side) for pid in listed for side in ("fires", "quiet")} | \
        {(prove_sigma.NORMAL, "quiet")}
    assert all(p.target == "sigma" and p.skipped is None for p in sigma_proofs.values())


@pytest.mark.parametrize("pattern_id", [_case(pid) for pid in SIGMA])
def test_rule_matches_its_events_and_no_normal_event(sigma_proofs, pattern_id):
    proof = sigma_proofs[pattern_id, "fires"]
    assert proof.proven, proof.detail


@pytest.mark.parametrize("pattern_id", SIGMA)
def test_rule_stays_quiet_on_the_lookalikes_of_its_pattern(sigma_proofs, pattern_id):
    proof = sigma_proofs[pattern_id, "quiet"]
    assert proof.proven, proof.detail
    assert "quiet on " in proof.detail and "look-alike" in proof.detail


@pytest.mark.parametrize("pattern_id", SIGMA)
def test_lookalikes_follow_the_patterns_typed_fields(built, pattern_id):
    """Which look-alikes a pattern gets, read from its direction, addresses and match."""
    pattern = PATTERNS[pattern_id]
    rules, _ = prove_sigma.rule_files(built)
    logsource = rules[pattern_id].logsource
    cases = prove_sigma.lookalikes(pattern, KB, logsource)
    src, dst = pattern.src_net.kind, pattern.dst_net.kind
    if src == "external":
        assert cases["from-home"]["src_ip"].startswith("192.168.")
    if src == "home" and dst == "home":
        assert "from-outside" in cases
    if dst == "broadcast":
        assert {"unicast-home", "unicast-wide"} <= set(cases)
    elif src == "home" and dst != "home":
        assert ("from-outside" if logsource == ("", "dns", "") else "to-home") in cases
    if logsource != ("zeek", "", "dhcp"):
        assert {"loopback-v4", "loopback-v6"} <= set(cases)
    if pattern.match is not None:
        assert set(cases) & {"ftp-named-user", "snmp-site-community", "dns-another-name", "dns-ordinary-type",
                             "dhcp-discover", "smtp-local-delivery", "http-ordinary"}
    if pattern.match is not None and pattern.match.kind == "http":  # one part off, and ordinary use of the server
        assert {"http-ordinary", "http-variant-1"} <= set(cases)
    assert cases, "every pattern has look-alikes to stay quiet on"
    for flows in prove_sigma.lookalike_flows(pattern, KB, logsource).values():
        assert flows and not set(flows) & set(prove_sigma.pattern_flows(pattern, KB))


def test_normal_events_raise_only_the_known_rules(sigma_proofs):
    detail = sigma_proofs[prove_sigma.NORMAL, "quiet"].detail
    loud = detail.split("rules matching any: ", 1)[1]
    named = {part.split(":", 1)[0] for part in loud.split("; ")} - {"none"}
    assert named == set(KNOWN_UNPROVEN), detail


@pytest.mark.parametrize("pattern_id", SWEEPS)
def test_correlation_fires_on_a_burst_and_not_below_its_count(built, pattern_id):
    pattern = PATTERNS[pattern_id]
    rules, correlations = prove_sigma.rule_files(built)
    rule, sweep = rules[pattern_id], pattern.sweep
    query = prove_sigma.convert_correlation(correlations[pattern_id], rule.path)[0]
    normal = [prove_sigma.Event(f"normal:{name}", record) for name, flow in prove_sigma.normal_flows(KB).items()
              if (record := prove_sigma.render(flow, rule.logsource)) is not None]

    def alerts(count: int, step: float) -> tuple[list[dict], str]:
        flows = prove_sigma.burst(pattern, KB, count, step)
        events = [prove_sigma.Event(f"burst#{i}", prove_sigma.render(f, rule.logsource)) for i, f in enumerate(flows)]
        assert len({getattr(f, sweep.distinct) for f in flows}) == count
        return prove_sigma.correlation_alerts(prove_sigma.load_events(normal + events), query), flows[0].src_ip

    hit, source = alerts(sweep.count, 1)
    assert hit, f"no alert on {sweep.count} distinct {sweep.distinct} in {sweep.count - 1}s"
    assert {json.loads(a["group_keys"])["src_ip"] for a in hit} == {source}
    assert max(a["metric_value"] for a in hit) == sweep.count
    assert alerts(sweep.count - 1, 1)[0] == []
    assert alerts(sweep.count, sweep.seconds // (sweep.count - 1) + 1)[0] == [], "fired beyond its timespan"


def test_events_use_the_field_names_of_the_design():
    flows = [f for p in KB.patterns for f in prove_sigma.pattern_flows(p, KB)]
    flows += list(prove_sigma.normal_flows(KB).values())
    for source, fields in DESIGN_FIELDS.items():
        records = [r for f in flows if (r := prove_sigma.render(f, source))]
        assert records and all(set(r) == fields | {"timestamp"} for r in records)
    zeek = {k for f in flows if (r := prove_sigma.render(f, ("zeek", "", "conn"))) for k in r}
    assert {"id.orig_h", "id.orig_p", "id.resp_h", "id.resp_p", "proto"} <= zeek


def test_the_proof_fails_a_rule_that_misses_or_is_too_broad(built, kb, tmp_path):
    """The prover is not vacuous: a rule on the wrong port misses its events, a rule without its direction
    filter matches the outbound SSH of the normal events and the same probe from home."""
    out = tmp_path / "out"
    shutil.copytree(built, out)
    ssh = out / "sigma" / "net_firewall_ssh_probe.yml"
    text = ssh.read_text()
    telnet = out / "sigma" / "net_firewall_telnet_probe.yml"
    telnet.write_text(telnet.read_text().replace("dst_port: 23", "dst_port: 2323"))
    ssh.write_text(text.replace(" and not filter_main_src_local", ""))
    proofs = {(p.pattern, p.side): p for p in prove_sigma.prove(kb, out, tmp_path / "work")}
    assert not proofs["telnet-probe", "fires"].proven and "missed" in proofs["telnet-probe", "fires"].detail
    assert not proofs["ssh-probe", "fires"].proven and "normal:ssh-out/firewall" in proofs["ssh-probe", "fires"].detail
    assert not proofs["ssh-probe", "quiet"].proven
    assert "MATCHED ssh-probe~from-home#0/firewall" in proofs["ssh-probe", "quiet"].detail
    assert not proofs[prove_sigma.NORMAL, "quiet"].proven


@pytest.mark.parametrize("rule_file, drop, pattern_id, case", [
    ("net_firewall_echo_chargen_loop.yml", " and not filter_main_loopback", "echo-chargen-loop", "loopback-v4"),
    ("zeek_ftp_ftp_anonymous_login.yml", " and not filter_main_src_local", "ftp-anonymous-login", "from-home"),
    ("net_dns_conducent_dns_query.yml", " and not filter_main_loopback", "conducent-dns-query", "loopback-v6"),
    ("net_firewall_pcanywhere_local_sweep.yml", " and not filter_main_loopback", "pcanywhere-local-sweep",
     "loopback-v4"),
])
def test_the_quiet_proof_fails_a_rule_without_its_filter(built, kb, tmp_path, rule_file, drop, pattern_id, case):
    """Each look-alike kind catches the rule that lacks the filter against it (for a sweep, through its
    correlation), while the rule still fires."""
    out = tmp_path / "out"
    shutil.copytree(built, out)
    path = out / "sigma" / rule_file
    assert drop in path.read_text()
    path.write_text(path.read_text().replace(drop, ""))
    proofs = {(p.pattern, p.side): p for p in prove_sigma.prove(kb, out, tmp_path / "work")}
    assert proofs[pattern_id, "fires"].proven, proofs[pattern_id, "fires"].detail
    quiet = proofs[pattern_id, "quiet"]
    assert not quiet.proven and case in quiet.detail.split("; ", 1)[1], quiet.detail


@pytest.mark.parametrize("pattern_id", SWEEPS)
def test_correlation_stays_quiet_on_one_busy_peer(built, pattern_id):
    """count + 2 connections from one source to one host and port: one distinct value, no alert."""
    pattern = PATTERNS[pattern_id]
    rules, correlations = prove_sigma.rule_files(built)
    rule = rules[pattern_id]
    query = prove_sigma.convert_correlation(correlations[pattern_id], rule.path)[0]
    flows = prove_sigma.one_target_burst(pattern, KB, pattern.sweep.count + 2)
    assert len(flows) == pattern.sweep.count + 2
    assert len({(f.src_ip, f.dst_ip, f.dst_port) for f in flows}) == 1 and len({f.src_port for f in flows}) > 1
    events = [prove_sigma.Event(f"busy#{i}", prove_sigma.render(f, rule.logsource)) for i, f in enumerate(flows)]
    assert prove_sigma.correlation_alerts(prove_sigma.load_events(events), query) == []


def test_rogue_dhcp_rule_spares_a_listed_server(tmp_path):
    """The shipped dhcp-servers list is empty (a site fills it); filled, the rule must spare that server."""
    knowledge = copy_knowledge(tmp_path / "knowledge")
    source = next(p for p in sorted(Path(knowledge).rglob("*.yaml")) if "id: dhcp-servers" in p.read_text())
    text = source.read_text()
    start = text.index("id: dhcp-servers")
    end = text.index("addresses: []", start) + len("addresses: []")
    source.write_text(text[:start] + text[start:end].replace("addresses: []", "addresses: [192.168.1.1]")
                      + text[end:])
    result = run_rulegen("build", "-t", "sigma", "--no-validate", "--knowledge", str(knowledge),
                         "--out", str(tmp_path / "out"))
    assert result.returncode == 0, result.stderr
    site_kb = load_knowledge([knowledge])
    assert "dhcp-from-listed-server" in prove_sigma.normal_flows(site_kb)
    proofs = {(p.pattern, p.side): p for p in prove_sigma.prove(site_kb, tmp_path / "out", tmp_path / "work")}
    assert proofs["dhcp-rogue-offer", "fires"].proven, proofs["dhcp-rogue-offer", "fires"].detail
    quiet = proofs["dhcp-rogue-offer", "quiet"]
    assert quiet.proven and "dhcp-from-listed-server" in quiet.detail, quiet.detail
    assert "filter_main_known_servers" in (tmp_path / "out" / "sigma" / "zeek_dhcp_dhcp_rogue_offer.yml").read_text()


def _zeek_smtp_row(n: int, rcptto: list[str], last_reply: str) -> dict:
    """A row as Zeek's smtp.log writes it (base/protocols/smtp/main.zeek): `last_reply` is the last reply of
    the transaction, `rcptto` the addresses Zeek extracts from RCPT TO."""
    return {"ts": f"2026-01-01T00:00:{n:02d}.000000Z", "uid": f"CzEek{n}", "id.orig_h": f"198.51.100.{n}",
            "id.orig_p": 50000 + n, "id.resp_h": "192.168.1.25", "id.resp_p": 25, "trans_depth": 1,
            "helo": "client.example.com", "mailfrom": "someone@example.com", "rcptto": rcptto,
            "last_reply": last_reply, "tls": False}


# row name: (rcptto, last_reply, the smtp patterns whose rule must match it)
ZEEK_SMTP_ROWS = {
    "postfix refusal": (["x@example.org"], "554 5.7.1 <x@example.org>: Relay access denied", {"smtp-relay-denied"}),
    "sendmail refusal": (["x@example.org"], "550 5.7.1 <x@example.org>... Relaying denied", {"smtp-relay-denied"}),
    "exim refusal": (["x@example.org"], "550 relay not permitted", {"smtp-relay-denied"}),
    "percent path accepted": (["x%example.org@mx.example.net"], "250 2.0.0 Ok: queued as 1A2B",
                              {"smtp-relay-route-rcpt"}),
    "bang path accepted": (["example.org!x@mx.example.net"], "250 OK id=1r2s3t", {"smtp-relay-route-rcpt"}),
    "local delivery": (["bob@example.net"], "250 2.0.0 Ok: queued as 4Tq9Xk1Zz3", set()),
    "two local recipients": (["bob@example.net", "carol@example.net"], "250 OK", set()),
    "unknown local user": (["nobody@example.net"], "550 5.1.1 <nobody@example.net>: User unknown", set()),
    "spam reject": (["bob@example.net"], "550 5.7.1 Message rejected as spam", set()),
    "accepted, text names relay": (["bob@example.net"], "250 2.1.5 Ok, will relay", set()),
}


def test_zeek_smtp_rules_on_rows_written_apart_from_the_rules(built):
    """Issue 13: the Sigma rules of the relay patterns, on smtp.log rows written by hand as Zeek logs them
    (other servers' wordings, several recipients): each rule matches exactly its rows."""
    paths = {pid: built / "sigma" / f"zeek_smtp_{pid.replace('-', '_')}.yml"
             for pid in ("smtp-relay-denied", "smtp-relay-route-rcpt")}
    events = [prove_sigma.Event(name, _zeek_smtp_row(n, rcpt, reply))
              for n, (name, (rcpt, reply, _)) in enumerate(ZEEK_SMTP_ROWS.items())]
    db = prove_sigma.load_events(events)
    queries = prove_sigma.convert_rules(list(paths.values()))
    for pid, path in paths.items():
        hits = set().union(*(prove_sigma.matched(db, q) for q in queries[path]))
        assert hits == {name for name, (_, _, want) in ZEEK_SMTP_ROWS.items() if pid in want}, pid


FIREWALL = ("", "firewall", "")


@pytest.mark.parametrize("pattern_id", [pid for pid in SIGMA if PATTERNS[pid].dst_net.kind == "broadcast"])
def test_broadcast_rule_matches_both_broadcasts_and_no_unicast(sigma_proofs, kb, pattern_id):
    """Issue 13: the rows of a broadcast pattern carry a directed broadcast and the limited one; its quiet
    proof holds rows to one home host and to a .254 host of a wider home net (10.0.1.254 with the shipped home) on the
    same port, with the other look-alikes."""
    flows = prove_sigma.pattern_flows(PATTERNS[pattern_id], kb)
    broadcasts = set(prove_sigma.addressing(kb).broadcasts)
    assert {f.dst_ip for f in flows} == broadcasts
    assert sigma_proofs[pattern_id, "fires"].proven, sigma_proofs[pattern_id, "fires"].detail
    cases = prove_sigma.lookalike_flows(PATTERNS[pattern_id], kb, FIREWALL)
    unicast = {f.dst_ip for case in ("unicast-home", "unicast-wide") for f in cases[case]}
    assert unicast == {prove_sigma.addressing(kb).home.format(31), "10.0.1.254"}
    quiet = sigma_proofs[pattern_id, "quiet"]
    assert quiet.proven and "unicast-home, unicast-wide" in quiet.detail, quiet.detail


def test_the_quiet_proof_fails_a_broadcast_rule_without_its_address(built, kb, tmp_path):
    """The unicast look-alikes are not vacuous: the rwho rule without its broadcast address matches them."""
    out = tmp_path / "out"
    shutil.copytree(built, out)
    rule = out / "sigma" / "net_firewall_rwho_broadcast.yml"
    text = rule.read_text()
    assert "        dst_ip|endswith: '.255'\n" in text
    rule.write_text(text.replace("        dst_ip|endswith: '.255'\n", ""))
    [quiet] = [p for p in prove_sigma.prove(kb, out, tmp_path / "work") if p.pattern == "rwho-broadcast"
               and p.side == "quiet"]
    assert not quiet.proven
    assert "rwho-broadcast~unicast-home#" in quiet.detail and "rwho-broadcast~unicast-wide#" in quiet.detail


SITE_HOME = """home:
  title: The site's own networks, loopback not among them
  addresses: [10.20.0.0/16, 198.51.100.0/24, 2001:db8:20::/48]
"""


def test_a_sites_home_replaces_the_shipped_one_and_loopback_stays_out(tmp_path):
    """A site's `home:` without loopback: the rules read home as the site's ranges, outside still excludes loopback,
    and both proofs hold with events drawn from the site's home."""
    site = tmp_path / "site"
    site.mkdir()
    (site / "home.yaml").write_text(SITE_HOME)
    out = tmp_path / "out"
    result = run_rulegen("build", "-t", "sigma", "--no-validate", "-k", "@shipped", "-k", str(site), "-o", str(out))
    assert result.returncode == 0, result.stderr
    site_kb = load_knowledge([default_knowledge_dir(), site])
    assert site_kb.home.addresses == ("10.20.0.0/16", "198.51.100.0/24", "2001:db8:20::/48")
    ssh = yaml.safe_load((out / "sigma" / "net_firewall_ssh_probe.yml").read_text())["detection"]
    assert ssh["filter_main_src_local"]["src_ip|cidr"] == [*site_kb.home.addresses, *LOOPBACK]
    internal = yaml.safe_load((out / "sigma" / "net_firewall_pcanywhere_local_sweep.yml").read_text())["detection"]
    assert internal["selection"]["src_ip|cidr"] == list(site_kb.home.addresses)
    assert "filter_main_loopback" not in internal, "home holds no loopback: the selection already keeps it out"
    nets = prove_sigma.addressing(site_kb)
    assert nets.home == "10.20.0.{}" and nets.outside == "203.0.113.{}"
    proofs = prove_sigma.prove(site_kb, out, tmp_path / "work")
    assert {p.side for p in proofs} == {"fires", "quiet"}
    assert all(p.proven for p in proofs), [p.detail for p in proofs if not p.proven]
