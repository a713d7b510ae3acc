"""`rulegen build` as a user runs it: outputs, determinism, stable IDs, bad input, escaping."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from conftest import ODD_ENTRY_HEAD, REPO, copy_knowledge, need, need_root, run_rulegen

from rulegen.knowledge import load_knowledge
from rulegen.validate.firewall import with_ipsets

EXPECTED_FILES = ["suricata/rulegen.rules", "suricata/sid-msg.map", "suricata/rulegen.tar.gz", "iptables/rulegen.rules",
                  "iptables/rulegen6.rules", "iptables/install.sh", "nftables/rulegen.nft", "manifest.json",
                  "REPORT.html"]


def _tree(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_build_writes_every_target(built, manifest):
    for rel in EXPECTED_FILES:
        assert (built / rel).is_file(), rel
    assert list((built / "sigma").glob("net_firewall_*.yml"))
    assert manifest["targets"] == ["suricata", "sigma", "iptables", "nftables"]
    for artifact in manifest["artifacts"]:
        assert (built / artifact["path"]).is_file()


def test_every_pattern_has_an_artifact_or_a_reason(manifest, kb):
    rows = {row["id"]: row for row in manifest["patterns"]}
    assert set(rows) == {p.id for p in kb.patterns}
    for row in rows.values():
        for target, cell in row["coverage"].items():
            if cell["expressed"]:
                assert cell["artifacts"], (row["id"], target)
            else:
                assert cell["reason"] and not cell["artifacts"], (row["id"], target)


def test_gaps_the_knowledge_declares_are_kept(manifest, kb):
    declared = [(p.id, target, reason) for p in kb.patterns for target, reason in p.not_expressed]
    assert declared
    rows = {row["id"]: row for row in manifest["patterns"]}
    for pid, target, reason in declared:
        cell = rows[pid]["coverage"][target]
        assert not cell["expressed"] and cell["reason"] == reason, (pid, target)


def test_sids_are_local_unique_and_match_the_lock(built, manifest):
    rules = (built / "suricata" / "rulegen.rules").read_text()
    sids = [int(s) for s in re.findall(r"\bsid:(\d+);", rules)]
    assert len(sids) == len(set(sids)) and all(1000000 <= s <= 1999999 for s in sids)
    by_pattern = {m.group(2): int(m.group(1)) for m in re.finditer(r"\bsid:(\d+);.*rulegen_pattern ([\w-]+)", rules)}
    locks = {pack: json.loads((built.parent / "knowledge" / pack / "rulegen.lock").read_text())["patterns"]
             for pack in ("article", "current")}
    ranges = {"article": (1000000, 1099999), "current": (1100000, 1199999)}  # each pack's SIDs in its own range
    assert len(by_pattern) == len(sids)
    for row in manifest["patterns"]:
        assert locks[row["pack"]][row["id"]]["sid"] == row["sid"]
        assert ranges[row["pack"]][0] <= row["sid"] <= ranges[row["pack"]][1], row
        if row["coverage"]["suricata"]["expressed"]:
            assert by_pattern[row["id"]] == row["sid"]


def test_suricata_rules_follow_et_conventions(built):
    kb = load_knowledge([built.parent / "knowledge"])
    for line in (built / "suricata" / "rulegen.rules").read_text().splitlines():
        if not line.startswith("alert "):
            continue
        assert re.search(r'msg:"RULEGEN (SCAN|DOS|MALWARE|POLICY|INFO|EXPLOIT|ADWARE) ', line), line
        assert re.search(r"flow:(established,)?to_(server|client);", line), line
        for key in ("created_at", "updated_at", "signature_severity", "attack_target", "deployment",
                    "performance_impact", "confidence", "rulegen_pattern"):
            assert f" {key} " in line or f":{key} " in line, (key, line)
        entry = kb.entry(re.search(r"rulegen_entry ([\w-]+)", line).group(1))
        assert f"reference:url,{entry.references[0].split('://', 1)[1]};" in line  # the entry's first source
        options = re.findall(r"(\w[\w.]*)(?::|;)", line.split("(", 1)[1])
        assert options.index("msg") < options.index("flow") < options.index("classtype") < options.index("sid")
        if " priority:4;" in line:
            assert "signature_severity Informational" in line


def test_informational_patterns_stay_quiet(built, manifest, kb):
    informational = {p.id for p in kb.patterns if p.severity.value == "informational"}
    assert informational
    rules = (built / "suricata" / "rulegen.rules").read_text().splitlines()
    for line in rules:
        pattern = re.search(r"rulegen_pattern ([\w-]+)", line)
        if pattern and pattern.group(1) in informational:
            assert "priority:4;" in line
    for path in (built / "sigma").rglob("*.yml"):
        data = yaml.safe_load(path.read_text())
        if any(path.name.endswith(f"_{pid.replace('-', '_')}.yml") for pid in informational):
            assert data["level"] == "informational", path.name
    firewall = (built / "iptables" / "rulegen.rules").read_text()
    for line in firewall.splitlines():
        m = re.search(r"rulegen \d+ ([\w-]+)", line)
        if m and m.group(1) in informational:
            assert line.endswith('"') and "-j LOG" in line, line


def test_firewall_lines_respect_kernel_limits(built):
    for rel in ("iptables/rulegen.rules", "iptables/rulegen6.rules"):
        for line in (built / rel).read_text().splitlines():
            for prefix in re.findall(r'--log-prefix "([^"]*)"', line):
                assert len(prefix) <= 29
            for comment in re.findall(r'--comment "([^"]*)"', line):
                assert len(comment) <= 255
            for ports in re.findall(r"--[sd]ports (\S+)", line):
                assert sum(2 if ":" in p else 1 for p in ports.split(",")) <= 15
    nft = (built / "nftables" / "rulegen.nft").read_text()
    assert nft.startswith("#!/usr/sbin/nft -f") and "delete table inet rulegen" in nft
    for prefix in re.findall(r'log prefix "([^"]*)"', nft):
        assert len(prefix) <= 29


def test_ident_is_answered_with_rst(built):
    """Port 113 jumps to the pattern's own chain, which rejects with a TCP reset."""
    rules = (built / "iptables" / "rulegen.rules").read_text()
    own = {m.group(1) for m in re.finditer(r"^-A \S+ .*--dport 113 .*-j (RULEGEN-INPUT-\d+)$", rules, re.M)}
    assert own and all(re.search(rf"^-A {chain} .*-j REJECT --reject-with tcp-reset$", rules, re.M) for chain in own)
    assert "tcp dport 113" in (built / "nftables" / "rulegen.nft").read_text()
    assert "reject with tcp reset" in (built / "nftables" / "rulegen.nft").read_text()


