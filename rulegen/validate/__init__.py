"""`rulegen validate`: the engines' verdict on rule files, pinned to the line and the knowledge entry."""

from __future__ import annotations

import concurrent.futures
import dataclasses
import functools
import json
import re
from collections.abc import Iterable, Sequence
from pathlib import Path

from rulegen.errors import RulegenError
from rulegen.validate.base import FileReport, Finding

FORMATS = ("suricata", "suricata-tarball", "sigma", "iptables", "ipset", "nftables")
ENTRY_IN_LINE = re.compile(r"rulegen_entry ([a-z0-9][a-z0-9-]*)")
PATTERN_IN_LINE = re.compile(r"rulegen \d+ ([a-z0-9][a-z0-9-]*)")


class ValidationInputError(RulegenError):
    exit_code = 2


def detect_format(path: Path) -> str | None:
    """Suricata `.rules`, rule tarballs `.tar.gz`/`.tgz` (suricata-update sources), Sigma `.yml`/`.yaml`,
    iptables-restore files, `.ipset` restore files, nftables `.nft`; None when unknown."""
    if path.name.lower().endswith((".tar.gz", ".tgz")):
        return "suricata-tarball"
    suffix = path.suffix.lower()
    if suffix == ".ipset":
        return "ipset"
    if suffix in (".yml", ".yaml"):
        return "sigma"
    if suffix == ".nft":
        return "nftables"
    if suffix not in (".rules", ".v4", ".v6", ".conf", ".txt", ""):
        return None
    try:
        head = path.read_bytes()[:65536].decode("utf-8", errors="replace")
    except OSError:
        return None
    for line in head.splitlines():
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        if stripped.startswith(("*filter", "*nat", "*mangle", "*raw", "*security")):
            return "iptables"
        if stripped.startswith(("table ", "flush ruleset", "define ")):
            return "nftables"
        if re.match(r"(alert|drop|reject|rejectsrc|rejectdst|rejectboth|pass|config)\s", stripped):
            return "suricata"
        break
    return "suricata" if suffix == ".rules" else None


def collect(paths: Iterable[Path], forced: str | None) -> list[tuple[Path, str]]:
    files: list[tuple[Path, str]] = []
    for path in paths:
        if not path.exists():
            raise ValidationInputError(f"{path}: no such file or folder")
        if path.is_dir():
            for child in sorted(p for p in path.rglob("*") if p.is_file()):
                fmt = forced or detect_format(child)
                if fmt:
                    files.append((child, fmt))
            continue
        fmt = forced or detect_format(path)
        if fmt is None:
            raise ValidationInputError(f"{path}: cannot tell the format; give --format ({', '.join(FORMATS)})")
        files.append((path, fmt))
    return files


@functools.lru_cache(maxsize=8)
def _read_manifest(manifest: Path, stamp: tuple[int, int]) -> tuple[dict[str, str], dict[str, list[str]]] | None:
    """pattern -> entry and artifact path -> patterns, parsed once per manifest (and its mtime and size)."""
    try:
        data = json.loads(manifest.read_text(encoding="utf-8"))
        entries = {row["id"]: row["entry"] for row in data.get("patterns", [])}
        artifacts: dict[str, list[str]] = {}
        for a in data.get("artifacts", []):
            artifacts.setdefault(a["path"], a["patterns"])
        return entries, artifacts
    except (ValueError, KeyError, TypeError, OSError):
        return None


def _manifest_patterns(path: Path) -> tuple[dict[str, str], list[str]]:
    """From the nearest out/manifest.json: pattern -> entry, and the patterns of this artifact."""
    for folder in list(path.resolve().parents)[:4]:
        manifest = folder / "manifest.json"
        if manifest.is_file():
            info = manifest.stat()
            parsed = _read_manifest(manifest, (info.st_mtime_ns, info.st_size))
            if parsed is None:
                return {}, []
            entries, artifacts = parsed
            return entries, artifacts.get(path.resolve().relative_to(folder).as_posix(), [])
    return {}, []


def generated(path: Path) -> bool:
    """The file is an artifact of a rulegen build: the manifest.json of its output folder lists it."""
    return bool(_manifest_patterns(path)[1])


def attach_entries(report: FileReport) -> None:
    """Name the knowledge entry behind each finding of a generated file, from the line or the manifest."""
    if not report.findings:
        return
    path = Path(report.path)
    entries, artifact_patterns = _manifest_patterns(path)
    lines = path.read_bytes().decode("utf-8", errors="replace").splitlines()
    fixed = []
    for finding in report.findings:
        entry = finding.entry
        text = lines[finding.line - 1] if 1 <= finding.line <= len(lines) else ""
        if entry is None and (m := ENTRY_IN_LINE.search(text)):
            entry = m.group(1)
        if entry is None and (m := PATTERN_IN_LINE.search(text)):
            entry = entries.get(m.group(1))
        if entry is None and len(artifact_patterns) == 1:
            entry = entries.get(artifact_patterns[0])
        fixed.append(dataclasses.replace(finding, entry=entry))
    report.findings = fixed


def nul_bytes(path: Path) -> list[Finding]:
    """A NUL byte ends a line early for some engines, which then judge a rule other than the one written."""
    data = path.read_bytes()
    findings: list[Finding] = []
    position, line, counted = data.find(b"\x00"), 1, 0
    while position != -1 and len(findings) < 100:
        line += data.count(b"\n", counted, position)
        counted = position
        if not findings or findings[-1].line != line:
            findings.append(Finding(str(path), line, "built-in",
                                    "NUL byte in the line (an engine may read only the part before it)"))
        position = data.find(b"\x00", position + 1)
    return findings


