"""suricata-check (the Suricata style guide linter) over a generated rules file.

Why not the `suricata-check` CLI: it is fast on most rules but one checker, WhitespaceChecker (all of its
codes S100-S123 are INFO), matches every content against a regex with nested quantifiers (S120,
`([^|]*|...)*`) that backtracks exponentially with plain `re` on a long literal run: our NetBIOS rule's
`content:"CKAAAA...A|00 00 21 00 01|"` takes hours. The optional `regex` module (suricata-check[performance])
does not backtrack there. The CLI also starts a multiprocessing manager, asks PyPI for updates, and its
JSONL output has no severities. So we use the library API, all rules in one child process (~0.5 s for
~90 rules), killed at the timeout (RULEGEN_ENGINE_TIMEOUT); and we enable only the codes at WARNING or above,
which leaves WhitespaceChecker off entirely (suricata-check drops a checker none of whose codes are wanted).

Codes at WARNING+ in suricata-check 0.9.3b0: M000, M001 (ERROR), C000, S406 (WARNING). Everything else,
S020, S021, S031, S300, ..., is INFO: pass `min_severity="INFO"` to see those too.

Codes listed in lint_exceptions.yaml (code -> one-line reason) are dropped.

suricata-check 0.9.3b0 guards its Rule constructor with `inspect.stack()[1].function == "parse"`: building the
source context of every frame took three quarters of its time (48 of 66 s over 3,640 rules). The child gives that
guard a stack of frame names only (`_FrameNames`): the guard and every checker stay as they are.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import json
import re
import sys
import tempfile
from pathlib import Path

import yaml

from rulegen.validate import engines
from rulegen.validate.base import Finding

EXCEPTIONS_PATH = Path(__file__).with_name("lint_exceptions.yaml")
LEVELS = {"DEBUG": 10, "INFO": 20, "WARNING": 30, "ERROR": 40, "CRITICAL": 50}
_CODE = re.compile(r"^[A-Z]+[0-9]{3}$")
# WhitespaceChecker's codes; with plain `re` its S120 regex can run for hours on one rule.
_WHITESPACE_CODES = r"S1[0-9]{2}"
_ROOT = Path(__file__).resolve().parents[2]  # the directory holding the rulegen package


MAX_RULE_BYTES = 8191  # Suricata reads a rule line in pieces of this size
# C000 warns that a rule setting an xbit under a threshold sets it on every match, reached or not. A rule that
# first checks that the same bit is not set is a counter of distinct pairs (rulegen's sweeps of many hosts):
# setting the bit on every match is its purpose, so C000 is dropped for that rule alone.
_DISTINCT_COUNTER = re.compile(r"xbits\s*:\s*isnotset\s*,\s*([^,;\s]+)\s*,[^;]*;.*xbits\s*:\s*set\s*,\s*\1\s*,")


def engine_version() -> str | None:
    """suricata-check's version, or None when it is not installed for this interpreter."""
    if importlib.util.find_spec("suricata_check") is None:
        return None
    try:
        return importlib.metadata.version("suricata-check")
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


def load_exceptions(path: Path | None = None) -> dict[str, str]:
    """The excepted codes and their reasons; refuses an entry without a one-line reason."""
    path = path or EXCEPTIONS_PATH
    if not path.exists():
        return {}
    data = yaml.safe_load(path.read_text()) or {}
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected a mapping of checker code to reason")
    for code, reason in data.items():
        if not isinstance(code, str) or not _CODE.match(code):
            raise ValueError(f"{path}: {code!r} is not a checker code (one code per entry, no patterns)")
        if not isinstance(reason, str) or not reason.strip() or "\n" in reason.strip():
            raise ValueError(f"{path}: {code} needs a one-line reason")
    return {code: reason.strip() for code, reason in data.items()}


def _severity(level: int) -> str:
    if level >= LEVELS["ERROR"]:
        return "error"
    return "warning" if level >= LEVELS["WARNING"] else "info"


def _lintable_copy(path: Path, copy: Path) -> Path:
    """The file as suricata-check may read it: UTF-8 (bad bytes replaced), NUL-free, and lines longer than
    Suricata's 8191-byte limit blanked (the engine refuses them; its regexes would take hours on them).
    Line numbers stay the same."""
    lines = path.read_bytes().decode("utf-8", errors="replace").replace("\x00", " ").split("\n")
    copy.write_text("\n".join("" if len(line.encode()) > MAX_RULE_BYTES else line for line in lines),
                    encoding="utf-8")
    return copy


def lint(path: Path, timeout: float | None = None, *, min_severity: str = "WARNING") -> tuple[list[Finding], str]:
    """suricata-check's findings for a rules file (codes at min_severity or above), and a status text."""
    return lint_files([path], timeout, min_severity=min_severity)[path]


