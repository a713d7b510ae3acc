"""Hostile knowledge and rule files, interrupted builds: exit 2 with file:line, nothing lost, nothing broken."""

from __future__ import annotations

import json
import re
import resource
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from conftest import ODD_ENTRY_HEAD, ODD_PROBE_PATTERN, copy_knowledge, need, run_rulegen

from rulegen.targets import sanitize_line

MINIMAL_ENTRY = ODD_ENTRY_HEAD + ODD_PROBE_PATTERN


def _swap(old: str, new: str) -> dict[str, str]:
    assert old in MINIMAL_ENTRY, old
    return {"a.yaml": MINIMAL_ENTRY.replace(old, new, 1)}


# name: (files of the knowledge folder, message fragment). A value of bytes is written as is;
# special values build the case in the test (see _make).
BAD_KNOWLEDGE: dict[str, tuple[dict, str]] = {
    "yaml syntax error": (_swap("ports: [4444]\n", "ports: [4444\n"), "YAML syntax error"),
    "tab indentation": (_swap("    table: destination", "\ttable: destination"), "YAML syntax error"),
    "top level is a list": ({"a.yaml": "- 1\n- 2\n"}, "knowledge file must be a mapping"),
    "unknown top-level key": ({"a.yaml": "entrys: []\n"}, "unknown key 'entrys'"),
    "unknown entry key": (_swap("    service: odd\n", "    service: odd\n    colour: red\n"), "unknown key 'colour'"),
    "unknown pattern key": (_swap("        severity: low\n", "        severity: low\n        sevrity: low\n"),
                            "unknown key 'sevrity'"),
    "duplicate yaml key": (_swap("    service: odd\n", "    service: odd\n    service: even\n"), "duplicate key"),
    "port as text": (_swap("dst_ports: [4444]", "dst_ports: [abc]"), "port must be an integer"),
    "port past 65535": (_swap("dst_ports: [4444]", "dst_ports: [70000]"), "outside 0-65535"),
    "negative port": (_swap("dst_ports: [4444]", "dst_ports: [-1]"), "outside 0-65535"),
    "huge number": (_swap("dst_ports: [4444]", "dst_ports: [" + "9" * 400 + "]"), "outside 0-65535"),
    "range past 65535": (_swap("dst_ports: [4444]", 'dst_ports: ["65000-70000"]'), "outside 0-65535"),
    "inverted range": (_swap("dst_ports: [4444]", 'dst_ports: ["900-100"]'), "empty or inverted"),
    "empty port list": (_swap("dst_ports: [4444]", "dst_ports: []"), "must not be an empty list"),
    "boolean port": (_swap("dst_ports: [4444]", "dst_ports: [true]"), "port must be an integer"),
    "wrong type title": (_swap("title: Probe of the odd port", "title: [a, b]"), "'title' must be a string"),
    "bad severity": (_swap("severity: low", "severity: 7"), "'severity' must be a string"),
    "unknown severity": (_swap("severity: low", "severity: apocalyptic"), "'severity' must be one of"),
    "unknown classtype": (_swap("classtype: attempted-recon", "classtype: made-up"), "'classtype' must be one of"),
    "missing transport": (_swap("        transport: tcp\n", ""), "missing the required key 'transport'"),
    "missing protocols": (_swap("    protocols: [tcp]\n", ""), "missing the required key 'protocols'"),
    "transport not in protocols": (_swap("transport: tcp", "transport: udp"), "not among the entry's protocols"),
    "match the transport cannot carry": (
        _swap("        detect: probe\n", "        detect: payload\n        match: {snmp: {community: public}}\n"),
        "cannot use transport tcp"),
    "payload without match": (_swap("detect: probe", "detect: payload"), "'match' is required"),
    "smtp match with reply and rcpt": (
        _swap("        detect: probe\n", "        detect: payload\n        match: {smtp: {reply: relay-denied, "
                                          "rcpt: relay-route}}\n"), "exactly one of 'reply' or 'rcpt'"),
    "unknown smtp reply": (_swap("        detect: probe\n", "        detect: payload\n        match: {smtp: {reply: "
                                                           "accepted}}\n"), "'reply' must be one of relay-denied"),
    "smtp reply flowing to the server": (
        _swap("        detect: probe\n", "        detect: payload\n        flow: to_server\n        match: {smtp: "
                                          "{reply: relay-denied}}\n"), "flow is to_client"),
    "smtp rcpt flowing to the client": (
        _swap("        detect: probe\n", "        detect: payload\n        flow: to_client\n        match: {smtp: "
                                          "{rcpt: relay-route}}\n"), "flow is to_server"),
    "tcp to a broadcast address": (_swap("        detect: probe\n", "        detect: probe\n        dst_net: "
                                                                     "broadcast\n"),
                                   "a broadcast destination takes udp"),
    "bad technique": (_swap("        severity: low\n", "        severity: low\n        attack: {tactic: discovery, "
                                                      "technique: X1}\n"), "technique must look like"),
    "technique not in att&ck": (_swap("        severity: low\n", "        severity: low\n        attack: {tactic: "
                                                                  "discovery, technique: T9999}\n"),
                                "technique T9999 is not in ATT&CK"),
    "tactic not of the technique": (_swap("        severity: low\n", "        severity: low\n        attack: {tactic: "
                                                                       "impact, technique: T1046}\n"),
                                    "belongs to discovery, not impact"),
    "bad url": (_swap('references: ["http://www.robertgraham.com/pubs/firewall-seen.html"]',
                      'references: ["javascript:alert(1)"]'), "not a valid http(s) URL"),
    "unknown ip list": (_swap("        detect: probe\n", "        detect: probe\n        dst_net: list:nowhere\n"),
                        "unknown ip list 'nowhere'"),
    "duplicate ids across files": ({"a.yaml": MINIMAL_ENTRY, "b.yaml": MINIMAL_ENTRY}, "duplicate entry id 'odd'"),
    "yaml alias bomb": ({"a.yaml": "a: &a [x, x, x, x, x, x, x, x]\nb: &b [*a, *a, *a, *a, *a, *a, *a, *a]\n"
                                   "c: [*b, *b, *b, *b, *b, *b, *b, *b]\n"}, "aliases are not allowed"),
    "deep flow nesting": ({"a.yaml": "entries: " + "[" * 200000 + "]" * 200000 + "\n"}, "nesting too deep"),
    "50 MB file": ({"a.yaml": "LARGE"}, "limited to"),
    "binary file": ({"a.yaml": b"\x7fELF\x02\x01\x01\x00\x00\x00"}, "binary file"),
    "not utf-8": ({"a.yaml": b"entries:\n  - id: caf\xe9\n"}, "not valid UTF-8"),
    "empty file": ({"a.yaml": ""}, "empty knowledge file"),
    "empty folder": ({}, "no knowledge files"),
    "symlink loop": ({"a.yaml": MINIMAL_ENTRY, "loop": "SYMLINK-LOOP"}, "symlink loop"),
    "unreadable file": ({"a.yaml": MINIMAL_ENTRY, "b.yaml": "DANGLING"}, "cannot read file"),
    "broken lock file": ({"a.yaml": MINIMAL_ENTRY, "rulegen.lock": "{not json"}, "lock file is not valid JSON"),
}


