"""The knowledge as people read it: entries, their patterns, and the exact lines each target generates.

A query layer over a build compiled in memory (`build.compile_rules`); it writes nothing. `rulegen list`,
`show` and `coverage` print what it returns, and the HTML report is rendered from it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from rulegen import attack
from rulegen.model import Entry, KnowledgeBase, Pattern, PortRange
from rulegen.targets import TARGETS, Artifact, Plan, pattern_lines

if TYPE_CHECKING:
    from rulegen.build import Compiled


class UnknownSubject(LookupError):
    """`show` was given something that is neither a port, an entry id nor a pattern id."""


@dataclass(frozen=True)
class RuleLines:
    """The lines of one generated file that belong to a pattern (a whole file for a Sigma rule)."""

    path: str  # relative to out/
    lines: tuple[str, ...]


@dataclass(frozen=True)
class Cell:
    """One pattern in one target: expressed with its rules, or a gap and why."""

    target: str
    expressed: bool
    reason: str | None
    rules: tuple[RuleLines, ...]
    warning: str | None = None  # the knowledge asks this target for what it cannot enforce


@dataclass(frozen=True)
class PatternView:
    id: str
    entry: str
    title: str
    category: str
    severity: str
    transport: str
    direction: str
    src_ports: str
    dst_ports: str
    tactic: str | None  # e.g. "command-and-control (TA0011)"
    technique: str | None  # e.g. "T1219 Remote Access Tools"
    sid: int
    rev: int
    uuid: str
    new: bool  # not in the lock yet: the SID is the one the next build reserves (show says so; the report,
    # written with the lock, does not)
    false_positives: str
    cells: tuple[Cell, ...]
    override: str | None = None  # a site's override of this pattern: what, where and why


@dataclass(frozen=True)
class EntryView:
    id: str
    pack: str  # the pack (or site folder) it comes from
    title: str
    table: str  # destination | source
    ports: str
    protocols: tuple[str, ...]
    service: str
    port_class: str
    tags: tuple[str, ...]
    description: dict[str, str]  # language -> text
    references: tuple[str, ...]
    patterns: tuple[PatternView, ...]

    @property
    def targets(self) -> tuple[str, ...]:
        """Targets that express at least one of the entry's patterns."""
        return tuple(t for t in TARGETS if any(c.expressed for p in self.patterns for c in p.cells if c.target == t))


def ports_text(ports: tuple[PortRange, ...]) -> str:
    return ",".join(str(p) for p in ports)


def lines_by_pattern(artifacts: list[Artifact]) -> dict[str, list[RuleLines]]:
    """pattern id -> its lines per file: a per-pattern file whole, else the lines naming the pattern id."""
    found: dict[str, list[RuleLines]] = {}
    for artifact in artifacts:
        for pid, lines in pattern_lines(artifact).items():
            if lines:
                found.setdefault(pid, []).append(RuleLines(artifact.path, tuple(lines)))
    return found


def _pattern_view(pattern: Pattern, compiled: Compiled, plans: dict[tuple[str, str], Plan],
                  rules: dict[str, list[RuleLines]]) -> PatternView:
    locked = compiled.lock.patterns[pattern.id]
    cells = []
    for target in TARGETS:
        plan = plans[(target, pattern.id)]
        mine = tuple(r for r in rules.get(pattern.id, []) if r.path.startswith(f"{target}/"))
        cells.append(Cell(target, plan.expressed, plan.reason, mine, plan.warning))
    tactic = technique = None
    if pattern.attack:
        tactic = f"{pattern.attack.tactic} ({attack.tactics()[pattern.attack.tactic].id})"
        technique = f"{pattern.attack.technique} {attack.techniques()[pattern.attack.technique].name}"
    return PatternView(
        id=pattern.id, entry=pattern.entry_id, title=pattern.title, category=pattern.category,
        severity=pattern.severity.value, transport=pattern.transport, direction=pattern.direction.value,
        src_ports=ports_text(pattern.src_ports) or "any", dst_ports=ports_text(pattern.dst_ports) or "any",
        tactic=tactic, technique=technique, sid=locked.sid, rev=locked.rev, uuid=locked.uuid,
        new=pattern.id in compiled.changes.added, false_positives=pattern.false_positives, cells=tuple(cells),
        override=str(pattern.override) if pattern.override else None)


def describe(compiled: Compiled) -> list[EntryView]:
    """Every entry of the knowledge, in knowledge order, with its patterns and their rules."""
    rules = lines_by_pattern(compiled.artifacts)
    plans = {(target, plan.pattern.id): plan for target, target_plans in compiled.plans.items()
             for plan in target_plans}
    return [EntryView(
        id=e.id, pack=e.pack, title=e.title, table=e.table, ports=ports_text(e.ports), protocols=e.protocols,
        service=e.service, port_class=e.port_class, tags=e.tags,
        description={"en": e.description_en, "zh": e.description_zh}, references=e.references,
        patterns=tuple(_pattern_view(p, compiled, plans, rules) for p in e.patterns))
        for e in compiled.kb.entries]


def covers(entry: Entry, port: int) -> bool:
    return any(r.low <= port <= r.high for r in entry.ports)


def select(kb: KnowledgeBase, entries: list[EntryView], port: int | None = None, port_class: str | None = None,
           proto: str | None = None, tag: str | None = None) -> list[EntryView]:
    """Entries matching every filter given (AND)."""
    return [view for view in entries if
            (port is None or covers(kb.entry(view.id), port))
            and (port_class is None or view.port_class == port_class)
            and (proto is None or proto in view.protocols)
            and (tag is None or tag in view.tags)]


def find(kb: KnowledgeBase, entries: list[EntryView], subject: str) -> tuple[list[EntryView], str | None]:
    """What `show` shows: all entries covering a port number, one entry by id, or the entry of a pattern id
    (then also that pattern's id, so only it is shown)."""
    if subject.isdigit():
        if int(subject) > 65535:
            raise UnknownSubject(f"{subject} is not a port number (0-65535)")
        chosen = select(kb, entries, port=int(subject))
        if chosen:
            return chosen, None
        raise UnknownSubject(f"no entry covers port {int(subject)}")
    for view in entries:
        if view.id == subject:
            return [view], None
        if any(p.id == subject for p in view.patterns):
            return [view], subject
    raise UnknownSubject(f"{subject!r} is neither a port number, an entry id nor a pattern id")


def coverage_rows(entries: list[EntryView]) -> list[dict]:
    """One row per pattern and target: expressed or not, why not, and the files it is in."""
    return [{"pattern": p.id, "entry": p.entry, "pack": e.pack, "target": c.target, "expressed": c.expressed,
             "reason": c.reason, "warning": c.warning, "files": [r.path for r in c.rules]}
            for e in entries for p in e.patterns for c in p.cells]