def lint_files(paths: list[Path], timeout: float | None = None, *,
               min_severity: str = "WARNING") -> dict[Path, tuple[list[Finding], str]]:
    """Per rules file, suricata-check's findings (codes at min_severity or above) and a status text: all files in
    one child process (suricata-check takes a second to import). A linter that fails, is killed or times out is
    a finding of kind `engine` on every file: the files fail."""
    version = engine_version()
    if version is None:
        return {path: ([], "suricata-check not installed") for path in paths}
    engine = f"suricata-check {version}"
    level = LEVELS[min_severity.upper()]
    exceptions = load_exceptions()
    with tempfile.TemporaryDirectory(prefix="rulegen-lint-") as tmp:
        copies = [str(_lintable_copy(path, Path(tmp) / f"{index}.rules")) for index, path in enumerate(paths)]
        command = [sys.executable, "-c",
                   f"import sys; sys.path.insert(0, {str(_ROOT)!r}); from rulegen.validate.lint import _worker; "
                   "_worker()", str(level), *copies]
        result = engines.run(command, timeout=timeout)
    why = engines.failure(result, "suricata-check")
    try:
        reports = json.loads(result.stdout) if not why else None
    except ValueError:
        why = "suricata-check printed no report"
    if why:
        return {path: ([Finding(path=str(path), line=0, engine=engine, message=why)], engine) for path in paths}
    return {path: _findings(path, report, engine, exceptions) for path, report in zip(paths, reports, strict=True)}


def _findings(path: Path, report: dict, engine: str, exceptions: dict[str, str]) -> tuple[list[Finding], str]:
    findings = []
    lines = path.read_bytes().decode("utf-8", errors="replace").split("\n")
    for item in report["issues"]:
        if item["code"] in exceptions or (item["code"] == "C000" and 1 <= item["line"] <= len(lines)
                                          and _DISTINCT_COUNTER.search(lines[item["line"] - 1])):
            continue
        message = " ".join(item["message"].split())
        findings.append(Finding(path=str(path), line=item["line"], engine=engine, message=f"{item['code']} {message}",
                                severity=_severity(item["level"]), sid=item["sid"], kind="lint", code=item["code"]))
    for line, text in report["unparsed"]:
        # a limit of the linter's own parser (IPv6 in address groups, for one), not a verdict on the rule
        findings.append(Finding(path=str(path), line=line, engine=engine, message=text, severity="info", kind="note",
                                code="suricata-check-unparsed"))
    findings.sort(key=lambda f: (f.line, f.message))
    notes = report["notes"]
    return findings, f"{engine} ({'; '.join(notes)})" if notes else engine


# --------------------------------------------------------------------------- the child process

class _FrameNames:
    """Stands in for the `inspect` module in suricata_check.utils.rule, whose only use of it is the guard
    `inspect.stack()[1].function`: the same frames, each with its function name, without the source lookups."""

    @staticmethod
    def stack(context: int = 1) -> list:
        import types

        frames, frame = [], sys._getframe(1)
        while frame is not None:
            frames.append(types.SimpleNamespace(function=frame.f_code.co_name))
            frame = frame.f_back
        return frames


def _worker() -> None:
    """Run in a child process by lint_files(): argv = minimum level, rules files; prints a JSON list of reports."""
    import logging

    level, paths = int(sys.argv[1]), sys.argv[2:]

    class Collect(logging.Handler):  # what suricata-check only logs: rules it cannot parse, checkers that crash
        def __init__(self) -> None:
            super().__init__(logging.WARNING)
            self.unparsed: list[tuple[int, str]] = []
            self.crashed: set[str] = set()

        def emit(self, record: logging.LogRecord) -> None:
            text = str(record.msg)
            if record.levelno >= logging.ERROR and "on line %i" in text:
                self.unparsed.append((int(record.args[0]), "suricata-check could not parse this rule"))
            elif text.startswith("Failed to run %s"):
                self.crashed.add(str(record.args[0]))

    package_logger = logging.getLogger("suricata_check")
    package_logger.propagate = False  # no per-rule "option not recognized" chatter on stderr
    package_logger.setLevel(logging.WARNING)

    import suricata_check
    import suricata_check.utils.rule
    from suricata_check.utils.checker import get_rule_option

    if getattr(suricata_check.utils.rule, "inspect", None) is not None:
        suricata_check.utils.rule.inspect = _FrameNames

    notes: list[str] = []
    exclude: tuple[str, ...] = ()
    if level < logging.WARNING and importlib.util.find_spec("regex") is None:
        exclude = (_WHITESPACE_CODES,)
        notes.append("regex module missing: S100-S123 not checked")
    checkers = suricata_check.get_checkers(include=(".*",), exclude=exclude, issue_severity=level)
    reports = []
    for path in paths:
        collect = Collect()
        package_logger.addHandler(collect)
        output = suricata_check.process_rules_file(path, evaluate_disabled=False, checkers=checkers)
        package_logger.removeHandler(collect)
        issues = []
        for report in output.rules:
            sid = get_rule_option(report.rule, "sid")
            for issue in report.issues:
                issues.append({"line": report.line_begin, "sid": int(sid) if sid and sid.isdigit() else None,
                               "code": issue.code, "level": issue.severity or logging.WARNING,
                               "message": issue.message, "checker": issue.checker})
        crashed = [f"{name} crashed on some rules" for name in sorted(collect.crashed)]
        reports.append({"issues": issues, "unparsed": collect.unparsed, "notes": notes + crashed})
    json.dump(reports, sys.stdout)
