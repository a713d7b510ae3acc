"""Site knowledge on top of the shipped knowledge: added entries, overrides, switched-off patterns,
conflicts, the site's own lock, and the change summary every build prints."""

from __future__ import annotations

import hashlib
import json
import os
import re
from pathlib import Path

import pytest
from conftest import ODD_ENTRY_HEAD, copy_knowledge, run_rulegen

from rulegen.model import SITE_SIDS

SITE_PATTERN = """      - id: site-odd-probe
        title: {title}
        category: POLICY
        direction: inbound
        transport: tcp
        dst_ports: [4444]
        detect: probe
        severity: high
        classtype: policy-violation
        response: drop
        false_positives: A colleague testing the odd service from outside.
"""
OVERRIDES = """overrides:
  - pattern: subseven-1243-inbound-probe
    severity: critical
    reason: SubSeven seen here last year
  - pattern: ident-inbound-reject
    response: log
    reason: our mail relay still asks ident
  - pattern: ingreslock-inbound-probe
    disabled: true
    reason: our Ingres cluster listens on 1524
"""


def site_folder(path: Path, title: str = "Inbound probe of the odd service", overrides: str = OVERRIDES) -> Path:
    path.mkdir(exist_ok=True)
    (path / "site.yaml").write_text(ODD_ENTRY_HEAD + SITE_PATTERN.format(title=title) + overrides)
    return path


