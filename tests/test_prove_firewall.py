"""The iptables and nftables output proven on live traffic between two network namespaces (issue 4, item 4;
issue 11: quiet from home and over loopback).

Two test cases per pattern that a firewall target expresses (fires, quiet): a new pattern in the knowledge
is new cases here, with no new code. The proof itself runs once per target for the whole session.
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess

import pytest
from conftest import REQUIRE_ENGINES, need, need_root

from rulegen.build import plan_all
from rulegen.knowledge import default_knowledge_dir, load_knowledge
from rulegen.prove import firewall

_PLANS = plan_all(load_knowledge([default_knowledge_dir()]))
CASES = [(target, p.pattern.id) for target in firewall.TARGETS for p in _PLANS[target] if p.expressed]
SIDES = ("fires", "quiet")
ENGINE = {"iptables": "iptables-restore", "nftables": "nft"}


def _left_over() -> list[str]:
    """This process's namespaces that still exist."""
    names = firewall.namespace_names()
    listing = subprocess.run([need("ip"), "netns", "list"], capture_output=True, text=True, timeout=30).stdout
    return [line.split()[0] for line in listing.splitlines() if line.split() and line.split()[0] in names]


@pytest.fixture(scope="session")
def firewall_proofs(built, kb, tmp_path_factory):
    """target -> {(pattern id, side): Proof}, one proof run per target, on first use."""
    runs: dict[str, dict] = {}

    def get(target: str) -> dict:
        need_root()
        need("ip")
        need(ENGINE[target])
        if target not in runs:
            work = tmp_path_factory.mktemp(f"prove-{target}")
            runs[target] = {(p.pattern, p.side): p for p in firewall.prove(kb, built, work, (target,))}
            assert not _left_over(), "the proof run left its namespaces behind"
        return runs[target]

    yield get
    if os.geteuid() == 0 and shutil.which("ip"):
        assert not _left_over()


def _check(proof) -> None:
    assert proof is not None
    if proof.skipped:  # the engines are there (need() above): the proof could not derive traffic
        if REQUIRE_ENGINES:
            pytest.fail(f"not proven: {proof.skipped} (RULEGEN_REQUIRE_ENGINES=1)")
        pytest.skip(proof.skipped)
    assert proof.proven, proof.detail


def test_every_expressed_pattern_has_a_case(manifest):
    for target in firewall.TARGETS:
        expressed = {row["id"] for row in manifest["patterns"] if row["coverage"][target]["expressed"]}
        assert expressed == {pid for t, pid in CASES if t == target}


@pytest.mark.parametrize("target,pattern", CASES, ids=[f"{t}:{p}" for t, p in CASES])
def test_pattern_fires(firewall_proofs, target, pattern):
    """From outside: blocked ports get no answer, ident is refused with a RST, logged traffic passes, and the
    pattern's own LOG (and DROP / REJECT) rule counted the probe."""
    _check(firewall_proofs(target).get((pattern, "fires")))


@pytest.mark.parametrize("target,pattern", CASES, ids=[f"{t}:{p}" for t, p in CASES])
def test_pattern_stays_quiet_from_home_and_over_loopback(firewall_proofs, target, pattern):
    """The same probes from the peer's home address (inbound), to it (outbound), from outside (internal), and
    over loopback (127.0.0.1, ::1, the host's own address) pass as without the firewall, and the pattern's
    own rules count none of them."""
    proof = firewall_proofs(target).get((pattern, "quiet"))
    _check(proof)
    assert "loopback>loopback" in proof.detail and "host>host" in proof.detail


def test_every_expressed_pattern_is_proven_on_both_sides(manifest, firewall_proofs):
    """The issue's bar: per firewall, every expressed pattern has a proven fires Proof and a proven quiet one;
    every inbound pattern's quiet Proof includes the probe from a home address."""
    kb_patterns = {p.pattern.id: p.pattern for p in _PLANS["iptables"]}
    for target in firewall.TARGETS:
        proofs = firewall_proofs(target)
        expressed = {row["id"] for row in manifest["patterns"] if row["coverage"][target]["expressed"]}
        missing = [(pid, side) for pid in sorted(expressed) for side in SIDES
                   if not (proofs.get((pid, side)) and proofs[(pid, side)].proven)]
        assert not missing, missing
        inbound = [pid for pid in expressed if kb_patterns[pid].direction == "inbound"]
        assert inbound and all("inside>host" in proofs[(pid, "quiet")].detail for pid in inbound)


@pytest.mark.parametrize("target", firewall.TARGETS)
def test_allowed_port_answers(firewall_proofs, target):
    """A port no pattern covers, with a listener, answers over TCP and UDP, IPv4 and IPv6, both ways."""
    proof = firewall_proofs(target).get((firewall.ALLOWED, "quiet"))
    _check(proof)
    assert "v4 tcp outside>host" in proof.detail and "v6 udp host>outside" in proof.detail


def test_ident_is_refused_at_once_although_a_listener_waits(firewall_proofs):
    for target in firewall.TARGETS:
        detail = firewall_proofs(target)[("ident-inbound-reject", "fires")].detail
        assert detail.count("refused in") == 2 and detail.count("without firewall answered") == 2, detail


