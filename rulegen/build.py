"""`rulegen build`: knowledge -> model -> plan per target -> lock -> render -> out/ (one direction)."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import jinja2
from jinja2.sandbox import SandboxedEnvironment

from rulegen import __version__
from rulegen import validate as validation
from rulegen.errors import KnowledgeError, LockChangedError, Problem, RulegenError
from rulegen.ids import LOCK_NAME, Lock, LockChanges
from rulegen.knowledge import load_knowledge
from rulegen.model import KnowledgeBase
from rulegen.output import discard, manifest, stage, swap_in, write_file_atomic
from rulegen.render import make_environment, render_errors
from rulegen.targets import TARGETS, Artifact, Plan, Stamp, firewall, gap, iptables, nftables, sigma, suricata
from rulegen.validate.base import FileReport, Finding

MODULES = {"suricata": suricata, "sigma": sigma, "iptables": iptables, "nftables": nftables}
FIREWALLS = ("iptables", "nftables")


@dataclass
class BuildResult:
    kb: KnowledgeBase
    targets: list[str]
    artifacts: list[Artifact]
    plans: dict[str, list[Plan]]
    changes: LockChanges
    lock_path: Path
    lock_written: bool
    reports: list[FileReport]


def today() -> str:
    """The build date for new or revised rules; SOURCE_DATE_EPOCH pins it for reproducible builds."""
    epoch = os.environ.get("SOURCE_DATE_EPOCH")
    if epoch and epoch.isdigit():
        return dt.datetime.fromtimestamp(int(epoch), dt.UTC).date().isoformat()
    return dt.datetime.now(dt.UTC).date().isoformat()


def lock_path_for(knowledge: Sequence[Path]) -> Path:
    """The lock lives with the last knowledge folder given (a site's own folder, when it has one)."""
    last = Path(knowledge[-1])
    return (last if last.is_dir() else last.parent) / LOCK_NAME


def plan_all(kb: KnowledgeBase, policy: str | None = None) -> dict[str, list[Plan]]:
    """Every target's plan for every pattern; a gap the knowledge declares wins over the target's own say.
    `policy` (log, drop, reject) replaces the response the firewall targets see (firewall.with_policy)."""
    views = {name: firewall.with_policy(kb, policy) if name in FIREWALLS else kb for name in TARGETS}
    return {name: [gap(p, p.declared_gap(name)) if p.declared_gap(name) else MODULES[name].plan(p, views[name])
                   for p in views[name].patterns] for name in TARGETS}


NEUTRAL_DATE = "1970-01-01"
TOKEN = re.compile(r"[\w-]+")


def render_targets(plans: dict[str, list[Plan]], stamps: dict[str, Stamp], env: SandboxedEnvironment,
                   kb: KnowledgeBase, targets: Sequence[str]) -> list[Artifact]:
    return [artifact for target in targets
            for artifact in MODULES[target].render([p for p in plans[target] if p.expressed], stamps, env, kb)]


def fingerprints(plans: dict[str, list[Plan]], env: SandboxedEnvironment, kb: KnowledgeBase) -> dict[str, str]:
    """What each pattern becomes in every target: its plan contexts (or gap reasons) and its own rendered
    text, rendered with a neutral SID, rev and dates. Any change to either (knowledge, templates or the
    target code) is a rule change, rev + 1; a change that leaves a pattern's rules alone is not."""
    neutral = {p.id: Stamp(0, "", 0, NEUTRAL_DATE, NEUTRAL_DATE) for p in kb.patterns}
    parts: dict[str, list[str]] = {p.id: [] for p in kb.patterns}
    for target_plans in plans.values():
        for p in target_plans:
            parts[p.pattern.id].append(json.dumps(p.context if p.expressed else {"gap": p.reason}, sort_keys=True))
    for artifact in render_targets(plans, neutral, env, kb, TARGETS):
        if artifact.per_pattern:
            parts[artifact.patterns[0]].append(artifact.text)
            continue
        # One pass over the lines: a pattern id stands in a line as a whole run of [\w-] characters.
        wanted = set(artifact.patterns)
        hits: dict[str, list[str]] = {pid: [] for pid in wanted}
        for line in artifact.text.splitlines():
            for pid in wanted.intersection(TOKEN.findall(line)):
                hits[pid].append(re.sub(artifact.placement, "", line) if artifact.placement else line)
        for pid in artifact.patterns:
            parts[pid].append("\n".join(hits[pid]))
    return {pid: hashlib.sha256("\x00".join(texts).encode()).hexdigest() for pid, texts in parts.items()}


def coverage(plans: dict[str, list[Plan]], artifacts: list[Artifact], lock: Lock, kb: KnowledgeBase,
             targets: list[str]) -> list[dict]:
    by_pattern: dict[str, list[str]] = {}
    for artifact in artifacts:
        for pid in artifact.patterns:
            by_pattern.setdefault(pid, []).append(artifact.path)
    plan_of = {(target, p.pattern.id): p for target, target_plans in plans.items() for p in target_plans}
    rows = []
    for pattern in kb.patterns:
        locked = lock.patterns[pattern.id]
        row = {"id": pattern.id, "entry": pattern.entry_id, "sid": locked.sid, "uuid": locked.uuid,
               "rev": locked.rev, "severity": pattern.severity.value, "coverage": {}}
        for target in TARGETS:
            plan = plan_of[(target, pattern.id)]
            paths = sorted(a for a in by_pattern.get(pattern.id, []) if a.startswith(f"{target}/"))
            row["coverage"][target] = {
                "expressed": plan.expressed,
                "built": plan.expressed and target in targets,
                "reason": plan.reason,
                "artifacts": paths,
            }
        rows.append(row)
    return rows


class ValidationFailed(RulegenError):
    """The new output did not pass validation; out/ and the lock are unchanged (exit 1)."""

    def __init__(self, reports: list[FileReport]):
        self.reports = reports
        super().__init__("the new output failed validation; out/ is unchanged")


def _refuse_empty_targets(plans: dict[str, list[Plan]], selected: list[str]) -> None:
    """A target asked for by name that can express none of the patterns is bad input, not an empty file."""
    for target in selected:
        if not any(p.expressed for p in plans[target]):
            raise KnowledgeError([
                Problem(p.pattern.location.file, p.pattern.location.line, p.pattern.entry_id,
                        f"pattern {p.pattern.id}: target {target} cannot express it: {p.reason}")
                for p in plans[target]] or [Problem("<knowledge>", 0, None, "no patterns")])


def build(knowledge: Sequence[Path], templates_dir: Path, out_dir: Path, targets: Sequence[str],
          frozen: bool = False, validate: bool = True, save_lock: bool = True,
          targets_named: bool = False, policy: str | None = None) -> BuildResult:
    """Run the whole build. `targets_named`: the user chose the targets, so one that can express
    none of the patterns is an input error. `policy`: the firewall response for every pattern the
    firewalls express; the lock's fingerprints (so the revs) stay those of the knowledge's own responses.
    Nothing is written unless every step before writing succeeded: the new out/ is staged beside the
    old one, validated there, and only then swapped in."""
    kb = load_knowledge(knowledge)
    env = make_environment(templates_dir)
    plans = plan_all(kb, policy)
    selected = [t for t in TARGETS if t in targets]
    if targets_named:
        _refuse_empty_targets(plans, selected)
    lock_path = lock_path_for(knowledge)
    lock = Lock.load(lock_path)
    before = lock.dumps()
    try:
        # a deployment policy is no change to a rule: fingerprint what the knowledge itself says
        prints = fingerprints(plan_all(kb) if policy else plans, env, kb)
    except (jinja2.TemplateError, TypeError, ValueError, AttributeError) as exc:
        raise render_errors(exc, templates_dir) from None
    changes = lock.update([p.id for p in kb.patterns], prints, today())
    lock_text = lock.dumps()
    if frozen and lock_text != before:
        detail = ", ".join(f"{len(v)} {k}" for k, v in
                           (("added", changes.added), ("retired", changes.retired), ("revised", changes.revised)) if v)
        raise LockChangedError(f"{lock_path}: --frozen: the build would change the lock file ({detail or 'format'})")
    stamps = lock.stamps()
    try:
        artifacts = render_targets(plans, stamps, env, kb, selected)
    except (jinja2.TemplateError, TypeError, ValueError, AttributeError) as exc:
        raise render_errors(exc, templates_dir) from None
    rows = coverage(plans, artifacts, lock, kb, selected)
    files = {a.path: a.text for a in artifacts}
    files["manifest.json"] = manifest(artifacts, rows, selected, __version__)
    staging = stage(out_dir, files)
    reports: list[FileReport] = []
    try:
        if validate:
            reports = validation.validate([staging])
            if validation.problems(reports):
                raise ValidationFailed([_relocate(r, staging, out_dir) for r in reports])
        lock_written = False
        if save_lock and lock_text != before:  # reserve the IDs first: an out/ never carries SIDs the lock lacks
            try:
                write_file_atomic(lock_path, lock_text)
            except OSError as exc:
                raise RulegenError(f"{lock_path}: cannot write the lock file: {exc.strerror}") from None
            lock_written = True
    except BaseException:
        discard(staging)
        raise
    swap_in(staging, out_dir)
    reports = [_relocate(r, staging, out_dir) for r in reports]
    return BuildResult(kb, selected, artifacts, plans, changes, lock_path, lock_written, reports)


def _relocate(report: FileReport, staging: Path, out_dir: Path) -> FileReport:
    """Report paths as they are (or would be) under out/, not in the staging folder."""
    def moved(path: str) -> str:
        return str(out_dir / Path(path).relative_to(staging))

    findings = [Finding(moved(f.path), f.line, f.engine, f.message, f.severity, f.sid, f.entry)
                for f in report.findings]
    return FileReport(moved(report.path), report.format, report.checked_by, findings)