def tree_digest(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def sid_of(rules: str, pattern_id: str) -> int | None:
    found = re.search(rf"sid:(\d+);[^\n]*rulegen_pattern {re.escape(pattern_id)}[,;]", rules)
    return int(found.group(1)) if found else None


def build(shipped: Path, site: Path, out: Path, *extra: str):
    return run_rulegen("build", "-k", str(shipped), "-k", str(site), "-o", str(out), "--no-validate", *extra)


@pytest.fixture(scope="module")
def layered(tmp_path_factory):
    """The shipped knowledge plus a site folder, built once with validation in the real engines."""
    root = tmp_path_factory.mktemp("site")
    shipped = copy_knowledge(root / "shipped")
    shipped_lock = (shipped / "article" / "rulegen.lock").read_bytes()
    site = site_folder(root / "site")
    result = run_rulegen("build", "-k", str(shipped), "-k", str(site), "-o", str(root / "out"), "--json")
    assert result.returncode == 0, result.stderr
    upstream = {pid: locked for pack in ("article", "current")  # every shipped pack's lock lies beneath the site's
                for pid, locked in json.loads((shipped / pack / "rulegen.lock").read_bytes())["patterns"].items()}
    return {"root": root, "shipped": shipped, "site": site, "out": root / "out", "summary": json.loads(result.stdout),
            "shipped_lock": shipped_lock, "upstream": upstream}


def test_site_lock_lives_with_the_site_and_the_shipped_lock_is_untouched(layered):
    assert (layered["site"] / "rulegen.lock").exists()
    assert (layered["shipped"] / "article" / "rulegen.lock").read_bytes() == layered["shipped_lock"]
    assert layered["summary"]["lock"]["paths"] == layered["summary"]["lock"]["written"] == \
        [str(layered["site"] / "rulegen.lock")]


def test_first_site_build_lists_only_the_sites_own_sids_as_added(layered, tmp_path):
    """The shipped SIDs the site's lock takes over are adopted (one count), not listed as added."""
    lock = layered["summary"]["lock"]
    assert lock["added"] == ["site-odd-probe"]
    assert set(lock["adopted"]) == set(layered["upstream"]) - {"ingreslock-inbound-probe"}  # that one is off
    assert [c["pattern"] for c in layered["summary"]["changes"] if c["change"] == "added"] == ["site-odd-probe"]
    site = site_folder(tmp_path / "site")
    text = build(layered["shipped"], site, tmp_path / "out")
    assert text.returncode == 0, text.stderr
    assert re.search(rf"\n\s+{len(lock['adopted'])} SID\(s\) adopted from the locks beneath", text.stdout), text.stdout
    assert re.findall(r"added\s+sid (\d+)", text.stdout) == ["1200000"]


def test_site_lock_is_written_with_the_ordinary_file_mode(layered):
    umask = os.umask(0)
    os.umask(umask)
    assert (layered["site"] / "rulegen.lock").stat().st_mode & 0o777 == 0o666 & ~umask


def test_shipped_rules_keep_their_upstream_sids(layered):
    rules = (layered["out"] / "suricata" / "rulegen.rules").read_text()
    site_lock = json.loads((layered["site"] / "rulegen.lock").read_text())["patterns"]
    for pattern_id, upstream in layered["upstream"].items():
        if pattern_id == "ingreslock-inbound-probe":
            continue
        assert site_lock[pattern_id]["sid"] == upstream["sid"], pattern_id
        assert site_lock[pattern_id]["uuid"] == upstream["uuid"], pattern_id
        if sid_of(rules, pattern_id) is not None:
            assert sid_of(rules, pattern_id) == upstream["sid"]


def test_site_entry_gets_the_first_sid_of_the_site_range(layered):
    rules = (layered["out"] / "suricata" / "rulegen.rules").read_text()
    assert sid_of(rules, "site-odd-probe") == SITE_SIDS[0]
    iptables = (layered["out"] / "iptables" / "rulegen.rules").read_text()
    assert f"rulegen:{SITE_SIDS[0]}:drop" in iptables


def test_severity_override_changes_every_target_and_bumps_rev(layered):
    rules = (layered["out"] / "suricata" / "rulegen.rules").read_text()
    line = next(x for x in rules.splitlines() if "rulegen_pattern subseven-1243-inbound-probe" in x)
    assert "priority:1;" in line and "signature_severity Critical" in line
    sigma = (layered["out"] / "sigma" / "net_firewall_subseven_1243_inbound_probe.yml").read_text()
    assert "\nlevel: critical\n" in sigma
    site_lock = json.loads((layered["site"] / "rulegen.lock").read_text())["patterns"]
    upstream_rev = layered["upstream"]["subseven-1243-inbound-probe"]["rev"]
    assert site_lock["subseven-1243-inbound-probe"]["rev"] == upstream_rev + 1


def test_response_override_turns_reject_into_log(layered):
    sid = layered["upstream"]["ident-inbound-reject"]["sid"]
    iptables = (layered["out"] / "iptables" / "rulegen.rules").read_text()
    assert f"rulegen:{sid}:log" in iptables
    assert not [x for x in iptables.splitlines() if f"rulegen {sid} " in x and "-j REJECT" in x]
    nft = (layered["out"] / "nftables" / "rulegen.nft").read_text()
    assert not [x for x in nft.splitlines() if f"rulegen {sid} " in x and " reject" in x]


def test_disabled_pattern_is_in_no_output_and_keeps_its_sid(layered, tmp_path):
    sid = layered["upstream"]["ingreslock-inbound-probe"]["sid"]
    for path in layered["out"].rglob("*"):
        if path.is_file() and path.name != "manifest.json" and not path.name.endswith(".gz"):
            text = path.read_text()
            assert "ingreslock-inbound-probe" not in text and str(sid) not in text, path
    row = next(r for r in json.loads((layered["out"] / "manifest.json").read_text())["patterns"]
               if r["id"] == "ingreslock-inbound-probe")
    assert "disabled by" in row["override"] and not any(c["expressed"] for c in row["coverage"].values())
    # switched back on: the same SID as upstream, not a new one
    site = site_folder(tmp_path / "site", overrides="")
    (site / "rulegen.lock").write_bytes((layered["site"] / "rulegen.lock").read_bytes())
    result = build(layered["shipped"], site, tmp_path / "out")
    assert result.returncode == 0, result.stderr
    assert sid_of((tmp_path / "out" / "suricata" / "rulegen.rules").read_text(), "ingreslock-inbound-probe") == sid


def test_build_summary_lists_overrides(layered):
    overrides = {o["pattern"]: o["override"] for o in layered["summary"]["overrides"]}
    assert set(overrides) == {"subseven-1243-inbound-probe", "ident-inbound-reject", "ingreslock-inbound-probe"}
    assert overrides["ident-inbound-reject"].startswith("response log by ")
    assert "site.yaml:" in overrides["ingreslock-inbound-probe"]


def test_each_build_says_which_sids_were_added_revised_and_retired(layered, tmp_path):
    site = tmp_path / "site"
    site_folder(site)
    (site / "rulegen.lock").write_bytes((layered["site"] / "rulegen.lock").read_bytes())
    out = tmp_path / "out"
    sid = SITE_SIDS[0]

    same = build(layered["shipped"], site, out)
    assert same.returncode == 0, same.stderr
    assert "no SID added, retired or revised" in same.stdout

    site_folder(site, title="Inbound probe of the odd service port 4444")
    revised = build(layered["shipped"], site, out)
    assert revised.returncode == 0, revised.stderr
    assert re.search(rf"revised\s+sid {sid}\s+rev 1 -> 2\s+site-odd-probe", revised.stdout), revised.stdout

    (site / "site.yaml").write_text(OVERRIDES)
    retired = build(layered["shipped"], site, out, "--json")
    assert retired.returncode == 0, retired.stderr
    assert {"change": "retired", "sid": sid, "pattern": "site-odd-probe", "rev": None} in \
        json.loads(retired.stdout)["changes"]


CONFLICTS = {
    "same pattern overridden in two files": (
        {"a.yaml": "overrides:\n  - pattern: ssh-probe\n    severity: high\n    reason: one\n",
         "b.yaml": "overrides:\n  - pattern: ssh-probe\n    response: drop\n    reason: two\n"},
        r"b\.yaml:2: pattern ssh-probe is already overridden at .*a\.yaml:2"),
    "entry id already shipped": (
        {"a.yaml": ODD_ENTRY_HEAD.replace("id: odd", "id: ssh") + SITE_PATTERN.format(title="An odd title")},
        r"a\.yaml:2: ssh: duplicate entry id 'ssh' \(first defined at .*shipped.*ports-0000-0098\.yaml:\d+\)"),
    "override of an unknown pattern": (
        {"a.yaml": "overrides:\n  - pattern: no-such-pattern\n    disabled: true\n    reason: gone\n"},
        r"a\.yaml:2: override of unknown pattern 'no-such-pattern'"),
    "override without a reason": (
        {"a.yaml": "overrides:\n  - pattern: ssh-probe\n    severity: low\n"},
        r"a\.yaml:2: override is missing the required key 'reason'"),
    "disabled and changed at once": (
        {"a.yaml": "overrides:\n  - pattern: ssh-probe\n    disabled: true\n    severity: low\n    reason: x\n"},
        r"a\.yaml:3: a disabled pattern takes no severity or response"),
    "override that changes nothing": (
        {"a.yaml": "overrides:\n  - pattern: ssh-probe\n    reason: x\n"},
        r"a\.yaml:2: an override needs 'severity', 'response' or 'disabled: true'"),
    "unknown severity": (
        {"a.yaml": "overrides:\n  - pattern: ssh-probe\n    severity: urgent\n    reason: x\n"},
        r"a\.yaml:3: 'severity' must be one of informational, low, medium, high, critical, not 'urgent'"),
}


@pytest.mark.parametrize("case", sorted(CONFLICTS))
def test_conflicting_site_knowledge_is_refused_naming_the_files(case, tmp_path, layered):
    files, message = CONFLICTS[case]
    site = tmp_path / "site"
    site.mkdir()
    for name, text in files.items():
        (site / name).write_text(text)
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("old build")
    before = tree_digest(out)
    result = build(layered["shipped"], site, out)
    assert result.returncode == 2
    assert re.search(message, result.stderr), result.stderr
    assert "Traceback" not in result.stderr
    assert tree_digest(out) == before
    assert not (site / "rulegen.lock").exists()


def test_at_shipped_names_the_knowledge_that_comes_with_rulegen(tmp_path):
    from rulegen.knowledge import default_knowledge_dir

    shipped_lock = default_knowledge_dir() / "article" / "rulegen.lock"
    before = shipped_lock.read_bytes()
    site = site_folder(tmp_path / "site")
    result = run_rulegen("build", "-k", "@shipped", "-k", str(site), "-o", str(tmp_path / "out"), "--no-validate")
    assert result.returncode == 0, result.stderr
    assert shipped_lock.read_bytes() == before
    upstream = json.loads(before)["patterns"]
    site_lock = json.loads((site / "rulegen.lock").read_text())["patterns"]
    assert site_lock["ssh-probe"]["sid"] == upstream["ssh-probe"]["sid"]


def test_show_tells_a_pattern_is_overridden_and_by_which_file(layered):
    result = run_rulegen("show", "subseven-1243-inbound-probe", "-k", str(layered["shipped"]),
                         "-k", str(layered["site"]))
    assert result.returncode == 0, result.stderr
    assert re.search(r"override:\s+severity critical by .*site\.yaml:\d+ \(SubSeven seen here last year\)",
                     result.stdout), result.stdout
    assert re.search(r"severity:\s+critical", result.stdout)
