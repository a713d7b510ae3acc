"""The iptables and nftables output proven on live traffic between two network namespaces (issue 4, item 4).

One test case per pattern that a firewall target expresses: a new pattern in the knowledge is a new
case here, with no new code. The proof itself runs once per target for the whole session.
"""

from __future__ import annotations

import os
import shutil
import subprocess

import pytest
from conftest import REQUIRE_ENGINES, need, need_root

from rulegen.build import plan_all
from rulegen.knowledge import default_knowledge_dir, load_knowledge
from rulegen.prove import firewall

_PLANS = plan_all(load_knowledge([default_knowledge_dir()]))
CASES = [(target, p.pattern.id) for target in firewall.TARGETS for p in _PLANS[target] if p.expressed]
ENGINE = {"iptables": "iptables-restore", "nftables": "nft"}


def _left_over() -> list[str]:
    """This process's namespaces that still exist."""
    names = firewall.namespace_names()
    listing = subprocess.run([need("ip"), "netns", "list"], capture_output=True, text=True, timeout=30).stdout
    return [line.split()[0] for line in listing.splitlines() if line.split() and line.split()[0] in names]


@pytest.fixture(scope="session")
def firewall_proofs(built, kb, tmp_path_factory):
    """target -> {pattern id: Proof}, one proof run per target, on first use."""
    runs: dict[str, dict] = {}

    def get(target: str) -> dict:
        need_root()
        need("ip")
        need(ENGINE[target])
        if target not in runs:
            work = tmp_path_factory.mktemp(f"prove-{target}")
            runs[target] = {p.pattern: p for p in firewall.prove(kb, built, work, (target,))}
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
def test_pattern_is_proven(firewall_proofs, target, pattern):
    """Blocked ports get no answer, ident is refused with a RST, logged traffic passes, and the
    pattern's own LOG (and DROP / REJECT) rule counted the probe."""
    _check(firewall_proofs(target).get(pattern))


@pytest.mark.parametrize("target", firewall.TARGETS)
def test_allowed_port_answers(firewall_proofs, target):
    """A port no pattern covers, with a listener, answers over TCP and UDP, IPv4 and IPv6, both ways."""
    proof = firewall_proofs(target).get(firewall.ALLOWED)
    _check(proof)
    assert "v4 in tcp" in proof.detail and "v6 out udp" in proof.detail


def test_ident_is_refused_at_once_although_a_listener_waits(firewall_proofs):
    for target in firewall.TARGETS:
        detail = firewall_proofs(target)["ident-inbound-reject"].detail
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
    proofs = {p.pattern: p for p in firewall.prove(kb, out, tmp_path / "work", ("nftables",))}
    assert not proofs["back-orifice-inbound-probe-tcp"].proven
    assert "answered (want timeout" in proofs["back-orifice-inbound-probe-tcp"].detail
    assert not proofs["ident-inbound-reject"].proven
    assert proofs["subseven-1243-inbound-probe"].proven
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

    monkeypatch.setattr(firewall, "_load", broken_load)
    proofs = firewall.prove(kb, built, tmp_path, ("nftables",))
    assert proofs and not any(p.proven for p in proofs)
    assert all("nft refused the file" in p.detail for p in proofs)
    assert not _left_over()
