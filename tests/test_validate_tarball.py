"""`rulegen validate` on rule tarballs: the packed rules through Suricata, and a stale or broken tarball caught."""

from __future__ import annotations

import shutil

from conftest import need, run_rulegen

from rulegen.archive import targz


def _copy_suricata(built, tmp_path):
    folder = tmp_path / "suricata"
    shutil.copytree(built / "suricata", folder)
    return folder


def test_built_tarball_is_checked_by_suricata(built):
    need("suricata")
    alone = run_rulegen("validate", str(built / "suricata" / "rulegen.tar.gz"))
    assert alone.returncode == 0, alone.stdout + alone.stderr
    assert "rulegen.tar.gz: suricata-tarball: ok; checked by: built-in tarball reader, suricata 7" in alone.stdout
    # beside the rules file it packs, in one run: the identical member is not loaded a second time
    together = run_rulegen("validate", str(built / "suricata"))
    assert together.returncode == 0, together.stdout + together.stderr
    assert ("rulegen.tar.gz: suricata-tarball: ok; checked by: built-in tarball reader, "
            "rules/rulegen.rules: same as rulegen.rules, checked there") in together.stdout


def test_stale_tarball_and_a_bad_rule_inside_are_problems(built, tmp_path):
    need("suricata")
    folder = _copy_suricata(built, tmp_path)
    lines = (folder / "rulegen.rules").read_text().splitlines(keepends=True)
    number = next(i for i, line in enumerate(lines, 1) if line.startswith("alert "))
    lines[number - 1] = lines[number - 1].replace("flow:", "flwo:", 1)
    tarball = folder / "rulegen.tar.gz"
    tarball.write_bytes(targz({"rules/rulegen.rules": "".join(lines).encode()}, 0))
    result = run_rulegen("validate", str(tarball))
    assert result.returncode == 1
    output = result.stdout + result.stderr
    inner = f"{tarball}/rules/rulegen.rules:{number}:"
    assert f"{inner} [suricata 7" in output and "flwo" in output, output
    assert f"{inner} [built-in tarball reader] differs from {folder / 'rulegen.rules'}" in output
    assert f"{tarball}.md5:1: [built-in tarball reader] does not hold the tarball's MD5" in output


def test_not_a_tarball_or_no_rules_inside(tmp_path):
    junk = tmp_path / "junk.tar.gz"
    junk.write_bytes(b"not gzip at all")
    empty = tmp_path / "empty.tgz"
    empty.write_bytes(targz({"README": b"nothing"}, 0))
    result = run_rulegen("validate", "--json", str(junk), str(empty))
    assert result.returncode == 1
    assert "not a readable .tar.gz" in result.stdout
    assert "no .rules file in the archive" in result.stdout
    assert "Traceback" not in result.stderr
