"""`rulegen build`: knowledge -> model -> plan per target -> lock -> render -> out/ (one direction)."""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import json
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import jinja2
from jinja2.sandbox import SandboxedEnvironment

from rulegen import __version__, siem
from rulegen import validate as validation
from rulegen.errors import KnowledgeError, LockChangedError, Problem, RulegenError
from rulegen.ids import LOCK_NAME, Lock, LockChanges, LockSet, SidChange
from rulegen.knowledge import folder_of, is_pack, is_pack_tree, load_knowledge, pack_folders
from rulegen.model import KnowledgeBase, Response, site_pack
from rulegen.output import discard, manifest, stage, swap_in, write_file_atomic
from rulegen.render import make_environment, render_errors
from rulegen.report import REPORT_NAME, render_report
from rulegen.targets import (
    TARGETS,
    Artifact,
    Plan,
    Stamp,
    firewall,
    gap,
    iptables,
    nftables,
    pattern_lines,
    sigma,
    suricata,
)
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
    sid_changes: list[SidChange]
    lock_paths: list[Path]
    locks_written: list[Path]
    reports: list[FileReport]
    conversions: list[siem.Conversion] = field(default_factory=list)
    warnings: list[Problem] = field(default_factory=list)


def today() -> str:
    """The build date for new or revised rules; SOURCE_DATE_EPOCH pins it for reproducible builds."""
    epoch = os.environ.get("SOURCE_DATE_EPOCH")
    if epoch and epoch.isdigit():
        return dt.datetime.fromtimestamp(int(epoch), dt.UTC).date().isoformat()
    return dt.datetime.now(dt.UTC).date().isoformat()


def of_tree(root: Path) -> bool:
    """A root that belongs to a pack tree (rulegen's knowledge/ or a copy): the tree, its common.yaml or one of
    its packs; any other root is a site's."""
    folder = folder_of(Path(root))
    return is_pack_tree(folder) or (is_pack(folder) and is_pack_tree(folder.parent))


def locks_for(kb: KnowledgeBase, knowledge: Sequence[Path]) -> LockSet:
    """Packs alone: each pack's own lock in its folder records its own patterns, in its SID range. A site's
    folder last: its one lock records every pattern, adopting the SIDs of the locks beneath it (the packs', other
    sites'), and gives the site's own patterns SIDs in the site's range."""
    if all(of_tree(root) for root in knowledge):
        return LockSet([(Lock.load(Path(p.folder) / LOCK_NAME, p), frozenset({p.id})) for p in kb.packs])
    last = folder_of(Path(knowledge[-1]))
    if of_tree(last):
        raise KnowledgeError([Problem(str(knowledge[-1]), 0, None, "a site folder must come after the packs it "
                                                                   "builds on (-k @shipped -k site/): its lock adopts "
                                                                   "theirs")])
    mine = last.resolve()
    pack = next((p for p in kb.packs if Path(p.folder).resolve() == mine), None) or site_pack(str(mine), mine.name)
    upstream: dict[Path, None] = {}  # each lock once: a tree's common.yaml and its packs name the same ones
    for root in knowledge[:-1]:
        folder = folder_of(Path(root))
        upstream.update(dict.fromkeys(f / LOCK_NAME for f in (pack_folders(folder) if is_pack_tree(folder)
                                                               else [folder])))
    return LockSet([(Lock.load(last / LOCK_NAME, pack, list(upstream)), None)])


def plan_all(kb: KnowledgeBase, policy: str | None = None) -> dict[str, list[Plan]]:
    """Every target's plan for every pattern; a gap the knowledge declares wins over the target's own say.
    `policy` (log, drop, reject) replaces the response the firewall targets see (firewall.with_policy)."""
    views = {name: firewall.with_policy(kb, policy) if name in FIREWALLS else kb for name in TARGETS}
    plans = {name: [gap(p, p.declared_gap(name)) if p.declared_gap(name) else MODULES[name].plan(p, views[name])
                    for p in views[name].patterns] for name in TARGETS}
    for name in FIREWALLS:
        plans[name] = [_unenforced(plan, name) for plan in plans[name]]
    return plans


def _unenforced(plan: Plan, target: str) -> Plan:
    """A firewall gap for a pattern whose response asks the firewall to act is a warning, not a silent gap: the
    knowledge expects packets logged, dropped or rejected that this firewall will let through unseen."""
    response = plan.pattern.response
    if plan.expressed or response is Response.ALERT:
        return plan
    return dataclasses.replace(plan, warning=(
        f"pattern {plan.pattern.id} asks for response {response.value}, but {target} cannot enforce it "
        f"({plan.reason}); only the alerting targets see it"))


