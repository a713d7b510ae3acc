"""`rulegen selftest`: every expressed pattern proven per target, and a rule that cannot fire is caught."""

from __future__ import annotations

import json
import re
import shutil

from conftest import need, need_root, run_rulegen


def test_selftest_proves_every_expressed_pattern(manifest):
    need_root()
    for tool in ("suricata", "iptables-restore", "nft"):
        need(tool)
    result = run_rulegen("selftest", "--json")
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    proofs = json.loads(result.stdout)
    proven = {(p["pattern"], p["target"]) for p in proofs if p["proven"] and not p["skipped"]}
    for row in manifest["patterns"]:
        for target, cell in row["coverage"].items():
            if cell["expressed"]:
                assert (row["id"], target) in proven, (row["id"], target)
    assert ("normal-traffic", "suricata") in proven and ("normal-traffic", "sigma") in proven


def test_selftest_fails_when_a_rule_cannot_fire(tmp_path, templates_dir):
    need("suricata")
    templates = tmp_path / "templates"
    shutil.copytree(templates_dir, templates)
    rules = templates / "suricata" / "rulegen.rules.j2"
    # still valid Suricata, but no packet carries this content: every rule goes deaf
    rules.write_text(rules.read_text().replace('(msg:"{{ r.msg }}"; ',
                                               '(msg:"{{ r.msg }}"; content:"rulegen-never-present"; '))
    result = run_rulegen("selftest", "--target", "suricata", "--templates", str(templates))
    assert result.returncode == 1, result.stdout[-2000:]
    assert " NO " in result.stdout and re.search(r"^suricata: \d+ proven, [1-9]\d* not proven", result.stdout, re.M)
    # only the checks that something stays quiet are still proven: the normal traffic, and the unicast
    # look-alikes of the broadcast patterns (nothing fires, so nothing is loud)
    proofs = json.loads(run_rulegen("selftest", "--target", "suricata", "--templates", str(templates),
                                    "--json").stdout)
    proven = [p for p in proofs if p["proven"]]
    assert proven and all(p["side"] == "quiet" or p["pattern"] == "normal-traffic" for p in proven), proven
    assert not any(p["proven"] for p in proofs if p["side"] == "fires" and p["pattern"] != "normal-traffic")