def validate(paths: Iterable[Path], forced: str | None = None, lint: bool = True,
             sigma_config: Path | None = None, home: Sequence[str] | None = None) -> list[FileReport]:
    """Validate files and folders; each engine runs once per file (Sigma and suricata-check: once over all).
    `sigma_config`: a sigma-cli validation config choosing the Sigma validators (rulegen's own choice otherwise).
    `home`: Suricata's HOME_NET (the knowledge's home set, from `rulegen build`); default Suricata's own."""
    from rulegen.validate import firewall, suricata, tarball

    home_net = tuple(home) if home else suricata.DEFAULT_HOME_NET

    files = collect(paths, forced)

    def check_sigma(sigma_files: list[Path]) -> list[FileReport]:
        from rulegen.validate import sigma  # pySigma and its backends take a while to import: only when needed

        return sigma.check(sigma_files, own=all(generated(p) for p in sigma_files), config=sigma_config)

    def lint_suricata(paths: list[Path]) -> dict[Path, tuple[list[Finding], str]]:
        from rulegen.validate import lint as quality

        return quality.lint_files(paths)

    # The engines are separate processes and independent of each other: run them at the same time (pySigma,
    # in this process, runs beside them). Results are gathered in a fixed order, so reports stay deterministic.
    sigma_files = [p for p, fmt in files if fmt == "sigma"]
    rules_files = [p for p, fmt in files if fmt == "suricata"]
    suricata_files = frozenset(p.resolve() for p in rules_files)
    with concurrent.futures.ThreadPoolExecutor(max_workers=max(1, min(8, len(files) + 1))) as pool:
        jobs: list[tuple[str, concurrent.futures.Future]] = []
        if sigma_files:
            jobs.append(("sigma", pool.submit(check_sigma, sigma_files)))
        linted = pool.submit(lint_suricata, rules_files) if lint and rules_files else None  # one child for all
        for path, fmt in files:
            if fmt == "suricata":
                jobs.append(("suricata", pool.submit(suricata.check, path, home_net)))
            elif fmt == "suricata-tarball":
                jobs.append(("tarball", pool.submit(tarball.check, path, suricata_files)))
            elif fmt == "iptables":
                jobs.append(("iptables", pool.submit(firewall.check_iptables, path)))
            elif fmt == "ipset":
                jobs.append(("ipset", pool.submit(firewall.check_ipset, path)))
            elif fmt == "nftables":
                jobs.append(("nftables", pool.submit(firewall.check_nft, path)))
        reports: list[FileReport] = []
        for kind, job in jobs:
            if kind == "sigma":
                reports += job.result()
            else:
                reports.append(job.result())
        by_path = {r.path: r for r in reports if r.format == "suricata"}
        for path, (findings, status) in (linted.result() if linted else {}).items():
            report = by_path[str(path)]
            report.checked_by.append(status)
            report.findings += findings
    for report in reports:
        if report.format not in ("sigma", "suricata-tarball"):  # YAML refuses NUL; gzip is binary
            report.findings += nul_bytes(Path(report.path))
        attach_entries(report)
        report.findings.sort(key=lambda f: (f.line, f.engine, f.message))
    return sorted(reports, key=lambda r: r.path)


def refusals(reports: list[FileReport]) -> list[Finding]:
    """What an engine refuses (or an engine that failed): each fails its file."""
    return [f for r in reports for f in r.findings if f.kind == "engine"]


def suggestions(reports: list[FileReport]) -> list[Finding]:
    """What a linter suggests at WARNING or above: a failure only under --strict and in rulegen's own build."""
    return [f for r in reports for f in r.findings if f.kind == "lint" and f.severity in ("error", "warning")]


def problems(reports: list[FileReport], strict: bool = True) -> list[Finding]:
    """The findings that fail: refusals, and the linters' suggestions when strict (rulegen's build always is)."""
    return refusals(reports) + (suggestions(reports) if strict else [])


@dataclasses.dataclass
class Group:
    """The findings of one code (or, for engines, one engine), counted."""

    kind: str
    code: str
    engine: str
    count: int = 0
    files: set[str] = dataclasses.field(default_factory=set)
    example: Finding | None = None

    def as_dict(self) -> dict:
        return {"kind": self.kind, "code": self.code, "engine": self.engine, "count": self.count,
                "files": len(self.files), "example": str(self.example)}


def grouped(findings: Iterable[Finding]) -> list[Group]:
    """Findings grouped by kind and code, largest group first; the first finding stands as the example."""
    groups: dict[tuple[str, str], Group] = {}
    for f in findings:
        code = f.code or f.engine
        group = groups.setdefault((f.kind, code), Group(f.kind, code, f.engine, example=f))
        group.count += 1
        group.files.add(f.path)
    return sorted(groups.values(), key=lambda g: (-g.count, g.kind, g.code))


def notes(reports: list[FileReport]) -> list[Finding]:
    """Findings that judge nothing: notes, and linter findings below WARNING."""
    return [f for r in reports for f in r.findings if f.kind == "note" or (f.kind == "lint" and f.severity == "info")]