def test_a_rule_that_does_not_fire_is_caught(built, kb, tmp_path):
    """The proof is no rubber stamp: without its DROP the Back Orifice pattern fails, and a reject
    turned into a drop fails ident."""
    need_root()
    need("ip")
    need("nft")
    out = tmp_path / "out"
    shutil.copytree(built, out)
    nft = out / "nftables" / "rulegen.nft"
    lines = [ln for ln in nft.read_text().splitlines()
             if not (" back-orifice-inbound-probe-tcp " in ln and "counter drop" in ln)]
    nft.write_text("\n".join(lines).replace("counter reject with tcp reset", "counter drop") + "\n")
    proofs = {p.pattern: p for p in firewall.prove(kb, out, tmp_path / "work", ("nftables",)) if p.side == "fires"}
    assert not proofs["back-orifice-inbound-probe-tcp"].proven
    assert "answered (want timeout" in proofs["back-orifice-inbound-probe-tcp"].detail
    assert not proofs["ident-inbound-reject"].proven
    assert proofs["subseven-1243-inbound-probe"].proven
    assert not _left_over()


@pytest.mark.parametrize("target", firewall.TARGETS)
def test_a_rule_that_catches_home_or_loopback_is_caught(built, kb, tmp_path, target):
    """The quiet proof is no rubber stamp either: rules without the home condition (the firewall before
    issue 11) fail it for the home probes, and hooks that do not skip loopback fail it over loopback."""
    need_root()
    need("ip")
    need(ENGINE[target])
    out = tmp_path / "out"
    shutil.copytree(built, out)
    if target == "iptables":
        for name in ("rulegen.rules", "rulegen6.rules"):
            path = out / "iptables" / name
            path.write_text(re.sub(r"-m set ! --match-set rg-home-\d src ", "", path.read_text())
                            .replace("! -i lo ", "").replace("! -o lo ", ""))
    else:
        path = out / "nftables" / "rulegen.nft"
        text = re.sub(r"ip6? saddr != @home[46] ", "", path.read_text())
        path.write_text(text.replace('iifname "lo" return', "").replace('oifname "lo" return', ""))
    proofs = {(p.pattern, p.side): p for p in firewall.prove(kb, out, tmp_path / "work", (target,))}
    quiet = proofs[("subseven-1243-inbound-probe", "quiet")]
    assert not quiet.proven
    assert "FAILED v4 tcp inside>host" in quiet.detail and "FAILED v4 tcp loopback>loopback" in quiet.detail
    assert "its rules counted" in quiet.detail
    assert proofs[("subseven-1243-inbound-probe", "fires")].proven
    assert not _left_over()


def test_namespaces_are_removed_when_a_run_fails(kb, built, tmp_path, monkeypatch):
    need_root()
    need("ip")
    need("nft")
    with pytest.raises(RuntimeError), firewall.namespaces() as ns:
        assert set(_left_over()) == {ns["host"], ns["peer"]}
        raise RuntimeError("a probe went wrong")
    assert not _left_over()

    def broken_load(*_args):
        raise RuntimeError("nft refused the file")

    monkeypatch.setattr(firewall, "load", broken_load)
    proofs = firewall.prove(kb, built, tmp_path, ("nftables",))
    assert proofs and not any(p.proven for p in proofs)
    assert all("nft refused the file" in p.detail for p in proofs)
    assert not _left_over()


def test_every_udp_reject_in_a_burst_is_answered(tmp_path):
    """The namespaces exempt ICMP errors from every kernel limit: 600 UDP probes in a burst, each rejected, each
    told so. Under the kernel's limits 588 of them came back as timeouts; with the namespace-wide limit only
    raised (not exempted), one in a few thousand still did, where two CPUs refilled its credit at once."""
    need_root()
    need("ip")
    need("nft")
    rules = tmp_path / "reject.nft"
    rules.write_text("table inet burst {\n  chain input {\n    type filter hook input priority 0;\n"
                     "    udp dport 20000-20299 reject\n  }\n}\n")
    probes = [firewall.Probe(f"p{family}-{port}", "burst", family, "udp", "in", 30000 + port, port,
                             "outside", "host")
              for family in (4, 6) for port in range(20000, 20300)]
    with firewall.namespaces() as ns:
        subprocess.run([need("ip"), "netns", "exec", ns["host"], need("nft"), "-f", str(rules)], check=True,
                       capture_output=True, timeout=30)
        results = firewall.run_probes(ns, probes)
    outcomes = [results[p.key]["outcome"] for p in probes]
    assert outcomes.count("refused") == len(probes), {o: outcomes.count(o) for o in set(outcomes)}


def test_a_probe_that_gets_the_cpu_after_its_deadline_still_reads_its_answer(monkeypatch):
    """Hundreds of probe threads share two cores: a thread can run again only after its deadline. The port
    unreachable already waiting for it is read, not taken for a timeout (here: a deadline that has passed
    when the probe looks, over this machine's loopback)."""
    need_root()  # the raw socket of a probe to port 0
    monkeypatch.setattr(firewall, "TIMEOUT", 0.0)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as a, socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as b:
        a.bind(("127.0.0.1", 0))
        b.bind(("127.0.0.1", 0))
        sport, closed = a.getsockname()[1], b.getsockname()[1]  # two free ports, once these sockets close
    probes = [{"key": f"late-{dport}", "family": 4, "transport": "udp", "way": "in", "sport": sport,
               "dport": dport, "src_addr": "127.0.0.1", "dst_addr": "127.0.0.1", "broadcast": False}
              for dport in (closed, 0)]  # a socket's datagram, and port 0's raw one
    results = firewall._probe_main(probes)
    assert {key: r["outcome"] for key, r in results.items()} == {f"late-{closed}": "refused", "late-0": "refused"}
