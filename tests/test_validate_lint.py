"""rulegen.validate.lint: suricata-check's findings at the rule's line, the exceptions file, the timeout."""

from __future__ import annotations

import re
import time
from pathlib import Path

import pytest
from conftest import REQUIRE_ENGINES, copy_knowledge, run_rulegen

from rulegen.validate import lint as lint_module
from rulegen.validate.lint import engine_version, lint, load_exceptions

HEAD = "# rulegen test rules\n\n"
GOOD = ('alert tcp $EXTERNAL_NET any -> $HOME_NET 21 (msg:"RULEGEN POLICY Anonymous FTP login"; '
        'flow:established,to_server; content:"USER"; depth:4; content:"anonymous"; distance:0; fast_pattern; '
        'classtype:policy-violation; sid:{sid}; rev:1; metadata:attack_target Server, signature_severity Minor;)')
# A literal run of 30+ characters in a content: with plain `re`, suricata-check's S120 regex (WhitespaceChecker)
# backtracks for hours on it. At WARNING+ that checker must stay off.
NETBIOS = ('alert udp $EXTERNAL_NET any -> $HOME_NET 137 (msg:"RULEGEN SCAN NetBIOS node status query"; '
           'flow:to_server; content:"CKAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA|00 00 21 00 01|"; offset:13; depth:37; '
           'classtype:attempted-recon; sid:{sid}; rev:1;)')
DOMAIN_IN_MSG = ('alert udp $HOME_NET any -> any 53 (msg:"RULEGEN ADWARE DNS lookup of ads.example.com"; '
                 'flow:to_server; dns.query; content:"ads.example.com"; nocase; classtype:pup-activity; '
                 'sid:{sid}; rev:1;)')
THRESHOLD_FLOWBITS = ('alert tcp any any -> $HOME_NET 80 (msg:"RULEGEN TEST threshold with flowbits"; '
                      'flow:established,to_server; content:"abc"; flowbits:set,seen; '
                      'threshold:type limit, track by_src, count 1, seconds 60; classtype:misc-activity; '
                      'sid:{sid}; rev:1;)')
# A counter of distinct hosts: the xbit gates its own setting, so setting it under the threshold is the point.
PAIR_COUNTER = ('alert tcp $EXTERNAL_NET any -> $HOME_NET 22 (msg:"RULEGEN SCAN ssh sweep, 10 distinct hosts in 60 s"; '
                'flow:to_server; flags:S,12; xbits:isnotset,rulegen.sweep,track ip_pair; '
                'xbits:set,rulegen.sweep,track ip_pair,expire 60; threshold:type both, track by_src, count 10, '
                'seconds 60; classtype:network-scan; sid:{sid}; rev:1;)')
# The same with another bit set than the one checked: C000 stands.
OTHER_BIT = PAIR_COUNTER.replace("xbits:set,rulegen.sweep", "xbits:set,rulegen.other")
NO_MSG = 'alert tcp any any -> $HOME_NET 80 (flow:established,to_server; content:"abc"; sid:{sid}; rev:1;)'
UPPER_HEX = ('alert tcp any any -> $HOME_NET 80 (msg:"RULEGEN TEST uppercase hex"; flow:established,to_server; '
             'content:"|0A 0B|"; classtype:misc-activity; sid:{sid}; rev:1;)')
NO_FAST_PATTERN = ('alert tcp any any -> $HOME_NET 80 (msg:"RULEGEN TEST two contents"; flow:established,to_server; '
                   'content:"abc"; content:"defg"; distance:0; classtype:misc-activity; sid:{sid}; rev:1;)')
ET_SID_RANGE = ('alert tcp any any -> $HOME_NET 80 (msg:"RULEGEN TEST sid range"; flow:established,to_server; '
                'content:"abc"; classtype:misc-activity; sid:2000005; rev:1;)')


def write_rules(path: Path, *rules: str) -> dict[int, int]:
    """A rules file: a header, then each rule after a comment line; returns sid -> line number."""
    text, lines = HEAD, {}
    line = HEAD.count("\n")
    for index, rule in enumerate(rules):
        sid = 1000100 + index
        rule = rule.format(sid=sid)
        text += f"# rule {index}\n{rule}\n"
        line += 2
        lines[int(re.search(r"sid:(\d+)", rule).group(1))] = line
    path.write_text(text)
    return lines


def codes_at(findings) -> set[tuple[str, int, int | None]]:
    return {(f.message.split()[0], f.line, f.sid) for f in findings}


@pytest.fixture(autouse=True)
def no_exceptions(monkeypatch, tmp_path):
    """Tests see every code: an empty exceptions file unless a test writes one. Needs suricata-check."""
    if engine_version() is None:
        if REQUIRE_ENGINES:
            pytest.fail("suricata-check not installed and RULEGEN_REQUIRE_ENGINES=1")
        pytest.skip("suricata-check not installed")
    path = tmp_path / "lint_exceptions.yaml"
    path.write_text("{}\n")
    monkeypatch.setattr(lint_module, "EXCEPTIONS_PATH", path)
    return path


