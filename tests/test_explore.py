"""`rulegen list`, `show` and `coverage` as a user runs them, checked against the knowledge and a real out/."""

from __future__ import annotations

import json
import os
import pty
import re
import subprocess
import sys

import pytest
from conftest import ODD_ENTRY_HEAD, ODD_PROBE_PATTERN, REPO, run_rulegen

from rulegen.build import compile_rules
from rulegen.explore import describe
from rulegen.knowledge import default_knowledge_dir
from rulegen.render import default_templates_dir
from rulegen.targets import TARGETS

ANSI = re.compile(r"\x1b\[")


def _json(*args: str):
    result = run_rulegen(*args, "--json")
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def _in(entry, port: int) -> bool:
    return any(r.low <= port <= r.high for r in entry.ports)


def test_list_shows_every_entry_of_the_knowledge(kb):
    listed = _json("list")
    assert [e["id"] for e in listed] == [e.id for e in kb.entries]
    by_id = {e.id: e for e in kb.entries}
    for row in listed:
        entry = by_id[row["id"]]
        assert row["patterns"] == [p.id for p in entry.patterns]
        assert row["protocols"] == list(entry.protocols) and row["service"] == entry.service
        assert row["port_class"] == entry.port_class and row["targets"]
        assert row["pack"] == entry.pack and entry.pack in {p.id for p in kb.packs}
    plain = run_rulegen("list")
    assert plain.returncode == 0 and not ANSI.search(plain.stdout)
    lines = plain.stdout.splitlines()
    assert lines[0].split()[:7] == ["entry", "pack", "ports", "protocol", "service", "class", "patterns"]
    assert [ln.split()[:2] for ln in lines[1:]] == [[e.id, e.pack] for e in kb.entries]


# (options, which entries of the knowledge they select): a port inside a range, a source port, AND of filters.
FILTERS = {
    "port 53 (dns and source port 53)": (["--port", "53"], lambda e: _in(e, 53)),
    "port inside a range": (["--port", "7000"], lambda e: _in(e, 7000)),
    "source port 20": (["--port", "20"], lambda e: _in(e, 20)),
    "class dynamic": (["--class", "dynamic"], lambda e: e.port_class == "dynamic"),
    "proto udp": (["--proto", "udp"], lambda e: "udp" in e.protocols),
    "tag trojan": (["--tag", "trojan"], lambda e: "trojan" in e.tags),
    "tag trojan and proto udp": (["--tag", "trojan", "--proto", "udp"],
                                 lambda e: "trojan" in e.tags and "udp" in e.protocols),
    "the README's AND example": (["--class", "registered", "--proto", "udp", "--tag", "trojan"],
                                 lambda e: e.port_class == "registered" and "udp" in e.protocols
                                 and "trojan" in e.tags),
    "class well-known and proto tcp and tag dns": (
        ["--class", "well-known", "--proto", "tcp", "--tag", "dns"],
        lambda e: e.port_class == "well-known" and "tcp" in e.protocols and "dns" in e.tags),
}


@pytest.mark.parametrize("case", FILTERS)
def test_list_filters_narrow_the_entries(kb, case):
    options, wanted = FILTERS[case]
    expected = [e.id for e in kb.entries if wanted(e)]
    assert 0 < len(expected) < len(kb.entries)
    assert [e["id"] for e in _json("list", *options)] == expected


def test_port_filter_finds_ranges_and_source_ports():
    assert [e["id"] for e in _json("list", "--port", "53")] == ["dns", "dns-any-amplification", "src-dns"]
    assert "realaudio" in {e["id"] for e in _json("list", "--port", "7000")}


@pytest.mark.parametrize("args, message", [
    (["show", "no-such-thing"], "'no-such-thing' is neither a port number, an entry id nor a pattern id"),
    (["show", "70000"], "70000 is not a port number"),
    (["show", "9"], "no entry covers port 9"),
    (["list", "--class", "huge"], "--class: unknown value 'huge'"),
    (["list", "--tag", "nonsense"], "--tag: unknown value 'nonsense'"),
])
def test_unknown_subjects_exit_2_with_a_clear_message(args, message):
    result = run_rulegen(*args)
    assert result.returncode == 2 and message in result.stderr and "Traceback" not in result.stderr
    assert result.stdout == ""


