"""`rulegen validate`: engine verdicts at the right line, built-in fallbacks, entries, one engine process."""

from __future__ import annotations

import json
import os
import re
import shutil
import stat
from pathlib import Path

import pytest
from conftest import copy_knowledge, need, need_root, run_rulegen

BROKEN = Path(__file__).parent / "data" / "broken"
ENGINE_NAMES = {"iptables": "iptables,ip6tables", "nftables": "nft", "suricata": "suricata"}


def _corpus(kind: str) -> list[Path]:
    return sorted(p for p in (BROKEN / kind).iterdir() if p.is_file())


def _header(path: Path, key: str) -> str | None:
    for line in path.read_text(errors="replace").splitlines()[:3]:
        m = re.match(rf"#\s*{key}:\s*(\S+)", line)
        if m:
            return m.group(1)
    return None


def _validate(*args: str, env: dict | None = None) -> tuple[int, dict]:
    result = run_rulegen("validate", "--json", *args, env=env)
    assert "Traceback" not in result.stderr, result.stderr
    return result.returncode, json.loads(result.stdout)


def _bad_lines(report: dict, builtin: bool | None = None) -> set[int]:
    lines = set()
    for file in report["files"]:
        for finding in file["findings"]:
            is_builtin = finding["engine"] == "built-in"
            if builtin is None or builtin == is_builtin:
                lines.add(finding["line"])
    return lines


@pytest.mark.parametrize("path", _corpus("suricata") + _corpus("iptables") + _corpus("nftables"),
                         ids=lambda p: f"{p.parent.name}/{p.name}")
def test_corpus_caught_at_the_line_by_engine_and_built_in(path):
    """Both verdicts are compared: `caught-by` in the file names where one of them is blind, and why."""
    kind = path.parent.name
    if kind != "suricata":
        need_root()
    need({"nftables": "nft", "iptables": "iptables-restore", "suricata": "suricata"}[kind])
    expected = int(_header(path, "expect-line"))
    caught_by = _header(path, "caught-by") or "both"
    code, engine_run = _validate("--strict", "--format", kind, str(path))
    assert code == 1
    assert expected in _bad_lines(engine_run), engine_run
    lenient, _ = _validate("--format", kind, str(path))  # without --strict, only an engine's refusal fails
    refused = any(f["kind"] == "engine" and f["line"] == expected for r in engine_run["files"] for f in r["findings"])
    assert lenient == (1 if refused else 0), engine_run
    engine_lines = _bad_lines(engine_run, builtin=False)
    assert (expected in engine_lines) == (caught_by in ("both", "engine")), engine_run
    # engines switched off on purpose: not a missing engine, even where CI requires engines
    code, builtin_run = _validate("--strict", "--format", kind, str(path),
                                  env={"RULEGEN_DISABLE_ENGINES": ENGINE_NAMES[kind], "RULEGEN_REQUIRE_ENGINES": "0"})
    checked = builtin_run["files"][0]["checked_by"]
    assert any(c.startswith("built-in") for c in checked) and not any(c[0].isdigit() for c in checked)
    assert (expected in _bad_lines(builtin_run)) == (caught_by in ("both", "builtin")), builtin_run
    assert _bad_lines(builtin_run) <= {expected}


def test_corpus_sizes():
    assert len(_corpus("suricata")) >= 15 and len(_corpus("iptables")) >= 6 and len(_corpus("nftables")) >= 3


def test_generated_output_validates_clean_with_engines(built):
    code, report = _validate(str(built))
    assert code == 0, json.dumps(report, indent=1)[:3000]
    formats = {f["format"] for f in report["files"]}
    # the ipset file (the home sets rg-home-4 / -6) is always written now
    assert formats == {"suricata", "suricata-tarball", "sigma", "iptables", "ip6tables", "ipset", "nftables"}
    for file in report["files"]:
        assert file["checked_by"], file["path"]


def test_generated_output_validates_clean_with_built_in_checks(built):
    code, report = _validate(str(built / "suricata"), str(built / "iptables"), str(built / "nftables"),
                             env={"RULEGEN_DISABLE_ENGINES": "suricata,iptables,ip6tables,nft",
                                  "RULEGEN_REQUIRE_ENGINES": "0"})
    assert code == 0, report
    for file in report["files"]:
        assert any("built-in" in c for c in file["checked_by"]), file


def test_missing_engine_is_an_error_when_engines_are_required(built):
    result = run_rulegen("validate", str(built / "nftables"),
                         env={"RULEGEN_DISABLE_ENGINES": "nft", "RULEGEN_REQUIRE_ENGINES": "1"})
    assert result.returncode == 2 and "RULEGEN_REQUIRE_ENGINES" in result.stderr
    plain = run_rulegen("validate", str(built / "nftables"),
                        env={"RULEGEN_DISABLE_ENGINES": "nft", "RULEGEN_REQUIRE_ENGINES": "0"})
    assert plain.returncode == 0 and "checked by: built-in (nft not found)" in plain.stdout