def test_two_builds_are_byte_identical(tmp_path):
    knowledge = copy_knowledge(tmp_path / "knowledge")
    for name in ("a", "b"):
        result = run_rulegen("build", "--knowledge", str(knowledge), "--out", str(tmp_path / name))
        assert result.returncode == 0, result.stderr
    assert _tree(tmp_path / "a") == _tree(tmp_path / "b")


def test_target_subset(tmp_path):
    knowledge = copy_knowledge(tmp_path / "knowledge")
    result = run_rulegen("build", "--knowledge", str(knowledge), "--out", str(tmp_path / "out"),
                         "--target", "suricata,nftables", "--json")
    assert result.returncode == 0, result.stderr
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [
        "REPORT.html", "manifest.json", "nftables", "suricata"]
    assert set(json.loads(result.stdout)["rules"]) == {"suricata", "nftables"}
    bad = run_rulegen("build", "--target", "snort", "--out", str(tmp_path / "x"))
    assert bad.returncode == 2 and "unknown target snort" in bad.stderr


def _edit_pattern_title(knowledge: Path, pattern_id: str, new_title: str) -> None:
    for path in knowledge.rglob("*.yaml"):
        text = path.read_text()
        m = re.search(rf"- id: {re.escape(pattern_id)}\n(\s+)title: .*\n", text)
        if m:
            path.write_text(text[: m.start()] + f"- id: {pattern_id}\n{m.group(1)}title: {new_title}\n"
                            + text[m.end():])
            return
    raise AssertionError(pattern_id)