def test_show_31337_prints_the_rules_out_holds_byte_for_byte(built, kb):
    result = run_rulegen("show", "31337")
    assert result.returncode == 0, result.stderr
    shown = result.stdout.splitlines()
    entry = kb.entry("back-orifice")
    assert entry.title in result.stdout and entry.description_en in result.stdout
    suricata_lines = (built / "suricata" / "rulegen.rules").read_text().splitlines()
    for pattern in entry.patterns:
        [rule] = [ln for ln in suricata_lines if re.search(rf"rulegen_pattern {pattern.id}[,;]", ln)]
        assert rule in shown
        sigma = next(built.glob(f"sigma/*{pattern.id.replace('-', '_')}.yml")).read_text()
        assert sigma in result.stdout
        for path in ("iptables/rulegen.rules", "nftables/rulegen.nft"):
            lines = [ln for ln in (built / path).read_text().splitlines() if f" {pattern.id} " in ln]
            assert lines and all(ln in shown for ln in lines), path


def test_every_pattern_maps_to_exactly_its_lines_in_out(built, manifest):
    """The library view behind show and the report: every expressed cell's lines are lines of that out/ file
    (a Sigma rule: the whole file), and every target file that carries the pattern is listed."""
    entries = describe(compile_rules([default_knowledge_dir()], default_templates_dir(), TARGETS))
    rows = {row["id"]: row for row in manifest["patterns"]}
    for pattern in (p for e in entries for p in e.patterns):
        assert pattern.sid == rows[pattern.id]["sid"] and pattern.rev == rows[pattern.id]["rev"]
        for cell in pattern.cells:
            if not cell.expressed:
                assert not cell.rules
                continue
            assert cell.rules, (pattern.id, cell.target)
            for rules in cell.rules:
                text = (built / rules.path).read_text()
                if rules.path.startswith("sigma/"):
                    assert rules.lines == (text,)
                else:
                    assert set(rules.lines) <= set(text.splitlines()) and all(pattern.id in ln for ln in rules.lines)
            named = re.compile(rf"(?<![\w-]){re.escape(pattern.id)}(?![\w-])")
            text_files = [a for a in rows[pattern.id]["coverage"][cell.target]["artifacts"]
                          if not a.endswith(".tar.gz")]  # the tarball packs rulegen.rules
            rule_files = [a for a in text_files if a.startswith("sigma/") or named.search((built / a).read_text())]
            assert sorted(r.path for r in cell.rules) == rule_files


@pytest.mark.parametrize("subject, entries", [("53", ["dns", "dns-any-amplification", "src-dns"]),
                                              ("7000", ["realaudio"]),
                                              ("back-orifice", ["back-orifice"]),
                                              ("back-orifice-inbound-probe-tcp", ["back-orifice"])])
def test_show_takes_a_port_an_entry_or_a_pattern(subject, entries):
    shown = _json("show", subject)
    assert [e["id"] for e in shown] == entries
    if subject.endswith("-tcp"):
        assert [p["id"] for p in shown[0]["patterns"]] == [subject]
    for entry in shown:
        assert entry["description"]["en"] and entry["description"]["zh"]
        for pattern in entry["patterns"]:
            assert {"sid", "rev", "uuid", "severity", "technique", "tactic", "cells"} <= set(pattern)
            assert [c["target"] for c in pattern["cells"]] == list(TARGETS)
            for cell in pattern["cells"]:
                assert (cell["expressed"] and cell["rules"]) or (not cell["expressed"] and cell["reason"])


def test_show_lang_zh_prints_the_chinese_description(kb):
    entry = kb.entry("back-orifice")
    zh = run_rulegen("show", "back-orifice", "--lang", "zh")
    en = run_rulegen("show", "back-orifice")
    assert zh.returncode == en.returncode == 0
    zh_head, en_head = (r.stdout.split("== pattern")[0] for r in (zh, en))  # the entry, before its rules
    assert entry.description_zh in zh_head and entry.description_en not in zh_head
    assert entry.description_en in en_head and entry.description_zh not in en_head