def test_validating_out_runs_exactly_one_suricata_process(built, tmp_path):
    """Count real engine processes through a wrapper on PATH, not time."""
    real = need("suricata")
    wrapper_dir = tmp_path / "bin"
    wrapper_dir.mkdir()
    log = tmp_path / "calls.log"
    wrapper = wrapper_dir / "suricata"
    wrapper.write_text(f'#!/bin/sh\necho "$*" >> {log}\nexec {real} "$@"\n')
    wrapper.chmod(wrapper.stat().st_mode | stat.S_IEXEC)
    env = {"PATH": f"{wrapper_dir}:{os.environ['PATH']}"}
    code, report = _validate(str(built), env=env)
    assert code == 0, report
    test_runs = [line for line in log.read_text().splitlines() if " -T " in f" {line} "]
    assert len(test_runs) == 1, test_runs


def test_a_broken_generated_line_names_file_line_sid_and_entry(built, tmp_path):
    out = tmp_path / "out"
    shutil.copytree(built, out)
    rules = out / "suricata" / "rulegen.rules"
    lines = rules.read_text().splitlines()
    number = next(i for i, ln in enumerate(lines, 1) if "rulegen_entry back-orifice" in ln)
    lines[number - 1] = lines[number - 1].replace("flow:", "flwo:", 1)
    rules.write_text("\n".join(lines) + "\n")
    result = run_rulegen("validate", str(rules))
    assert result.returncode == 1
    assert re.search(rf"{re.escape(str(rules))}:{number}: \[suricata [\d.]+\] .*flwo.*\(entry: back-orifice\)",
                     result.stdout), result.stdout
    code, report = _validate(str(rules))
    [finding] = report["files"][0]["findings"]
    assert finding["sid"] and finding["entry"] == "back-orifice"


def test_unknown_classtype_is_lint_that_fails_only_strict(tmp_path):
    """Suricata loads a rule with an unknown classtype (it only warns): a lint finding, not a refusal."""
    need("suricata")
    path = tmp_path / "x.rules"
    path.write_text('alert tcp any any -> any 1 (msg:"x"; flow:to_server; classtype:no-such-class; '
                    'sid:1000001; rev:1;)\n')
    code, report = _validate("--no-lint", str(path))
    assert code == 0 and _bad_lines(report) == {1}
    assert report["engine_errors"] == 0 and [g["code"] for g in report["lint"]] == ["unknown-classtype"]
    code, report = _validate("--no-lint", "--strict", str(path))
    assert code == 1 and report["failed_files"] == [str(path)]


def test_usage_errors_exit_2(tmp_path):
    assert run_rulegen("validate", str(tmp_path / "missing.rules")).returncode == 2
    odd = tmp_path / "notes.bin"
    odd.write_bytes(b"\x00\x01")
    result = run_rulegen("validate", str(odd))
    assert result.returncode == 2 and "--format" in result.stderr


def test_build_refuses_output_that_fails_validation(tmp_path, built, templates_dir):
    """A template that writes a broken Suricata option: exit 1, out/ and the lock untouched."""
    templates = tmp_path / "templates"
    shutil.copytree(templates_dir, templates)
    rule_template = templates / "suricata" / "rulegen.rules.j2"
    rule_template.write_text(rule_template.read_text().replace('(msg:"', '(bogus_keyword; msg:"'))
    knowledge = copy_knowledge(tmp_path / "knowledge")
    out = tmp_path / "out"
    shutil.copytree(built, out)
    before = {p: p.read_bytes() for p in out.rglob("*") if p.is_file()}
    lock_before = (knowledge / "article" / "rulegen.lock").read_bytes()
    result = run_rulegen("build", "--knowledge", str(knowledge), "--templates", str(templates), "--out", str(out))
    assert result.returncode == 1, result.stderr
    assert "bogus_keyword" in result.stderr and f"{out}/suricata/rulegen.rules:" in result.stderr
    assert {p: p.read_bytes() for p in out.rglob("*") if p.is_file()} == before
    assert (knowledge / "article" / "rulegen.lock").read_bytes() == lock_before
    assert not list(tmp_path.glob(".out.*")), "staging folder left behind"
    skipped = run_rulegen("build", "--no-validate", "--knowledge", str(knowledge), "--templates", str(templates),
                          "--out", str(out))
    assert skipped.returncode == 0 and "not validated" in skipped.stdout
