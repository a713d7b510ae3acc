"""Rule tarballs (suricata-update sources): every .rules member through the Suricata checks, and the members
against the files beside the tarball (the rules file it packs, its .md5), so a stale tarball is caught."""

from __future__ import annotations

import dataclasses
import hashlib
import tempfile
from pathlib import Path

from rulegen.archive import read_targz
from rulegen.validate import ENTRY_IN_LINE, suricata
from rulegen.validate.base import FileReport, Finding

READER = "built-in tarball reader"


def _first_difference(a: bytes, b: bytes) -> int:
    """The 1-based line where two texts first differ."""
    for number, (left, right) in enumerate(zip(a.splitlines(), b.splitlines(), strict=False), 1):
        if left != right:
            return number
    return min(len(a.splitlines()), len(b.splitlines())) + 1


def _member_findings(path: Path, name: str, data: bytes, folder: Path) -> tuple[list[Finding], list[str]]:
    """The Suricata checks of one member, reported as `TARBALL/MEMBER:line`, with the entry of the line."""
    inner = folder / Path(name).name
    inner.write_bytes(data)
    report = suricata.check(inner)
    lines = data.decode("utf-8", errors="replace").splitlines()
    findings = []
    for f in report.findings:
        text = lines[f.line - 1] if 1 <= f.line <= len(lines) else ""
        match = ENTRY_IN_LINE.search(text)
        findings.append(dataclasses.replace(f, path=f"{path}/{name}", message=f.message.replace(str(inner), name),
                                           entry=f.entry or (match.group(1) if match else None)))
    return findings, report.checked_by


def _sibling_findings(path: Path, rules: dict[str, bytes]) -> list[Finding]:
    findings = []
    for name, data in rules.items():
        beside = path.parent / Path(name).name
        if beside.is_file() and beside.read_bytes() != data:
            line = _first_difference(data, beside.read_bytes())
            findings.append(Finding(f"{path}/{name}", line, READER,
                                    f"differs from {beside}, first at this line: the tarball is stale"))
    md5_file = path.with_name(path.name + ".md5")
    if md5_file.is_file():
        stated = md5_file.read_text(encoding="utf-8", errors="replace").strip()
        if stated != hashlib.md5(path.read_bytes()).hexdigest():
            findings.append(Finding(str(md5_file), 1, READER,
                                    "does not hold the tarball's MD5 (suricata-update would refetch every run)"))
    return findings


def check(path: Path, checked_elsewhere: frozenset[Path] = frozenset()) -> FileReport:
    """`checked_elsewhere`: rules files validated in the same run; a member identical to one of them (the rules
    file beside the tarball, in out/) is not run through Suricata a second time."""
    report = FileReport(str(path), "suricata-tarball", [READER])
    try:
        members = read_targz(path.read_bytes())
    except ValueError as exc:
        report.findings.append(Finding(str(path), 0, READER, str(exc)))
        return report
    rules = {name: data for name, data in sorted(members.items()) if name.endswith(".rules")}
    if not rules:
        report.findings.append(Finding(str(path), 0, READER, "no .rules file in the archive: suricata-update "
                                                             "would load no rules from it"))
        return report
    for index, (name, data) in enumerate(rules.items()):
        beside = (path.parent / Path(name).name).resolve()
        if beside in checked_elsewhere and beside.read_bytes() == data:
            report.checked_by.append(f"{name}: same as {beside.name}, checked there")
            continue
        with tempfile.TemporaryDirectory(prefix=f"rulegen-tarball-{index}-") as folder:
            findings, checked_by = _member_findings(path, name, data, Path(folder))
        report.findings += findings
        report.checked_by += [c for c in checked_by if c not in report.checked_by]
    report.findings += _sibling_findings(path, rules)
    return report