def warnings(plans: dict[str, list[Plan]], targets: Sequence[str]) -> list[Problem]:
    """The selected targets' warnings, each at the pattern's place in the knowledge."""
    return [Problem(p.pattern.location.file, p.pattern.location.line, p.pattern.entry_id, p.warning)
            for target in targets for p in plans[target] if p.warning]


NEUTRAL_DATE = "1970-01-01"


def render_targets(plans: dict[str, list[Plan]], stamps: dict[str, Stamp], env: SandboxedEnvironment,
                   kb: KnowledgeBase, targets: Sequence[str],
                   deploy: firewall.Deploy = firewall.DEFAULT_DEPLOY) -> list[Artifact]:
    """The selected targets' files; `deploy` places the firewall targets' hooks (no pattern's rules change)."""
    return [artifact for target in targets
            for artifact in MODULES[target].render([p for p in plans[target] if p.expressed], stamps, env, kb,
                                                   **({"deploy": deploy} if target in FIREWALLS else {}))]


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
        for pid, lines in pattern_lines(artifact).items():
            if artifact.placement:
                lines = [re.sub(artifact.placement, "", line) for line in lines]
            parts[pid].append("\n".join(lines))
    return {pid: hashlib.sha256("\x00".join(texts).encode()).hexdigest() for pid, texts in parts.items()}