def test_warning_codes_at_the_rules_line(tmp_path):
    rules = tmp_path / "bad.rules"
    line = write_rules(rules, GOOD, DOMAIN_IN_MSG, NETBIOS, THRESHOLD_FLOWBITS, NO_MSG)
    findings, status = lint(rules, timeout=60)
    assert status == f"suricata-check {engine_version()}"
    assert codes_at(findings) == {("S406", line[1000101], 1000101), ("C000", line[1000103], 1000103),
                                  ("M000", line[1000104], 1000104)}
    by_code = {f.message.split()[0]: f for f in findings}
    assert by_code["S406"].severity == "warning" and by_code["M000"].severity == "error"
    assert all(f.engine == status and f.path == str(rules) and "\n" not in f.message for f in findings)


def test_a_rule_suricata_check_cannot_parse_is_noted_at_its_line(tmp_path):
    """Noted, not a problem: the linter's parser is stricter than the engine (IPv6 address groups)."""
    rules = tmp_path / "broken.rules"
    line = write_rules(rules, GOOD.removesuffix(")"), GOOD)
    findings, _ = lint(rules, timeout=60)
    assert [(f.line, f.severity) for f in findings] == [(line[1000100], "info")]
    assert "could not parse" in findings[0].message


def test_info_codes_are_not_findings_by_default(tmp_path):
    rules = tmp_path / "style.rules"
    write_rules(rules, UPPER_HEX, NO_FAST_PATTERN, ET_SID_RANGE)
    findings, _ = lint(rules, timeout=60)
    assert findings == []


def test_info_codes_on_request(tmp_path):
    """Uppercase hex (S031), several contents without fast_pattern (S021), a sid outside the prefix's range (S300)."""
    rules = tmp_path / "style.rules"
    line = write_rules(rules, UPPER_HEX, NO_FAST_PATTERN, ET_SID_RANGE)
    findings, status = lint(rules, timeout=60, min_severity="INFO")
    assert status.startswith(f"suricata-check {engine_version()}")
    found = codes_at(findings)
    assert {("S031", line[1000100], 1000100), ("S021", line[1000101], 1000101),
            ("S300", line[2000005], 2000005)} <= found
    assert {f.severity for f in findings} == {"info"}


def test_excepted_codes_are_dropped(tmp_path, no_exceptions):
    rules = tmp_path / "bad.rules"
    line = write_rules(rules, DOMAIN_IN_MSG, THRESHOLD_FLOWBITS)
    no_exceptions.write_text('S406: "test: a domain in msg is wanted here"\n')
    findings, _ = lint(rules, timeout=60)
    assert codes_at(findings) == {("C000", line[1000101], 1000101)}


def test_c000_is_dropped_for_a_distinct_pair_counter_only(tmp_path):
    rules = tmp_path / "counter.rules"
    line = write_rules(rules, PAIR_COUNTER, OTHER_BIT, THRESHOLD_FLOWBITS)
    findings, _ = lint(rules, timeout=60)
    assert codes_at(findings) == {("C000", line[1000101], 1000101), ("C000", line[1000102], 1000102)}


@pytest.mark.parametrize("text", ["S406: ''\n", "S4.*: whole families are not excepted\n",
                                  "S406: [a, list]\n", "S406: |\n  two\n  lines\n"])
def test_exceptions_need_one_code_and_a_one_line_reason(tmp_path, text):
    path = tmp_path / "exceptions.yaml"
    path.write_text(text)
    with pytest.raises(ValueError):
        load_exceptions(path)


def test_shipped_exceptions_name_known_codes_with_reasons():
    from suricata_check import get_checkers

    known = {code for checker in get_checkers(include=(".*",)) for code in checker.codes}
    exceptions = load_exceptions(Path(lint_module.__file__).with_name("lint_exceptions.yaml"))
    assert set(exceptions) <= known
    assert all(len(reason) >= 10 for reason in exceptions.values())


def test_timeout_bounds_the_run(tmp_path):
    rules = tmp_path / "bad.rules"
    write_rules(rules, GOOD, NETBIOS)
    start = time.monotonic()
    findings, status = lint(rules, timeout=0.05)
    assert time.monotonic() - start < 10
    # a linter that times out is no silent pass: a finding of kind engine, so the file fails
    assert [(f.kind, f.line, f.message) for f in findings] == [("engine", 0, "suricata-check timed out after 0.05 s")]


def test_not_installed(monkeypatch, tmp_path):
    monkeypatch.setattr(lint_module, "engine_version", lambda: None)
    assert lint(tmp_path / "none.rules") == ([], "suricata-check not installed")


@pytest.mark.slow
def test_generated_rules_lint_quickly(tmp_path):
    """The whole generated file (NetBIOS rule included) in a few seconds; findings point at alert lines."""
    result = run_rulegen("build", "--no-validate", "--target", "suricata", "--knowledge",
                         str(copy_knowledge(tmp_path / "knowledge")), "--out", str(tmp_path / "out"))
    assert result.returncode == 0, result.stderr
    rules = tmp_path / "out" / "suricata" / "rulegen.rules"
    lines = rules.read_text().splitlines()
    start = time.monotonic()
    findings, status = lint(rules, timeout=120)
    assert time.monotonic() - start < 60
    assert status == f"suricata-check {engine_version()}"
    for finding in findings:
        assert lines[finding.line - 1].startswith("alert ")
        assert f"sid:{finding.sid};" in lines[finding.line - 1]