def _make(folder: Path, files: dict) -> None:
    folder.mkdir()
    for name, content in files.items():
        path = folder / name
        if content == "LARGE":
            with path.open("w") as handle:
                handle.write("entries:\n")
                chunk = "# " + "x" * 1022 + "\n"
                for _ in range(50 * 1024):
                    handle.write(chunk)
        elif content == "SYMLINK-LOOP":
            path.symlink_to(folder, target_is_directory=True)
        elif content == "DANGLING":
            path.symlink_to(folder / "does-not-exist.yaml")
        elif isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content, encoding="utf-8")


def _limit_memory() -> None:
    """2 GiB of address space: a blow-up crashes (and fails the test) instead of eating the machine."""
    resource.setrlimit(resource.RLIMIT_AS, (2 * 1024**3, 2 * 1024**3))


def _tree(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_corpus_has_at_least_30_cases():
    assert len(BAD_KNOWLEDGE) >= 30


@pytest.mark.parametrize("case", BAD_KNOWLEDGE)
def test_bad_knowledge_exits_2_with_file_and_line_and_leaves_out_alone(tmp_path, case):
    files, message = BAD_KNOWLEDGE[case]
    knowledge = tmp_path / "knowledge"
    _make(knowledge, files)
    out = tmp_path / "out"
    out.mkdir()
    (out / "previous.txt").write_text("the previous build\n")
    before = _tree(out)
    result = subprocess.run([sys.executable, "-m", "rulegen", "build", "--knowledge", str(knowledge), "--out",
                             str(out)], capture_output=True, text=True, timeout=120, preexec_fn=_limit_memory)
    assert result.returncode == 2, (result.returncode, result.stderr[-2000:])
    assert "Traceback" not in result.stderr
    assert message in result.stderr, result.stderr[-2000:]
    assert re.search(rf"{re.escape(str(knowledge))}[^:\n]*:\d+: ", result.stderr), result.stderr[-2000:]
    assert _tree(out) == before
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".out.")]