def coverage(plans: dict[str, list[Plan]], artifacts: list[Artifact], lock: LockSet, kb: KnowledgeBase,
             targets: list[str]) -> list[dict]:
    by_pattern: dict[str, list[str]] = {}
    for artifact in artifacts:
        for pid in artifact.patterns:
            by_pattern.setdefault(pid, []).append(artifact.path)
    plan_of = {(target, p.pattern.id): p for target, target_plans in plans.items() for p in target_plans}
    rows = []
    locks = lock.patterns
    for pattern in kb.patterns:
        locked = locks[pattern.id]
        row = {"id": pattern.id, "entry": pattern.entry_id, "pack": kb.pack_of(pattern).id, "sid": locked.sid,
               "uuid": locked.uuid,
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
            if plan.warning:
                row["coverage"][target]["warning"] = plan.warning
        if pattern.override:
            row["override"] = str(pattern.override)
        rows.append(row)
    for pattern in kb.disabled:
        locked = locks.get(pattern.id)
        reason = f"pattern {pattern.override}"
        rows.append({"id": pattern.id, "entry": pattern.entry_id, "pack": kb.pack_of(pattern).id,
                     "sid": locked.sid if locked else None,
                     "uuid": locked.uuid if locked else None, "rev": locked.rev if locked else None,
                     "severity": pattern.severity.value, "override": str(pattern.override),
                     "coverage": {t: {"expressed": False, "built": False, "reason": reason, "artifacts": []}
                                  for t in TARGETS}})
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


@dataclass
class Compiled:
    """The build up to the files: every target's plan, the lock brought up to date in memory, the rendered
    artifacts of the selected targets and the coverage rows. Nothing is written."""

    kb: KnowledgeBase
    targets: list[str]
    plans: dict[str, list[Plan]]
    lock: LockSet
    changes: LockChanges
    artifacts: list[Artifact]
    rows: list[dict]
    env: SandboxedEnvironment
    firewall: dict | None = None  # how the firewall targets were built (policy, wan_if, hook, log); None: not built


def compile_rules(knowledge: Sequence[Path], templates_dir: Path, targets: Sequence[str],
                  targets_named: bool = False, policy: str | None = None,
                  deploy: firewall.Deploy = firewall.DEFAULT_DEPLOY) -> Compiled:
    """Knowledge -> plans -> lock (in memory: a new pattern gets the SID a build would reserve) -> rules.
    `policy`: the firewall response for every pattern the firewalls express; the lock's fingerprints (so
    the revs) stay those of the knowledge's own responses. `deploy`: where the firewall hooks sit, also
    outside the fingerprints."""
    kb = load_knowledge(knowledge)
    env = make_environment(templates_dir)
    plans = plan_all(kb, policy)
    selected = [t for t in TARGETS if t in targets]
    if targets_named:
        _refuse_empty_targets(plans, selected)
    lock = locks_for(kb, knowledge)
    try:
        # a deployment policy is no change to a rule: fingerprint what the knowledge itself says
        prints = fingerprints(plan_all(kb) if policy else plans, env, kb)
        changes = lock.update([(p.id, kb.pack_of(p).id) for p in kb.patterns], prints, today(),
                              [(p.id, kb.pack_of(p).id) for p in kb.disabled])
        artifacts = render_targets(plans, lock.stamps(), env, kb, selected, deploy)
    except (jinja2.TemplateError, TypeError, ValueError, AttributeError) as exc:
        raise render_errors(exc, templates_dir) from None
    rows = coverage(plans, artifacts, lock, kb, selected)
    recorded = {"policy": policy, **deploy.record()} if set(selected) & set(FIREWALLS) else None
    return Compiled(kb, selected, plans, lock, changes, artifacts, rows, env, recorded)


def build(knowledge: Sequence[Path], templates_dir: Path, out_dir: Path, targets: Sequence[str],
          frozen: bool = False, validate: bool = True, save_lock: bool = True,
          targets_named: bool = False, siem_backends: Sequence[str] = (), policy: str | None = None,
          deploy: firewall.Deploy = firewall.DEFAULT_DEPLOY) -> BuildResult:
    """Run the whole build. `targets_named`: the user chose the targets, so one that can express
    none of the patterns is an input error. Nothing is written unless every step before writing succeeded:
    the new out/ is staged beside the old one, validated there, and only then swapped in. `siem_backends`: also
    convert the Sigma rules into out/siem/<backend>/. `policy`, `deploy`: see compile_rules."""
    if siem_backends and "sigma" not in targets:
        raise siem.SiemInputError("--siem converts the Sigma rules: build the sigma target too (-t sigma)")
    compiled = compile_rules(knowledge, templates_dir, targets, targets_named, policy, deploy)
    lock, changes, artifacts = compiled.lock, compiled.changes, compiled.artifacts
    changed_locks = lock.changed()
    if frozen and changed_locks:
        detail = ", ".join(f"{len(v)} {k}" for k, v in (
            ("added", changes.added), ("adopted", changes.adopted), ("retired", changes.retired),
            ("revised", changes.revised)) if v)
        paths = ", ".join(str(changed.path) for changed in changed_locks)
        raise LockChangedError(f"{paths}: --frozen: the build would change the lock file ({detail or 'format'})")
    try:
        conversions, siem_files = siem.convert_artifacts(artifacts, siem_backends, compiled.env)
    except (jinja2.TemplateError, TypeError, ValueError, AttributeError) as exc:
        raise render_errors(exc, templates_dir) from None
    report = Artifact(REPORT_NAME, render_report(compiled, templates_dir), sorted(p.id for p in compiled.kb.patterns))
    artifacts = [*artifacts, *siem_files, report]
    files = {a.path: a.content for a in artifacts}
    siem_summary = {c.backend: c.summary("sigma/", "siem/") for c in conversions}
    files["manifest.json"] = manifest(artifacts, compiled.rows, compiled.targets, __version__,
                                      siem=siem_summary or None, firewall=compiled.firewall).encode()
    staging = stage(out_dir, files)
    reports: list[FileReport] = []
    try:
        if validate:
            reports = validation.validate([staging], home=compiled.kb.home.addresses)
            if validation.problems(reports):
                raise ValidationFailed([_relocate(r, staging, out_dir) for r in reports])
        written = []
        for changed in changed_locks if save_lock else []:  # reserve the IDs first: out/ never has SIDs a lock lacks
            try:
                write_file_atomic(changed.path, changed.dumps())
            except OSError as exc:
                raise RulegenError(f"{changed.path}: cannot write the lock file: {exc.strerror}") from None
            written.append(changed.path)
    except BaseException:
        discard(staging)
        raise
    swap_in(staging, out_dir)
    reports = [_relocate(r, staging, out_dir) for r in reports]
    return BuildResult(compiled.kb, compiled.targets, artifacts, compiled.plans, changes, lock.sid_changes(),
                       lock.paths, written, reports, conversions,
                       [*compiled.kb.warnings, *warnings(compiled.plans, compiled.targets)])


def _relocate(report: FileReport, staging: Path, out_dir: Path) -> FileReport:
    """Report paths as they are (or would be) under out/, not in the staging folder."""
    def moved(path: str) -> str:
        return str(out_dir / Path(path).relative_to(staging))

    findings = [Finding(moved(f.path), f.line, f.engine, f.message, f.severity, f.sid, f.entry)
                for f in report.findings]
    return FileReport(moved(report.path), report.format, report.checked_by, findings)
