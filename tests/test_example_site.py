"""docs/example-site: the example site folder builds on top of the shipped knowledge, validated in the engines,
with its home set, IP list, entries and overrides in the outputs, and `rulegen selftest` proves it."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import yaml
from conftest import REPO, run_rulegen
from test_schema import VALIDATOR

from rulegen import schema

EXAMPLE = REPO / "docs" / "example-site"
OWN_PATTERNS = ("payroll-api-inbound-probe", "payroll-api-admin-call", "backup-agent-support-session",
                "backup-agent-outside-sweep")


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    """A copy, so the build's lock lands beside the copy and never in docs/."""
    return Path(shutil.copytree(EXAMPLE, tmp_path_factory.mktemp("example") / "site"))


@pytest.fixture(scope="module")
def built(site, tmp_path_factory) -> tuple[dict, Path]:
    out = tmp_path_factory.mktemp("example-out") / "out"
    result = run_rulegen("build", "-k", "@shipped", "-k", str(site), "-o", str(out), "--json")
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout), out


def test_the_example_site_builds_validated_with_no_warning(built):
    summary, _ = built
    assert summary["warnings"] == []
    assert summary["validated_by"]


def test_its_overrides_are_applied_with_their_reasons(built):
    summary, out = built
    overrides = {o["pattern"]: o["override"] for o in summary["overrides"]}
    assert set(overrides) == {"telnet-probe", "squid-proxy-probe", "netbios-ns-noise"}
    assert overrides["netbios-ns-noise"].startswith("disabled by ")
    assert "no host of ours speaks NetBIOS" in overrides["netbios-ns-noise"]
    assert "netbios-ns-noise" not in (out / "suricata" / "rulegen.rules").read_text()


def test_its_home_set_and_entries_reach_the_outputs(built):
    _, out = built
    nft = (out / "nftables" / "rulegen.nft").read_text()
    assert "198.51.100.0/24" in nft and "2001:db8:20::/48" in nft
    rules = (out / "suricata" / "rulegen.rules").read_text()
    for pattern in OWN_PATTERNS:
        assert f"rulegen_pattern {pattern}" in rules, pattern
    assert "203.0.113.16/28" in rules  # the vendor's IP list as the support session's source


def test_the_example_site_is_proven_by_selftest(site):
    result = run_rulegen("selftest", "-k", "@shipped", "-k", str(site), "--json")
    proofs = json.loads(result.stdout)
    failed = [p for p in proofs if not p["proven"] and not p["skipped"]]
    assert result.returncode == 0 and failed == [], failed or result.stderr
    proven = {(p["pattern"], p["target"], p["side"]) for p in proofs if p["proven"]}
    for pattern in OWN_PATTERNS:
        for side in ("fires", "quiet"):
            assert (pattern, "suricata", side) in proven, (pattern, side)
    assert not any(p["pattern"] == "netbios-ns-noise" for p in proofs)


def test_every_file_of_the_example_names_and_passes_the_schema():
    files = sorted(EXAMPLE.glob("*.yaml"))
    assert len(files) >= 5
    for path in files:
        text = path.read_text()
        assert text.startswith("# yaml-language-server: $schema=../../rulegen/data/knowledge.schema.json\n"), path
        assert (path.parent / "../../rulegen/data/knowledge.schema.json").resolve() == schema.SCHEMA_FILE
        assert list(VALIDATOR.iter_errors(yaml.safe_load(text))) == [], path


def test_no_build_output_is_checked_in_with_the_example():
    assert not (EXAMPLE / "rulegen.lock").exists()
