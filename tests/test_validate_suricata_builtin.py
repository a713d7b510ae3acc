"""The built-in Suricata checker: it flags each broken corpus file at exactly its bad line, passes the
generated rules, and stays bounded on hostile input. A new file in tests/data/broken/suricata is a new test."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest
from conftest import need

from rulegen.targets.suricata import CLASSTYPES
from rulegen.validate.suricata_builtin import MAX_LINE_BYTES, check_file

CORPUS = Path(__file__).parent / "data" / "broken" / "suricata"
CORPUS_FILES = sorted(CORPUS.glob("*.rules"))
SURICATA_CONFIG = Path("/etc/suricata/suricata.yaml")


def expected_line(path: Path) -> int:
    match = re.search(r"^# expect-line: (\d+)$", path.read_text(), re.M)
    assert match, f"{path.name} has no '# expect-line: N' header"
    return int(match.group(1))


def test_corpus_is_large_enough():
    assert len(CORPUS_FILES) >= 16


@pytest.mark.parametrize("path", CORPUS_FILES, ids=lambda p: p.stem)
def test_builtin_flags_exactly_the_bad_line(path):
    line = expected_line(path)
    findings = check_file(path, set(CLASSTYPES))
    errors = [f for f in findings if f.severity == "error"]
    assert errors, f"no error reported for {path.name}"
    assert {f.line for f in findings} == {line}, "\n".join(map(str, findings))
    assert all(f.engine == "built-in" and f.path == str(path) for f in findings)


@pytest.mark.parametrize("path", CORPUS_FILES, ids=lambda p: p.stem)
def test_engine_agrees_with_the_corpus(path, tmp_path):
    """Each corpus file really is broken for Suricata, at the line it claims (or only warns, when marked)."""
    suricata = need("suricata")
    result = subprocess.run([suricata, "-T", "-c", str(SURICATA_CONFIG), "-S", str(path), "-l", str(tmp_path)],
                            capture_output=True, text=True, timeout=120)
    output = result.stdout + result.stderr
    if "# expect-engine: warning" in path.read_text():
        assert result.returncode == 0, output
        assert re.search(r"^W: .*classtype", output, re.M), output
    else:
        assert result.returncode == 1, output
        assert set(re.findall(r"at line (\d+)", output)) == {str(expected_line(path))}, output


def test_generated_rules_have_no_builtin_findings(built):
    rules = built / "suricata" / "rulegen.rules"
    assert check_file(rules, set(CLASSTYPES)) == []


def test_hostile_file_is_checked_without_raising(tmp_path):
    path = tmp_path / "hostile.rules"
    rules = [f'alert tcp $EXTERNAL_NET any -> $HOME_NET {i % 65536} (msg:"bulk {i}"; flow:to_server; '
             f'content:"a|00|b"; nocase; sid:{1000000 + i}; rev:1;)' for i in range(100_000)]
    hostile = [
        b'alert tcp any any -> any any (msg:"' + b"A" * 1_000_000 + b'"; sid:1;)',  # a 1 MB line
        b'alert tcp any any -> any any (msg:"nul\x00byte"; sid:2;)',
        b'alert tcp any any -> any any (msg:"caf\xe9 \xff\xfe"; sid:3;)',  # not UTF-8
        b"\x00" * 50_000,
        b"alert tcp " + b"[" * 4000 + b"1.2.3.4" + b"]" * 4000 + b' any -> any any (msg:"deep"; sid:4;)',
        b"alert tcp any any -> any any (" + b"\\;" * 4000 + b")",
    ]
    path.write_bytes("\n".join(rules).encode() + b"\n" + b"\n".join(hostile) + b"\n")
    findings = check_file(path)
    by_line = {}
    for finding in findings:
        by_line.setdefault(finding.line, []).append(finding.message)
    first = len(rules) + 1
    assert f"at most {MAX_LINE_BYTES}" in by_line[first][0]
    assert "control character" in by_line[first + 1][0]
    assert "UTF-8" in by_line[first + 2][0]
    assert all(line >= first for line in by_line), "a valid bulk rule was flagged"
    assert set(by_line) == set(range(first, first + len(hostile)))