def _remove_pattern(knowledge: Path, pattern_id: str) -> None:
    for path in knowledge.rglob("*.yaml"):
        text = path.read_text()
        m = re.search(rf"\n( +)- id: {re.escape(pattern_id)}\n", text)
        if m:
            indent = m.group(1)
            end = re.compile(rf"\n{indent}- id: |\n {{0,{len(indent) - 1}}}\S").search(text, m.end())
            path.write_text(text[: m.start()] + text[end.start():])
            return
    raise AssertionError(pattern_id)


def test_ids_are_stable_rev_bumps_and_sids_are_never_reused(tmp_path):
    knowledge = copy_knowledge(tmp_path / "knowledge")
    lock_path = knowledge / "article" / "rulegen.lock"
    before = json.loads(lock_path.read_text())["patterns"]
    _edit_pattern_title(knowledge, "back-orifice-inbound-probe-udp", "Back Orifice UDP probe, edited")
    _remove_pattern(knowledge, "snmp-probe")
    frozen = run_rulegen("build", "--frozen", "--knowledge", str(knowledge), "--out", str(tmp_path / "out"))
    assert frozen.returncode == 1 and "--frozen" in frozen.stderr and not (tmp_path / "out").exists()
    assert json.loads(lock_path.read_text())["patterns"] == before
    result = run_rulegen("build", "--knowledge", str(knowledge), "--out", str(tmp_path / "out"), "--json")
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)["lock"]
    assert summary["revised"] == ["back-orifice-inbound-probe-udp"]
    assert summary["retired"] == ["snmp-probe"]
    lock = json.loads(lock_path.read_text())
    after = lock["patterns"]
    for pid, old in before.items():
        if pid == "snmp-probe":
            continue
        assert (after[pid]["sid"], after[pid]["uuid"]) == (old["sid"], old["uuid"])
        assert after[pid]["rev"] == old["rev"] + (pid == "back-orifice-inbound-probe-udp")
    assert lock["retired"]["snmp-probe"] == before["snmp-probe"]["sid"]
    rules = (tmp_path / "out" / "suricata" / "rulegen.rules").read_text()
    old = before["back-orifice-inbound-probe-udp"]
    assert f"sid:{old['sid']}; rev:{old['rev'] + 1};" in rules
    # a new pattern gets a fresh SID, never the retired one
    _edit_pattern_title(knowledge, "back-orifice-inbound-probe-tcp", "Back Orifice TCP probe")
    text = (knowledge / "article" / "ports-1024-41508.yaml").read_text().replace(
        "- id: back-orifice-inbound-probe-tcp", "- id: back-orifice-inbound-probe-tcp-renamed")
    (knowledge / "article" / "ports-1024-41508.yaml").write_text(text)
    result = run_rulegen("build", "--knowledge", str(knowledge), "--out", str(tmp_path / "out"))
    assert result.returncode == 0, result.stderr
    lock = json.loads(lock_path.read_text())
    new_sid = lock["patterns"]["back-orifice-inbound-probe-tcp-renamed"]["sid"]
    used = [p["sid"] for p in before.values()]
    assert new_sid not in used and new_sid > max(used)


BAD_INPUTS = {
    # name: (text to put in place of the first occurrence, replacement, message fragment)
    "yaml syntax error": ("    ports: [7]\n", "    ports: [7\n", "YAML syntax error"),
    "unknown key": ("    service: echo\n", "    service: echo\n    colour: red\n", "unknown key 'colour'"),
    "port 70000": ("    ports: [7]\n", "    ports: [70000]\n", "port 70000 is outside 0-65535"),
    "inverted range": ("        dst_ports: [7]\n", "        dst_ports: [\"900-100\"]\n", "empty or inverted"),
    "duplicate id": ("  - id: sysstat\n", "  - id: echo\n", "duplicate entry id 'echo'"),
    "missing protocol": ("        transport: udp\n", "", "missing the required key 'transport'"),
}