def test_coverage_is_patterns_times_targets_and_agrees_with_the_manifest(kb, manifest):
    rows = _json("coverage")
    assert len(rows) == len(kb.patterns) * len(TARGETS)
    cells = {(r["id"], target): cell for r in manifest["patterns"] for target, cell in r["coverage"].items()}
    packs = {r["id"]: r["pack"] for r in manifest["patterns"]}
    assert {(r["pattern"], r["target"]) for r in rows} == set(cells)
    for row in rows:
        cell = cells[(row["pattern"], row["target"])]
        assert (row["expressed"], row["reason"]) == (cell["expressed"], cell["reason"]), row
        assert row["pack"] == packs[row["pattern"]] == kb.entry(row["entry"]).pack
    plain = run_rulegen("coverage")
    assert not ANSI.search(plain.stdout)
    assert len(plain.stdout.splitlines()) == 1 + len(rows)
    assert [ln.split()[2] for ln in plain.stdout.splitlines()[1:]] == [r["pack"] for r in rows]
    assert sum(ln.split()[4] == "no" for ln in plain.stdout.splitlines()[1:]) == sum(not r["expressed"] for r in rows)


@pytest.mark.parametrize("args", [["list"], ["show", "31337"], ["coverage"]])
def test_piped_output_is_plain_and_a_terminal_gets_rich_tables(args):
    piped = run_rulegen(*args)
    assert piped.returncode == 0 and not ANSI.search(piped.stdout) and piped.stdout
    leader, follower = pty.openpty()
    proc = subprocess.Popen([sys.executable, "-m", "rulegen", *args], stdout=follower, stderr=subprocess.PIPE,
                            env={**os.environ, "COLUMNS": "200", "TERM": "xterm-256color"})
    os.close(follower)
    chunks = []
    while True:
        try:
            data = os.read(leader, 65536)
        except OSError:  # the other end closed
            break
        if not data:
            break
        chunks.append(data)
    os.close(leader)
    assert proc.wait(timeout=120) == 0, proc.stderr.read()
    on_terminal = b"".join(chunks).decode()
    assert ANSI.search(on_terminal)
    if args[0] != "show":
        assert "┃" in on_terminal and "━" in on_terminal  # a rich table's frame
    else:  # rule lines stay whole on a terminal too, so they can be copied
        rule = next(ln for ln in piped.stdout.splitlines() if ln.startswith("alert "))
        assert rule in on_terminal.replace("\r\n", "\n").splitlines()


def test_a_pattern_new_to_the_lock_shows_the_sid_a_build_would_reserve_and_nothing_is_written(tmp_path):
    knowledge = tmp_path / "knowledge"
    knowledge.mkdir()
    (knowledge / "a.yaml").write_text(ODD_ENTRY_HEAD + ODD_PROBE_PATTERN, encoding="utf-8")
    result = run_rulegen("show", "4444", "--knowledge", str(knowledge))
    assert result.returncode == 0, result.stderr
    assert "sid 1200000 (new: not in the lock yet)" in result.stdout  # a site folder's own range
    assert "sid:1200000; rev:1;" in result.stdout
    assert sorted(p.name for p in knowledge.iterdir()) == ["a.yaml"]  # no lock written


def test_bad_knowledge_exits_2_with_file_and_line(tmp_path):
    knowledge = tmp_path / "knowledge"
    knowledge.mkdir()
    (knowledge / "a.yaml").write_text(ODD_ENTRY_HEAD.replace("ports: [4444]", "ports: [99999]"), encoding="utf-8")
    for args in (["list"], ["show", "odd"], ["coverage"]):
        result = run_rulegen(*args, "-k", str(knowledge))
        assert result.returncode == 2 and "Traceback" not in result.stderr
        assert re.search(r"a\.yaml:\d+: odd: ", result.stderr), result.stderr


def _readme_commands(section: str) -> list[str]:
    text = (REPO / "README.md").read_text().split(f"## {section}\n", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```sh\n(.*?)```", text, re.S)
    return [line.split("  #")[0].strip() for block in blocks for line in block.splitlines()
            if line.startswith("rulegen ")]


@pytest.mark.parametrize("command", _readme_commands("Exploring the knowledge"))
def test_the_readme_examples_run(command, tmp_path):
    """Every command of the README's section, copied as a user would, from any folder."""
    shell = command.replace("rulegen ", f"{sys.executable} -m rulegen ", 1)
    result = subprocess.run(["bash", "-o", "pipefail", "-c", shell], capture_output=True, text=True, cwd=tmp_path,
                            timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() and "Traceback" not in result.stderr
