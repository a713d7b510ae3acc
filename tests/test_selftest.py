"""`rulegen selftest`: both sides of every expressed pattern proven per target (it fires; it stays quiet on
look-alike traffic), and a rule that cannot fire is caught."""

from __future__ import annotations

import json
import shutil

from conftest import need, need_root, run_rulegen


def test_selftest_proves_both_sides_of_every_expressed_pattern(manifest):
    need_root()
    for tool in ("suricata", "iptables-restore", "nft"):
        need(tool)
    result = run_rulegen("selftest", "--json")
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    proofs = json.loads(result.stdout)
    proven = {(p["pattern"], p["target"], p["side"]) for p in proofs if p["proven"] and not p["skipped"]}
    for row in manifest["patterns"]:
        for target, cell in row["coverage"].items():
            if cell["expressed"]:
                assert (row["id"], target, "fires") in proven, (row["id"], target)
                assert (row["id"], target, "quiet") in proven, (row["id"], target)
    assert ("normal-traffic", "suricata", "quiet") in proven and ("normal-traffic", "sigma", "quiet") in proven
    assert not [p for p in proofs if not p["proven"]], "every proof holds, skipped ones included (root, engines)"


def test_selftest_fails_when_a_rule_cannot_fire(tmp_path, templates_dir):
    need("suricata")
    templates = tmp_path / "templates"
    shutil.copytree(templates_dir, templates)
    rules = templates / "suricata" / "rulegen.rules.j2"
    # still valid Suricata, but no packet carries this content: every rule goes deaf
    rules.write_text(rules.read_text().replace('(msg:"{{ r.msg }}"; ',
                                               '(msg:"{{ r.msg }}"; content:"rulegen-never-present"; '))
    result = run_rulegen("selftest", "--target", "suricata", "--templates", str(templates), "--json")
    assert result.returncode == 1, result.stdout[-2000:]
    proofs = json.loads(result.stdout)
    # every "fires" proof fails; the quiet ones (its look-alikes, normal traffic) still hold: nothing fires
    assert {p["proven"] for p in proofs if p["side"] == "fires"} == {False}
    assert {p["proven"] for p in proofs if p["side"] == "quiet"} == {True}