@pytest.mark.parametrize("case", BAD_INPUTS)
def test_bad_input_exits_2_with_file_and_line_and_writes_nothing(tmp_path, built, case):
    old, new, message = BAD_INPUTS[case]
    knowledge = copy_knowledge(tmp_path / "knowledge")
    target = knowledge / "article" / "ports-0000-0098.yaml"
    text = target.read_text()
    assert old in text, case
    index = text.index(old)
    target.write_text(text[:index] + new + text[index + len(old):])
    expected_line = text[:index].count("\n") + 1
    out = tmp_path / "out"
    shutil.copytree(built, out)
    before = _tree(out)
    lock_before = (knowledge / "article" / "rulegen.lock").read_bytes()
    result = run_rulegen("build", "--knowledge", str(knowledge), "--out", str(out))
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    assert message in result.stderr
    m = re.search(rf"{re.escape(str(target))}:(\d+): ", result.stderr)
    assert m, result.stderr
    # a missing key is reported at the start of the mapping that lacks it, a few lines above
    slack = 10 if "missing" in case else 2
    assert expected_line - slack <= int(m.group(1)) <= expected_line + 2, (m.group(1), expected_line, result.stderr)
    assert _tree(out) == before
    assert (knowledge / "article" / "rulegen.lock").read_bytes() == lock_before


def test_a_match_the_transport_cannot_carry_is_refused(tmp_path):
    knowledge = tmp_path / "k"
    knowledge.mkdir()
    (knowledge / "bad.yaml").write_text(HOSTILE.replace("transport: tcp\n        detect: probe",
                                                        "transport: tcp\n        detect: payload\n"
                                                        "        match: {snmp: {community: public}}"))
    result = run_rulegen("build", "--knowledge", str(knowledge), "--out", str(tmp_path / "out"))
    assert result.returncode == 2 and "a snmp match cannot use transport tcp" in result.stderr
    assert re.search(r"bad\.yaml:\d+: odd: ", result.stderr) and not (tmp_path / "out").exists()


HOSTILE = '''entries:
  - id: odd
    table: destination
    ports: [4444]
    protocols: [tcp]
    service: "odd\\" ; service"
    title: "Quote \\" semi ; back \\\\ {{ 7*7 }} {% raw %}x{% endraw %}"
    description:
      en: "line one\\nline two \\"quoted\\"; $(rm -rf /) `id` ' single"
      zh: "中文 \\"引号\\"；分号"
    references: ["http://www.robertgraham.com/pubs/firewall-seen.html"]
    patterns:
      - id: odd-probe
        title: "Probe \\" ; \\\\ ) ( {{ config }} \\n -A INPUT -j ACCEPT"
        category: SCAN
        direction: inbound
        transport: tcp
        detect: probe
        dst_ports: [4444]
        severity: low
        classtype: attempted-recon
        response: drop
        false_positives: "None; really \\"none\\"\\n-A OUTPUT -j DROP"
'''


def test_hostile_text_is_escaped_in_every_target(tmp_path):
    knowledge = tmp_path / "k"
    knowledge.mkdir()
    (knowledge / "odd.yaml").write_text(HOSTILE)
    out = tmp_path / "out"
    result = run_rulegen("build", "--knowledge", str(knowledge), "--out", str(out))
    assert result.returncode == 0, result.stderr
    rules = (out / "suricata" / "rulegen.rules").read_text()
    assert len([ln for ln in rules.splitlines() if ln.startswith("alert")]) == 1
    assert "{{ config }}" in rules and "<Config" not in rules  # knowledge text is never rendered as a template
    [sigma_file] = (out / "sigma").rglob("*.yml")
    data = yaml.safe_load(sigma_file.read_text())
    assert data["title"].startswith('Probe " ; \\ ) ( {{ Config }}') and "-A INPUT" in data["title"]
    ipt = (out / "iptables" / "rulegen.rules").read_text()
    assert not any(ln.startswith(("-A INPUT -j ACCEPT", "-A OUTPUT -j DROP")) for ln in ipt.splitlines())
    suricata = need("suricata")
    check = subprocess.run([suricata, "-T", "-c", "/etc/suricata/suricata.yaml", "-S",
                            str(out / "suricata" / "rulegen.rules"), "-l", str(tmp_path)],
                           capture_output=True, text=True, timeout=300)
    assert check.returncode == 0, check.stderr
    need_root()
    rules = out / "iptables" / "rulegen.rules"  # it matches the home ipsets: test it where they exist
    assert subprocess.run([*with_ipsets(rules, ["rg-home-4"], "inet"), need("iptables-restore"), "--test",
                           str(rules)], capture_output=True, timeout=60).returncode == 0
    assert subprocess.run([need("nft"), "-c", "-f", str(out / "nftables" / "rulegen.nft")],
                          capture_output=True, timeout=60).returncode == 0


