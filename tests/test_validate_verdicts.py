"""Honest verdicts on any file: an engine that fails without naming a line, is killed or times out fails the
file (stub engines first on PATH stand in for the broken engine); what an engine refuses fails a file, what a
linter suggests is counted by code and fails only with --strict; foreign Sigma rules are judged against
SigmaHQ's taxonomy, and an ATT&CK tag newer than the shipped ATT&CK data is a note."""

from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path

import pytest
from conftest import need, need_root, run_rulegen

from rulegen.validate import lint

# Per format: a file the real engine accepts, and the engine binary that checks it.
ACCEPTED = {
    "suricata": ("ok.rules", 'alert tcp any any -> any 80 (msg:"x"; flow:to_server; sid:1000001; rev:1;)\n',
                 "suricata"),
    "iptables": ("ok.v4", "*filter\n:INPUT ACCEPT [0:0]\n-A INPUT -p tcp --dport 80 -j ACCEPT\nCOMMIT\n",
                 "iptables-restore"),
    "ipset": ("ok.ipset", "create rgtest hash:net family inet\nadd rgtest 192.0.2.0/24\n", "ipset"),
    "nftables": ("ok.nft", "table inet t {\n  chain c {\n    tcp dport 80 accept\n  }\n}\n", "nft"),
}
# How a stub engine breaks, and what the file's finding must say. The stub answers a version query.
BREAKS = {
    "silent": ("exit 1", "failed (exit 1) without an error message"),
    "killed": ("kill -9 $$", "was killed by SIGKILL"),
    "timeout": ("exec sleep 60", "timed out after 2 s"),
}


def _stub(folder: Path, name: str, body: str) -> None:
    folder.mkdir(exist_ok=True)
    path = folder / name
    path.write_text(f'#!/bin/sh\ncase "$1" in -V|--version) echo "{name} v9.9.9"; exit 0;; esac\n{body}\n')
    path.chmod(0o755)


def _validate_json(*args: str, env: dict | None = None) -> tuple[int, dict]:
    result = run_rulegen("validate", "--json", "--no-lint", *args, env=env)
    assert "Traceback" not in result.stderr, result.stderr
    return result.returncode, json.loads(result.stdout)


@pytest.mark.parametrize("fmt", sorted(ACCEPTED))
@pytest.mark.parametrize("how", sorted(BREAKS))
def test_an_engine_that_breaks_fails_the_file_with_the_reason(tmp_path, fmt, how):
    name, text, engine = ACCEPTED[fmt]
    if fmt != "suricata":
        need_root()
    need(engine)
    path = tmp_path / name
    path.write_text(text)
    code, report = _validate_json("--format", fmt, str(path))
    assert code == 0, report  # the real engine accepts the file
    body, reason = BREAKS[how]
    _stub(tmp_path / "bin", engine, body)
    env = {"PATH": f"{tmp_path / 'bin'}:{os.environ['PATH']}", "RULEGEN_ENGINE_TIMEOUT": "2"}
    code, report = _validate_json("--format", fmt, str(path), env=env)
    assert code == 1, report
    [finding] = [f for f in report["files"][0]["findings"] if f["engine"] != "built-in"]
    assert finding["kind"] == "engine" and reason in finding["message"], finding
    assert report["failed_files"] == [str(path)] and report["engine_errors"] == 1


# --------------------------------------------------------------------------- refusals, lint, notes

SURICATA_CHECK_WARNED = (  # Suricata loads it; suricata-check warns S406 (a domain name in msg)
    'alert udp $HOME_NET any -> any 53 (msg:"ET TEST DNS lookup of ads.example.com"; flow:to_server; dns.query; '
    'content:"ads.example.com"; nocase; classtype:pup-activity; sid:1000002; rev:1;)\n')


def test_lint_is_grouped_by_code_and_fails_only_when_strict(tmp_path):
    need("suricata")
    if lint.engine_version() is None:
        pytest.skip("suricata-check not installed")
    path = tmp_path / "lint.rules"
    path.write_text(SURICATA_CHECK_WARNED + SURICATA_CHECK_WARNED.replace("1000002", "1000003"))
    result = run_rulegen("validate", str(path))
    assert result.returncode == 0, result.stdout
    assert "lint (suggestions: exit 1 only with --strict):" in result.stdout
    code, report = _validate_json_lint(str(path))
    assert code == 0 and report["engine_errors"] == 0 and [g["code"] for g in report["lint"]] == ["S406"], report
    for group in report["lint"]:
        assert group["count"] == 2 and group["files"] == 1 and group["kind"] == "lint"
        assert f"  {group['code']} [{group['engine']}]: 2 in 1 file(s)" in result.stdout
    strict = run_rulegen("validate", "--strict", str(path))
    assert strict.returncode == 1 and f"{path}:1: [suricata-check" in strict.stdout


def _validate_json_lint(*args: str) -> tuple[int, dict]:
    result = run_rulegen("validate", "--json", *args)
    assert "Traceback" not in result.stderr, result.stderr
    return result.returncode, json.loads(result.stdout)


