"""The knowledge's one home set (shipped default, a site's replacement, bad input), and the warning a build
gives when the knowledge asks a firewall for a response it cannot enforce."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import ODD_ENTRY_HEAD, copy_knowledge, run_rulegen

from rulegen.knowledge import default_knowledge_dir, load_knowledge
from rulegen.model import DEFAULT_HOME, LOOPBACK

# A payload pattern (needs application data: no packet filter can see it) whose response asks for a drop.
PAYLOAD_DROP = """      - id: odd-magic-drop
        title: Odd magic bytes to the odd port
        category: EXPLOIT
        direction: inbound
        transport: tcp
        dst_ports: [4444]
        detect: payload
        match: {content: [{text: "MAGIC", offset: 0, depth: 5}]}
        severity: high
        classtype: attempted-admin
        response: drop
        false_positives: Unlikely.
"""


def test_shipped_home_is_the_default_set_and_holds_loopback():
    kb = load_knowledge([default_knowledge_dir()])
    assert set(kb.home.addresses) == set(DEFAULT_HOME)
    assert kb.home.location is not None and kb.home.location.file.endswith("common.yaml")
    assert set(LOOPBACK) <= set(kb.home.addresses)
    assert kb.home.by_family(6) == tuple(a for a in kb.home.addresses if ":" in a)


def test_a_site_home_replaces_the_shipped_one(tmp_path):
    site = tmp_path / "site"
    site.mkdir()
    (site / "home.yaml").write_text("home:\n  addresses: [203.0.113.0/24, 2001:db8:1::/48]\n")
    kb = load_knowledge([default_knowledge_dir(), site])
    assert kb.home.addresses == ("2001:db8:1::/48", "203.0.113.0/24")
    assert kb.home.location.file == str(site / "home.yaml")


@pytest.mark.parametrize(("text", "message"), [
    ("home:\n  addresses: [10.0.0.0/8]\n  colour: blue\n", "unknown key 'colour' in home"),
    ("home:\n  addresses: []\n", "home needs at least one address"),
    ("home:\n  addresses: [10.0.0.300/8]\n", "is not an IP address or CIDR block"),
    ("home:\n  addresses: [0.0.0.0/0]\n", "home cannot be every address"),
    ("home: [10.0.0.0/8]\n", "home must be a mapping"),
])
def test_bad_home_is_a_clear_error_and_nothing_is_written(tmp_path, text, message):
    site = tmp_path / "site"
    site.mkdir()
    (site / "home.yaml").write_text(text)
    result = run_rulegen("build", "-k", str(default_knowledge_dir()), "-k", str(site), "-o", str(tmp_path / "out"))
    assert result.returncode == 2, result.stderr
    assert message in result.stderr and f"{site / 'home.yaml'}:" in result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "out").exists() and not (site / "rulegen.lock").exists()


def test_two_homes_in_one_folder_name_both_places(tmp_path):
    site = tmp_path / "site"
    site.mkdir()
    (site / "a.yaml").write_text("home:\n  addresses: [10.0.0.0/8]\n")
    (site / "b.yaml").write_text("home:\n  addresses: [192.168.0.0/16]\n")
    result = run_rulegen("build", "-k", str(default_knowledge_dir()), "-k", str(site), "-o", str(tmp_path / "out"))
    assert result.returncode == 2
    assert f"{site / 'b.yaml'}:1: home is already defined at {site / 'a.yaml'}:1" in result.stderr


@pytest.fixture(scope="module")
def payload_drop(tmp_path_factory) -> dict:
    root = tmp_path_factory.mktemp("warn")
    shipped = copy_knowledge(root / "shipped")
    site = root / "site"
    site.mkdir()
    (site / "site.yaml").write_text(ODD_ENTRY_HEAD + PAYLOAD_DROP)
    out = root / "out"
    text = run_rulegen("build", "-k", str(shipped), "-k", str(site), "-o", str(out), "--no-validate")
    as_json = run_rulegen("build", "-k", str(shipped), "-k", str(site), "-o", str(out), "--no-validate", "--json")
    coverage = run_rulegen("coverage", "-k", str(shipped), "-k", str(site), "--json")
    return {"text": text, "json": as_json, "coverage": coverage, "out": Path(out), "site": site}


def test_unenforceable_drop_is_a_warning_in_the_build_summary(payload_drop):
    text = payload_drop["text"]
    assert text.returncode == 0, text.stderr
    for target in ("iptables", "nftables"):
        line = next(ln for ln in text.stderr.splitlines() if f"but {target} cannot enforce it" in ln)
        assert line.startswith(f"warning: {payload_drop['site'] / 'site.yaml'}:")
        assert "odd-magic-drop asks for response drop" in line and "needs application data" in line
    summary = json.loads(payload_drop["json"].stdout)
    assert len([w for w in summary["warnings"] if "odd-magic-drop" in w]) == 2


def test_unenforceable_drop_is_a_warning_in_coverage_and_the_manifest(payload_drop):
    rows = [r for r in json.loads(payload_drop["coverage"].stdout) if r["pattern"] == "odd-magic-drop"]
    warned = {r["target"] for r in rows if r["warning"]}
    assert warned == {"iptables", "nftables"}
    assert all(r["expressed"] and not r["warning"] for r in rows if r["target"] in ("suricata",))
    manifest = json.loads((payload_drop["out"] / "manifest.json").read_text())
    row = next(p for p in manifest["patterns"] if p["id"] == "odd-magic-drop")
    assert "cannot enforce" in row["coverage"]["nftables"]["warning"]


def test_the_shipped_knowledge_asks_no_firewall_for_what_it_cannot_enforce():
    result = run_rulegen("coverage", "--json")
    assert result.returncode == 0, result.stderr
    assert [r for r in json.loads(result.stdout) if r["warning"]] == []