def test_a_target_that_can_express_nothing_of_the_knowledge_is_refused(tmp_path):
    knowledge = tmp_path / "knowledge"
    _make(knowledge, _swap("response: drop", "response: alert"))
    result = run_rulegen("build", "--knowledge", str(knowledge), "--target", "iptables", "--out", str(tmp_path / "o"))
    assert result.returncode == 2 and "target iptables cannot express it" in result.stderr
    assert re.search(r"a\.yaml:\d+: odd: ", result.stderr) and not (tmp_path / "o").exists()
    assert run_rulegen("build", "--knowledge", str(knowledge), "--out", str(tmp_path / "o")).returncode == 0


HOSTILE_TEXT = [
    '"; drop all; \\ ) (',
    "line one\nline two\r\n-A INPUT -j ACCEPT",
    "{{ 7*7 }} {% for x in y %}{{ x }}{% endfor %} {# c #}",
    "$(reboot) `id` && rm -rf / ; | > /etc/passwd",
    "key: value\n- item\n--- \n... &anchor *alias !!python/object",
    "中文 «guillemets» emoji 🚨 zero\u200bwidth RTL \u202e",
    "'single' \"double\" \\x00 \\u0000 %s %n",
    "x" * 5000,
]


@pytest.mark.parametrize("text", HOSTILE_TEXT, ids=range(len(HOSTILE_TEXT)))
def test_hostile_free_text_builds_validates_and_stays_text(tmp_path, text):
    need("suricata")
    quoted = json.dumps(text[:3000], ensure_ascii=False)
    short = json.dumps(text[:90], ensure_ascii=False)
    sentence = json.dumps(text[:3000] + " and a few more words", ensure_ascii=False)
    false_positive = json.dumps("Text: " + text[:3000], ensure_ascii=False)  # SigmaHQ: a capital first
    entry = (MINIMAL_ENTRY.replace("title: Odd service", f"title: {short}")
             .replace('en: "An odd port that nobody should expose."', "en: " + sentence)
             .replace('zh: "奇怪的端口。"', f"zh: {quoted}")
             .replace("title: Probe of the odd port", f"title: {short}")
             .replace("false_positives: Scanners.", f"false_positives: {false_positive}"))
    knowledge = tmp_path / "knowledge"
    _make(knowledge, {"a.yaml": entry})
    out = tmp_path / "out"
    result = run_rulegen("build", "--knowledge", str(knowledge), "--out", str(out))
    assert result.returncode == 0, result.stderr[-3000:]  # the build validated its own output in the engines
    rules = (out / "suricata" / "rulegen.rules").read_text()
    assert len([ln for ln in rules.splitlines() if ln.startswith("alert ")]) == 1
    [sigma_file] = (out / "sigma").glob("*.yml")
    description = yaml.safe_load(sigma_file.read_text())["description"]
    assert sanitize_line(text)[:40] in description  # carried as text, never interpreted
    for line in (out / "iptables" / "rulegen.rules").read_text().splitlines():
        assert not line.startswith("-A INPUT -j ACCEPT")


def _restore(folder: Path, tree: dict[str, bytes]) -> None:
    if folder.exists():
        shutil.rmtree(folder)
    for rel, data in tree.items():
        (folder / rel).parent.mkdir(parents=True, exist_ok=True)
        (folder / rel).write_bytes(data)