@pytest.fixture
def netns():
    need_root()
    need("ip")
    name = f"rulegen-test-{os.getpid()}"
    subprocess.run(["ip", "netns", "add", name], check=True, timeout=30)
    try:
        yield name
    finally:
        subprocess.run(["ip", "netns", "del", name], timeout=30)


def _in(ns: str, *cmd: str) -> subprocess.CompletedProcess:
    return subprocess.run(["ip", "netns", "exec", ns, *cmd], capture_output=True, text=True, timeout=60)


def test_iptables_reload_keeps_one_jump_and_remove_cleans_up(built, netns):
    need("iptables-restore")
    script = str(built / "iptables" / "install.sh")
    for _ in range(2):
        result = _in(netns, "sh", script)
        assert result.returncode == 0, result.stderr
    for cmd in ("iptables", "ip6tables"):
        rules = _in(netns, cmd, "-S").stdout
        for builtin in ("INPUT", "FORWARD", "OUTPUT"):
            assert len(re.findall(rf"^-A {builtin} .*-j RULEGEN-{builtin}$", rules, re.M)) == 1, rules
        assert "-A RULEGEN-INPUT" in rules
    assert _in(netns, "sh", script, "remove").returncode == 0
    for cmd in ("iptables", "ip6tables"):
        assert "RULEGEN" not in _in(netns, cmd, "-S").stdout


def test_nft_reload_is_idempotent(built, netns):
    nft = need("nft")
    path = str(built / "nftables" / "rulegen.nft")
    for _ in range(2):
        result = _in(netns, nft, "-f", path)
        assert result.returncode == 0, result.stderr
    listing = _in(netns, nft, "list", "ruleset").stdout
    assert listing.count("table inet rulegen") == 1
    assert _in(netns, nft, "delete", "table", "inet", "rulegen").returncode == 0


def test_non_editable_install_builds_from_any_directory(tmp_path):
    """pip install . (a wheel, not editable), then `rulegen build` elsewhere finds knowledge and templates; the
    wheel carries every pack of the knowledge (with its pack.yaml and lock), every pipeline (SIEM and hunt) and the
    knowledge schema."""
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--system-site-packages", str(venv)], check=True, timeout=120)
    install = subprocess.run([str(venv / "bin" / "pip"), "install", "-q", "--no-deps", str(REPO)],
                             capture_output=True, text=True, timeout=600)
    assert install.returncode == 0, install.stderr
    work = tmp_path / "elsewhere"
    work.mkdir()
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    result = subprocess.run([str(venv / "bin" / "rulegen"), "build", "--frozen"], cwd=work, capture_output=True,
                            text=True, timeout=300, env=env)
    assert result.returncode == 0, result.stderr
    assert (work / "out" / "suricata" / "rulegen.rules").is_file()
    location = subprocess.run([str(venv / "bin" / "python"), "-c", "import rulegen; print(rulegen.__file__)"],
                              cwd=work, capture_output=True, text=True, timeout=60, env=env).stdout
    assert str(venv) in location, location
    shipped = subprocess.run([str(venv / "bin" / "python"), "-c", "from rulegen import siem, render; print(sorted("
                              "p.name for p in siem.PIPELINES.iterdir()), (render.default_templates_dir() / 'siem' / "
                              "'savedsearches.conf.j2').is_file())"],
                             cwd=work, capture_output=True, text=True, timeout=60, env=env).stdout
    in_repo = sorted(p.name for p in (REPO / "rulegen" / "data" / "pipelines").glob("*.yml"))
    assert "hunt_suricata_eve.yml" in in_repo and "ecs_network.yml" in in_repo
    assert shipped.strip() == f"{in_repo} True", shipped
    listing = ("from rulegen.knowledge import default_knowledge_dir as d; "
               "print(sorted(str(p.relative_to(d())) for p in d().rglob('*') if p.is_file()))")
    knowledge = subprocess.run([str(venv / "bin" / "python"), "-c", listing], cwd=work, capture_output=True,
                               text=True, timeout=60, env=env).stdout
    in_repo = sorted(str(p.relative_to(REPO / "knowledge")) for p in (REPO / "knowledge").rglob("*") if p.is_file())
    assert {"common.yaml", "article/pack.yaml", "article/rulegen.lock", "current/pack.yaml"} <= set(in_repo)
    assert knowledge.strip() == str(in_repo), knowledge
    schema = subprocess.run([str(venv / "bin" / "rulegen"), "schema", "--check"], cwd=work, capture_output=True,
                            text=True, timeout=60, env=env)  # the wheel ships the knowledge schema, up to date
    assert schema.returncode == 0 and str(venv) in schema.stdout, schema.stdout + schema.stderr