FOREIGN_SIGMA = """title: Foreign Rule With Tags Newer Than the Shipped ATT&CK
id: 6c5d1b0e-3f3a-4a47-9d7e-0e6f6b1f0a11
status: test
description: A firewall rule written elsewhere, with a field name of its own and tags of a newer ATT&CK.
references:
    - https://example.org/foreign
author: someone else
date: 2026-01-01
tags:
    - attack.stealth
    - attack.t9999
logsource:
    category: firewall
detection:
    selection:
        blocked: 'false'
        dst_port: 23
    condition: selection
falsepositives:
    - Unknown
level: low
"""


def test_foreign_sigma_rule_gets_sigmahq_taxonomy_and_attack_notes(tmp_path):
    """SigmaHQ leaves the firewall category's fields open (rulegen's own field names apply only to its own
    output); tags unknown to the shipped ATT&CK are notes naming its version, and fail nothing, even strict."""
    path = tmp_path / "net_firewall_foreign.yml"
    path.write_text(FOREIGN_SIGMA)
    code, report = _validate_json_lint("--strict", str(path))
    assert code == 0, report
    findings = report["files"][0]["findings"]
    assert {f["kind"] for f in findings} == {"note"}, findings
    tags = {f["line"]: f["message"] for f in findings}
    assert set(tags) == {10, 11}
    assert all(" unknown to ATT&CK v" in m for m in tags.values()) and tags[10].startswith("attack.stealth:")
    malformed = tmp_path / "net_firewall_malformed.yml"
    malformed.write_text(FOREIGN_SIGMA.replace("attack.t9999", "attack.t99x").replace(
        "6c5d1b0e-3f3a-4a47-9d7e-0e6f6b1f0a11", "6c5d1b0e-3f3a-4a47-9d7e-0e6f6b1f0a12"))
    code, report = _validate_json_lint(str(malformed))
    assert code == 0 and [g["code"] for g in report["lint"]] == ["attacktag"], report  # malformed: lint
    code, _ = _validate_json_lint("--strict", str(malformed))
    assert code == 1


def test_sigma_validation_config_selects_validators_and_exclusions(tmp_path):
    """The format of `sigma check --validation-config`: a validator switched off, one excluded for one rule."""
    path = tmp_path / "net_firewall_malformed.yml"
    path.write_text(FOREIGN_SIGMA.replace("attack.t9999", "attack.t99x"))
    config = tmp_path / "conf.yml"
    config.write_text("validators:\n  - all\n  - -tlptag\nexclusions:\n"
                      "  6c5d1b0e-3f3a-4a47-9d7e-0e6f6b1f0a11: attacktag\n")
    code, report = _validate_json_lint("--strict", "--sigma-config", str(config), str(path))
    assert code == 0 and report["lint"] == [], report
    config.write_text("validators:\n  - no_such_validator\n")
    result = run_rulegen("validate", "--sigma-config", str(config), str(path))
    assert result.returncode == 2 and "no_such_validator" in result.stderr and "Traceback" not in result.stderr


def test_rulegen_field_names_hold_for_its_own_output_only(built, tmp_path):
    """The generic firewall category: rulegen's field names are checked in a build's output (its manifest lists
    the file), not in the same file elsewhere, where SigmaHQ's taxonomy leaves the fields open."""
    out = tmp_path / "out"
    shutil.copytree(built, out)
    field = re.compile(r"^(\s+)dst_port:", re.M)  # a field of a detection, not the name of one
    rule = next(p for p in sorted((out / "sigma").glob("net_firewall_*.yml")) if field.search(p.read_text()))
    rule.write_text(field.sub(r"\1dst_prot:", rule.read_text(), count=1))
    code, report = _validate_json_lint(str(rule))
    assert code == 0 and "sigmahq_invalid_fieldname" in [g["code"] for g in report["lint"]], report
    code, _ = _validate_json_lint("--strict", str(rule))
    assert code == 1
    alone = tmp_path / "elsewhere" / rule.name
    alone.parent.mkdir()
    shutil.copy(rule, alone)
    code, report = _validate_json_lint("--strict", str(alone))
    assert code == 0 and report["lint"] == [], report


def test_sigmahq_data_is_shipped_whole_with_rulegen_layered_on_top():
    """Every log source of SigmaHQ's snapshot stays; rulegen's Zeek fields count for every file, its own field
    names for the generic firewall category only for its own output."""
    from rulegen.validate import sigma

    snapshot = json.loads(sigma.SIGMAHQ_TAXONOMY_FILE.read_text())
    foreign = sigma.layered(sigma.SIGMAHQ_TAXONOMY_FILE, sigma.TAXONOMY_FILE, own=False)
    own = sigma.layered(sigma.SIGMAHQ_TAXONOMY_FILE, sigma.TAXONOMY_FILE, own=True)
    assert set(snapshot["taxonomy"]) <= set(foreign["taxonomy"]) == set(own["taxonomy"])
    assert foreign["taxonomy"]["none_firewall_none"]["field"]["custom"] == []
    assert "dst_port" in own["taxonomy"]["none_firewall_none"]["field"]["custom"]
    assert "id.orig_h" in foreign["taxonomy"]["zeek_none_conn"]["field"]["native"]
    filenames = sigma.layered(sigma.SIGMAHQ_FILENAME_FILE, sigma.FILENAME_FILE, own=False)
    assert set(json.loads(sigma.SIGMAHQ_FILENAME_FILE.read_text())["pattern"]) <= set(filenames["pattern"])