def test_sigkill_at_any_point_leaves_out_and_lock_whole(tmp_path):
    """Kill builds at spread-out moments: out/ is always the old or the new build, whole; the lock parses."""
    knowledge = copy_knowledge(tmp_path / "knowledge")
    out = tmp_path / "out"
    assert run_rulegen("build", "--knowledge", str(knowledge), "--out", str(out)).returncode == 0
    old_tree, old_lock = _tree(out), (knowledge / "article" / "rulegen.lock").read_bytes()
    path = knowledge / "article" / "ports-1024-41508.yaml"
    text = path.read_text()
    edited = re.sub(r"(- id: back-orifice-inbound-probe-udp\n\s+title: )(.*)", r"\1\2 (edited)", text)
    assert edited != text
    path.write_text(edited)
    preview = tmp_path / "preview"
    shutil.copytree(knowledge, preview)
    assert run_rulegen("build", "--knowledge", str(preview), "--out", str(tmp_path / "new")).returncode == 0
    new_tree, new_lock = _tree(tmp_path / "new"), (preview / "article" / "rulegen.lock").read_bytes()
    assert new_tree != old_tree
    seen = set()
    for delay in (0.05, 0.3, 0.6, 0.9, 1.2, 1.5, 1.8, 2.2, 2.6, 3.2, 4.0):
        _restore(out, old_tree)
        (knowledge / "article" / "rulegen.lock").write_bytes(old_lock)
        proc = subprocess.Popen([sys.executable, "-m", "rulegen", "build", "--knowledge", str(knowledge), "--out",
                                 str(out)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(delay)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
        now = _tree(out)
        assert now in (old_tree, new_tree), (delay, [k for k in set(now) | set(new_tree)
                                                     if now.get(k) not in (old_tree.get(k), new_tree.get(k))])
        assert (knowledge / "article" / "rulegen.lock").read_bytes() in (old_lock, new_lock), delay
        seen.add((now == new_tree, (knowledge / "article" / "rulegen.lock").read_bytes() == new_lock))
    assert (False, False) in seen  # killed before anything was replaced
    check = run_rulegen("validate", "--no-lint", str(out))
    assert check.returncode == 0, check.stdout[-2000:]


def _hostile_rule_files(folder: Path) -> dict[str, Path]:
    files = {
        "100000 rules": "".join(f'alert tcp any any -> any {i % 65535} (msg:"r{i}"; flow:to_server; '
                                f"sid:{1000000 + i}; rev:1;)\n" for i in range(100000)),
        "1 MB line": 'alert tcp any any -> any 1 (msg:"' + "A" * 1_000_000 + '"; sid:1; rev:1;)\n',
        "NUL bytes": b'alert tcp any any -> any 1 (msg:"a\x00b"; sid:1; rev:1;)\n',
        "not UTF-8": b'alert tcp any any -> any 1 (msg:"caf\xe9"; sid:1; rev:1;)\n',
        "nested parentheses": "alert tcp any any -> any 1 " + "(" * 50000 + 'msg:"x"; sid:1;' + ")" * 50000 + "\n",
        "iptables 1 MB comment": '*filter\n:RG - [0:0]\n-A RG -m comment --comment "' + "x" * 1_000_000
                                 + '" -j DROP\nCOMMIT\n',
        "iptables NUL": b"*filter\n:RG - [0:0]\n-A RG -p tcp --dport 1\x00 -j DROP\nCOMMIT\n",
    }
    paths = {}
    for index, (name, content) in enumerate(files.items()):
        path = folder / f"{index:02d}.rules"
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content)
        paths[name] = path
    return paths


@pytest.mark.parametrize("case", ["100000 rules", "1 MB line", "NUL bytes", "not UTF-8", "nested parentheses",
                                  "iptables 1 MB comment", "iptables NUL"])
def test_hostile_rule_files_get_a_verdict_not_a_crash(tmp_path, case):
    need("suricata")
    path = _hostile_rule_files(tmp_path)[case]
    args = ["validate", "--json", str(path)] + (["--no-lint"] if case == "100000 rules" else [])
    result = subprocess.run([sys.executable, "-m", "rulegen", *args], capture_output=True, text=True, timeout=600,
                            preexec_fn=_limit_memory if case != "100000 rules" else None)
    assert "Traceback" not in result.stderr, result.stderr[-2000:]
    report = json.loads(result.stdout)
    findings = [f for file in report["files"] for f in file["findings"]]
    if case == "100000 rules":
        assert result.returncode == 0 and not findings
    else:
        assert result.returncode == 1 and findings, report
        assert all(f["line"] in (0, 1, 3) or f["engine"].startswith("suricata 7") for f in findings)