def test_help_lists_the_options():
    result = run_rulegen("build", "--help")
    for option in ("--knowledge", "--templates", "--out", "--target", "--frozen"):
        assert option in result.stdout


def test_loader_reports_all_problems_at_once(tmp_path):
    knowledge = copy_knowledge(tmp_path / "k")
    text = (knowledge / "article" / "ports-0000-0098.yaml").read_text()
    text = text.replace("    ports: [7]\n", "    ports: [70000]\n", 1)
    text = text.replace("    ports: [11]\n", "    ports: [-1]\n", 1)
    (knowledge / "article" / "ports-0000-0098.yaml").write_text(text)
    with pytest.raises(Exception) as info:
        load_knowledge([knowledge])
    assert len(info.value.problems) == 2


def test_rev_follows_the_rendered_rule_text_not_the_files_around_it(tmp_path, templates_dir):
    knowledge = copy_knowledge(tmp_path / "knowledge")
    templates = tmp_path / "templates"
    shutil.copytree(templates_dir, templates)
    rules = templates / "suricata" / "rulegen.rules.j2"
    rules.write_text("# a site's own header line\n" + rules.read_text())
    result = run_rulegen("build", "--json", "--knowledge", str(knowledge), "--templates", str(templates),
                         "--out", str(tmp_path / "out"))
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["lock"]["revised"] == []  # no rule's text changed
    rules.write_text(rules.read_text().replace("priority:{{ r.priority }}; ", ""))
    result = run_rulegen("build", "--json", "--knowledge", str(knowledge), "--templates", str(templates),
                         "--out", str(tmp_path / "out"))
    assert result.returncode == 0, result.stderr
    revised = set(json.loads(result.stdout)["lock"]["revised"])
    lock = {pid: locked for pack in ("article", "current")
            for pid, locked in json.loads((knowledge / pack / "rulegen.lock").read_text())["patterns"].items()}
    suricata_rules = (tmp_path / "out" / "suricata" / "rulegen.rules").read_text()
    expressed = set(re.findall(r"rulegen_pattern ([\w-]+)", suricata_rules))
    assert revised == expressed and all(lock[p]["rev"] >= 2 for p in revised)


MIXED_LIST = '''ip_lists:
  - id: bad-hosts
    title: Mixed family list
    addresses: [192.0.2.10, "2001:db8::10"]
''' + ODD_ENTRY_HEAD + '''      - id: odd-to-bad
        title: Connection to a listed bad host
        category: POLICY
        direction: outbound
        dst_net: list:bad-hosts
        transport: tcp
        detect: probe
        dst_ports: [4444]
        severity: low
        classtype: policy-violation
        response: drop
        false_positives: Scanners.
      - id: odd-from-unlisted
        title: Connection from an unlisted host
        category: POLICY
        direction: inbound
        src_net: not-list:bad-hosts
        transport: tcp
        detect: probe
        dst_ports: [4445]
        severity: low
        classtype: policy-violation
        response: log
        false_positives: Scanners.
'''


def test_an_ip_list_of_both_families_builds_and_validates(tmp_path):
    """An `ip` and an `ip6` match cannot share an nft rule: one rule per family, each with its own set."""
    knowledge = tmp_path / "k"
    knowledge.mkdir()
    (knowledge / "a.yaml").write_text(MIXED_LIST)
    result = run_rulegen("build", "--knowledge", str(knowledge), "--out", str(tmp_path / "out"))
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    nft = (tmp_path / "out" / "nftables" / "rulegen.nft").read_text()
    assert "ip daddr @bad_hosts_v4" in nft and "ip6 daddr @bad_hosts_v6" in nft
    assert not any("ip daddr" in line and "ip6 daddr" in line for line in nft.splitlines())
    assert "ip saddr != @bad_hosts_v4" in nft and "ip6 saddr != @bad_hosts_v6" in nft
