"""The Sigma rules, converted for each log producer: pySigma-backend-sqlite with the producer's pipeline.

For a producer, each rule is one of:
- a detection: its own alert; the WHERE clause of its SQLite query runs over every batch of events;
- a correlation base: referenced by a correlation and not `generate: true`, so it raises nothing alone; its
  WHERE clause picks the events the correlation windows keep;
- a correlation: the backend's correlation plan (value_count / event_count / temporal over group-by in a sliding
  timespan: the SQL stages its `zircolite` output format gives, run by its runtime with indexes), over the kept
  events;
- not applicable: the pipeline or the backend refused it (a log source or field the producer does not carry),
  with the reason.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from rulegen.errors import RulegenError
from rulegen.hunt.formats import Producer

PIPELINES = Path(__file__).resolve().parent.parent / "data" / "pipelines"
BATCH = "batch"  # the table of the current batch of events
HELD = "held"  # the events the correlation windows still hold
TIME = "_ts"  # epoch seconds of an event, in both tables
LEVELS = ("informational", "low", "medium", "high", "critical")


class RuleInputError(RulegenError):
    """A rule folder is missing or holds a rule pySigma cannot load: exit 2."""

    exit_code = 2


@dataclass(frozen=True)
class RuleInfo:
    id: str
    title: str
    level: str
    tags: tuple[str, ...]
    path: str
    correlation: bool = False
    logsource: tuple[str, str, str] = ("", "", "")  # (category, product, service)
    fields: tuple[str, ...] = ()  # the producer's fields the rule reads (a correlation: its base rules' too)


@dataclass
class Correlation:
    info: RuleInfo
    plan: dict[str, Any]  # the backend's correlation plan: its SQL stages, materialised with indexes when run
    timespan: float  # seconds
    bases: list[str]  # WHERE clauses of the rules it references
    distinct: list[str] | None = None  # value_count: the group-by fields and the counted field


@dataclass
class Plan:
    """What one producer's events are matched against."""

    producer: Producer
    detections: list[tuple[RuleInfo, str]] = field(default_factory=list)  # (rule, WHERE clause over BATCH)
    bases: list[str] = field(default_factory=list)  # WHERE clauses of correlation base rules
    correlations: list[Correlation] = field(default_factory=list)
    columns: set[str] = field(default_factory=set)  # the producer's fields the rules read
    not_applicable: dict[str, tuple[RuleInfo, str]] = field(default_factory=dict)  # rule path -> (rule, why)

    @property
    def window(self) -> float:
        return max((c.timespan for c in self.correlations), default=0.0)


def rule_paths(folders: list[Path]) -> list[Path]:
    paths: list[Path] = []
    for folder in folders:
        if folder.is_file():
            paths.append(folder)
            continue
        if not folder.is_dir():
            raise RuleInputError(f"{folder}: no such folder of Sigma rules")
        paths += sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in (".yml", ".yaml"))
    if not paths:
        raise RuleInputError(f"{', '.join(map(str, folders))}: no Sigma rules (*.yml, *.yaml)")
    return paths


def _load(paths: list[Path]) -> Any:
    from sigma.collection import SigmaCollection
    from sigma.exceptions import SigmaError

    try:
        return SigmaCollection.load_ruleset(paths)
    except SigmaError as exc:
        raise RuleInputError(f"a Sigma rule does not load: {exc}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise RuleInputError(f"cannot read a Sigma rule: {exc}") from None


def _info(rule: Any) -> RuleInfo:
    from sigma.correlations import SigmaCorrelationRule

    level = rule.level.name.lower() if getattr(rule, "level", None) else "medium"
    source = getattr(rule, "logsource", None)
    logsource = tuple(str(getattr(source, k, None) or "") for k in ("category", "product", "service"))
    return RuleInfo(str(rule.id or rule.title), rule.title, level, tuple(str(t) for t in rule.tags or ()),
                    str(rule.source.path) if rule.source else "", isinstance(rule, SigmaCorrelationRule),
                    logsource)  # type: ignore[arg-type]


def _where(query: str) -> str:
    head = f"SELECT * FROM {BATCH} WHERE "
    if not query.startswith(head):
        raise ValueError(f"unexpected query shape: {query[:80]}")
    return query[len(head):]


def plan(paths: list[Path], producer: Producer) -> Plan:
    """Convert every rule for one producer. The rules are loaded afresh: pipelines change the rules they process."""
    from sigma.backends.sqlite import sqliteBackend
    from sigma.correlations import SigmaCorrelationRule
    from sigma.exceptions import SigmaError
    from sigma.processing.pipeline import ProcessingPipeline

    pipeline_text = (PIPELINES / producer.pipeline).read_text(encoding="utf-8")
    result = Plan(producer)
    options = {"timestamp_field": TIME, "timestamp_format": "unix"}
    # Every rule alone: its WHERE clause (correlations and their references left out).
    alone = _load(paths)
    plain_backend = sqliteBackend(ProcessingPipeline.from_yaml(pipeline_text), table=BATCH, **options)
    where: dict[str, str] = {}
    reads: dict[str, tuple[str, ...]] = {}  # rule path -> the fields it reads
    for rule in alone.rules:
        if isinstance(rule, SigmaCorrelationRule):
            continue
        rule._backreferences = []  # alone: no correlation holds it back from a query of its own  # noqa: SLF001
        rule._output = True  # noqa: SLF001
        info = _info(rule)
        try:
            queries = plain_backend.convert_rule(rule)
            where[info.path] = " OR ".join(f"({_where(q)})" for q in queries)
            reads[info.path] = tuple(plain_backend.required_fields(rule))
            result.columns |= set(reads[info.path])
        except (SigmaError, ValueError, NotImplementedError) as exc:
            result.not_applicable[info.path] = (info, _reason(exc))
    # The whole collection: which rules raise alerts of their own, and the correlations' SQL over HELD.
    full = _load(paths)
    held_backend = sqliteBackend(ProcessingPipeline.from_yaml(pipeline_text), table=HELD, **options)
    ordered = sorted(full.rules, key=lambda r: isinstance(r, SigmaCorrelationRule))  # bases before correlations
    for rule in ordered:
        info = _info(rule)
        if info.path in result.not_applicable:
            continue
        try:
            queries = (held_backend.convert_correlation_rule(rule, output_format="zircolite") if info.correlation
                       else held_backend.convert_rule(rule))
        except (SigmaError, ValueError, NotImplementedError) as exc:
            result.not_applicable[info.path] = (info, _reason(exc))
            continue
        if not info.correlation:
            if rule._output:  # noqa: SLF001 - pySigma: False when only a correlation uses the rule
                result.detections.append((replace(info, fields=reads[info.path]), where[info.path]))
            continue
        referenced = [str(ref.rule.source.path) for ref in rule.rules
                      if getattr(ref, "rule", None) is not None and ref.rule.source
                      and str(ref.rule.source.path) in where]
        bases = [where[path] for path in referenced]
        result.bases += bases
        group = [str(f) for f in (rule.group_by or [])]
        fields = rule.condition.fieldref if rule.condition else None
        counted = [str(f) for f in (fields if isinstance(fields, list) else [fields] if fields else [])]
        result.columns |= set(group) | set(counted)
        distinct = group + counted if rule.type.name.lower() == "value_count" and counted and not rule.aliases \
            else None
        span = rule.timespan.seconds if rule.timespan else 0
        base_info = next((_info(ref.rule) for ref in rule.rules if getattr(ref, "rule", None) is not None), info)
        info = replace(info, logsource=base_info.logsource,
                       fields=tuple(dict.fromkeys([f for p in referenced for f in reads[p]] + group + counted)))
        result.correlations += [Correlation(info, q["correlation_plan"], float(span), bases, distinct)
                                for q in queries]
    return result


def _reason(exc: Exception) -> str:
    """pySigma's message without the rule object or file it appends."""
    text = str(exc).split(" in /", 1)[0].split(" in rule SigmaRule(", 1)[0]
    return " ".join(text.split())[:300]
