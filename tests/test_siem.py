"""SIEM queries: `rulegen build --siem` and `rulegen convert` turn the Sigma output into Splunk saved searches and
Kibana detection rules (Lucene, ES|QL) through rulegen's own pipelines, in the field names of the target schema."""

from __future__ import annotations

import configparser
import hashlib
import itertools
import json
import re
import shutil
from pathlib import Path

import jsonschema
import pytest
import yaml
from conftest import copy_knowledge, run_rulegen
from luqum.parser import parser as lucene_parser
from luqum.tree import SearchField

from rulegen import siem
from rulegen.knowledge import default_knowledge_dir, load_knowledge
from rulegen.severity import SEVERITY
from rulegen.targets import sigma as sigma_target

KB = load_knowledge([default_knowledge_dir()])
PLANS = [sigma_target.plan(p, KB) for p in KB.patterns]
# Every Sigma file the knowledge gives: (file, the correlation file that counts it or None, log source)
RULES = {p.context["file"].removeprefix("sigma/"): p for p in PLANS if p.expressed}
CORRELATIONS = {p.context["correlation"]["file"].removeprefix("sigma/"): p for p in PLANS
                if p.expressed and p.context["correlation"]}
BASE_RULES = {p.context["file"].removeprefix("sigma/") for p in CORRELATIONS.values()}
ALL_FILES = sorted(RULES) + sorted(CORRELATIONS)
# What each backend should give: a base rule lives inside its correlation rule's query (Splunk, ES|QL) or Kibana
# threshold rule (Lucene), with no alert of its own.
EXPECTED = {name: sorted(set(ALL_FILES) - BASE_RULES) for name in ("splunk", "lucene", "esql")}
SUFFIX = {name: b.query_suffix for name, b in siem.BACKENDS.items()}


@pytest.fixture(scope="module")
def siem_build(tmp_path_factory) -> tuple[Path, str]:
    """out/ built from a copy of the shipped knowledge with all three SIEM backends (lock frozen)."""
    root = tmp_path_factory.mktemp("siem")
    knowledge = copy_knowledge(root / "knowledge")
    result = run_rulegen("build", "--frozen", "--knowledge", str(knowledge), "--out", str(root / "out"),
                         "--siem", "splunk,lucene", "--siem", "esql")
    assert result.returncode == 0, result.stderr
    return root / "out", result.stdout


def _logsource(sigma_file: str) -> str:
    """firewall, dns or zeek: the log source of a Sigma file (a correlation rule's is its base rule's)."""
    plan = RULES.get(sigma_file) or CORRELATIONS[sigma_file]
    logsource = {item["key"]: item["value"] for item in plan.context["logsource"]}
    return "zeek" if logsource.get("product") == "zeek" else logsource["category"]


def _schema_fields(backend: str, logsource: str) -> tuple[set[str], set[str]]:
    """From the pipeline YAML: the field names a query of this log source may use, and the Sigma names it renames."""
    pipeline = yaml.safe_load(siem.pipeline_text(backend))
    wanted = {"firewall": {"category": "firewall"}, "dns": {"category": "dns"}, "zeek": {"product": "zeek"}}[logsource]
    allowed, renamed, known, prefixes = set(), set(), set(), set()
    for item in pipeline["transformations"]:
        conditions = [c for c in item.get("rule_conditions", []) if c["type"] == "logsource"]
        if item.get("rule_cond_not") or not any(all(c.get(k) == v for k, v in wanted.items()) for c in conditions):
            continue
        if item["type"] == "field_name_mapping":
            allowed |= set(item["mapping"].values())
            renamed |= {k for k, v in item["mapping"].items() if k != v}
        elif item["type"] == "add_condition":
            allowed |= {key.split("|")[0] for key in item["conditions"]}
        elif item["type"] == "detection_item_failure":
            known |= set(item["field_name_conditions"][0]["fields"])
        elif item["type"] == "field_name_prefix":  # ECS: the Zeek fields without an ECS name, under zeek.<log>.
            prefixes.add(item["prefix"])
    if prefixes:  # every known field is renamed: by a mapping or by its log's prefix
        return allowed | {p + f for p in prefixes for f in known - renamed}, (renamed | known) - allowed
    return allowed | (known - renamed), renamed - allowed


# Names the backends' correlation queries add: Splunk's time bins, ES|QL's bucket, both the count's alias.
AGGREGATION_NAMES = {"splunk": {"_time", "value_count"}, "esql": {"timebucket", "value_count"},
                     "lucene": set()}


def _query_fields(backend: str, query: str) -> set[str]:
    """The field names a query uses: Lucene by its parse tree, SPL and ES|QL by their comparison and
    aggregation syntax."""
    if backend == "lucene":
        def walk(node):
            if isinstance(node, SearchField):
                yield node.name
            for child in node.children:
                yield from walk(child)
        return set(walk(lucene_parser.parse(query)))
    tokens = re.findall(r'"(?:[^"\\]|\\.)*"|==|!=|>=|<=|[=<>(),|]|[^\s"=<>(),|]+', query)
    fields = set()
    for i, token in enumerate(tokens):
        operator = token in ("==", "!=", ">=", "<=", "=", ">", "<", "IN", "in")
        if operator and tokens[i - 1] != "span":  # span=60s: an option of Splunk's bin command
            fields.add(tokens[i - 1].strip('"'))
        elif token == "(" and tokens[i - 1] in ("cidr_match", "ends_with", "starts_with", "dc", "count_distinct"):
            fields.add(tokens[i + 1])
        elif token == "by":
            fields |= set(itertools.takewhile(lambda t: t != "|", tokens[i + 1:])) - {","}
    return fields


def _queries(out: Path, backend: str) -> dict[str, str]:
    folder = out / "siem" / backend / "queries"
    return {p.relative_to(folder).with_suffix(".yml").as_posix(): p.read_text()
            for p in sorted(folder.rglob("*")) if p.is_file()}


# --- what the build writes -----------------------------------------------------------------------------------------

@pytest.mark.parametrize("backend", list(siem.BACKENDS))
def test_every_rule_converts_for_each_backend(siem_build, backend):
    out, _ = siem_build
    assert sorted(_queries(out, backend)) == EXPECTED[backend]
    manifest = json.loads((out / "manifest.json").read_text())["siem"][backend]
    assert manifest["queries"] == len(EXPECTED[backend])
    assert manifest["skipped"] == []
    assert sorted(manifest["embedded"]) == sorted(f"sigma/{f}" for f in BASE_RULES)


def test_the_build_summary_counts_the_base_rules_inside_their_correlations(siem_build):
    _, stdout = siem_build
    assert CORRELATIONS, "the knowledge has scan patterns, so there are correlation rules"
    for backend, files in EXPECTED.items():
        assert re.search(rf"siem\s+{backend}\s+{len(files)} queries \({len(BASE_RULES)} base rule\(s\) inside their "
                         r"correlation rule\), 0 skipped", stdout), stdout


@pytest.mark.parametrize("backend, sigma_file",
                         [(backend, f) for backend in siem.BACKENDS for f in ALL_FILES if f in EXPECTED[backend]])
def test_queries_use_only_the_target_schema_field_names(siem_build, backend, sigma_file):
    """Every query a backend gives (a base rule inside its correlation rule has none of its own: count test)."""
    out, _ = siem_build
    query = _queries(out, backend)[sigma_file]
    allowed, renamed = _schema_fields(backend, _logsource(sigma_file))
    used = _query_fields(backend, query)
    assert used, query
    assert used <= allowed | AGGREGATION_NAMES[backend], f"{used - allowed} in {query}"
    assert not used & renamed, f"raw Sigma field names {used & renamed} in {query}"


def test_queries_in_each_schema(siem_build):
    """One rule per log source, read by a person: the names and scopes each pipeline gives."""
    out, _ = siem_build
    spl, lucene, esql = (_queries(out, b) for b in ("splunk", "lucene", "esql"))
    assert spl["net_firewall_ssh_probe.yml"].startswith('tag="network" tag="communicate" transport="tcp" dest_port=22 ')
    # an inbound DNS or Zeek rule reads its direction on the record's source address, as the firewall rules do
    assert spl["net_dns_dns_axfr.yml"].startswith('tag="network" tag="resolution" tag="dns" '
                                                  'record_type IN ("AXFR", "252") NOT (src="10.0.0.0/8" OR ')
    assert spl["zeek_dhcp_dhcp_rogue_offer.yml"].startswith('sourcetype="bro:dhcp:json" "msg_types{}"="OFFER"')
    assert lucene["net_firewall_ssh_probe.yml"].startswith("network.transport:tcp AND destination.port:22 AND ")
    assert lucene["net_dns_dns_axfr.yml"].startswith(
        r"(dns.question.type:(AXFR OR 252)) AND (NOT (source.ip:10.0.0.0\/8 OR ")
    assert lucene["zeek_ftp_ftp_anonymous_login.yml"].startswith(
        r"event.dataset:zeek.ftp AND (user.name:anonymous AND (NOT (source.ip:10.0.0.0\/8 OR ")
    # ECS types destination.ip as ip, which takes no wildcard: a broadcast match goes to destination.address
    assert "destination.address:*.255" in lucene["net_firewall_chargen_udp_broadcast.yml"]
    assert 'ends_with(destination.address, ".255")' in esql["net_firewall_chargen_udp_broadcast.yml"]
    assert esql["net_dns_dns_axfr.yml"].startswith(
        'from logs-*,filebeat-* metadata _id, _index, _version '
        '| where (dns.question.type in ("AXFR", "252")) and not (cidr_match(source.ip, ')
    assert "| stats dc(dest_port) as value_count by _time src_ip" in spl["correlations/correlation_imap_port_sweep.yml"]
    assert ("stats value_count=count_distinct(destination.port) by timebucket, source.ip"
            in esql["correlations/correlation_imap_port_sweep.yml"])


@pytest.mark.parametrize("sigma_file", EXPECTED["lucene"])
def test_lucene_queries_parse(siem_build, sigma_file):
    out, _ = siem_build
    tree = lucene_parser.parse(_queries(out, "lucene")[sigma_file])
    assert str(tree).strip()


def test_savedsearches_conf_has_a_stanza_per_rule(siem_build):
    out, _ = siem_build
    conf = configparser.ConfigParser(interpolation=None, strict=True)  # strict: a repeated stanza or key fails
    conf.read_string((out / "siem" / "splunk" / "savedsearches.conf").read_text())
    assert len(conf.sections()) == len(EXPECTED["splunk"])
    queries = _queries(out, "splunk")
    searches = {conf[s]["search"]: s for s in conf.sections()}
    for sigma_file, query in queries.items():
        stanza = conf[searches[" ".join(query.splitlines())]]
        plan = RULES.get(sigma_file) or CORRELATIONS[sigma_file]
        informational = plan.context["level"] == "informational"
        assert stanza["enablesched"] == ("0" if informational else "1"), sigma_file
        assert stanza["alert.severity"] == str(siem.SPLUNK_SEVERITY[plan.context["level"]])
        assert stanza["cron_schedule"] and stanza["dispatch.earliest_time"] and stanza["description"]


@pytest.mark.parametrize("backend", ["lucene", "esql"])
def test_ndjson_lines_are_detection_rules_with_the_query_and_rule_id(siem_build, backend):
    out, _ = siem_build
    lines = (out / "siem" / backend / "rules.ndjson").read_text().splitlines()
    rules = [json.loads(line) for line in lines]
    assert len(rules) == len(EXPECTED[backend])
    queries = _queries(out, backend)
    for sigma_file, rule in zip(EXPECTED[backend], rules, strict=True):
        text = (out / "sigma" / sigma_file).read_text()
        sigma_rule = yaml.safe_load(text)
        assert rule["rule_id"] == sigma_rule["id"]
        assert rule["query"] == queries[sigma_file].rstrip("\n")
        assert rule["type"] == ("esql" if backend == "esql" else "threshold" if sigma_file in CORRELATIONS else "query")
        assert rule["language"] == backend
        assert rule["enabled"] is (sigma_rule["level"] != "informational")
        assert rule["severity"] in ("low", "medium", "high", "critical")  # Kibana has no informational
        if any(t.startswith("attack.t") for t in sigma_rule.get("tags", [])):
            assert rule["threat"], f"{sigma_file}: its ATT&CK technique is in the Kibana rule"


def test_manifest_lists_the_siem_files_with_their_patterns(siem_build):
    out, _ = siem_build
    manifest = json.loads((out / "manifest.json").read_text())
    listed = {a["path"]: a for a in manifest["artifacts"] if a["path"].startswith("siem/")}
    on_disk = {p.relative_to(out).as_posix() for p in (out / "siem").rglob("*") if p.is_file()}
    assert set(listed) == on_disk
    for path, artifact in listed.items():
        assert artifact["sha256"] == hashlib.sha256((out / path).read_bytes()).hexdigest()
    ssh = listed["siem/esql/queries/net_firewall_ssh_probe.esql"]
    assert ssh["patterns"] == [RULES["net_firewall_ssh_probe.yml"].pattern.id]


def test_validate_skips_the_siem_files(siem_build):
    out, _ = siem_build
    result = run_rulegen("validate", "--json", "--no-lint", str(out))
    assert result.returncode == 0, result.stdout[-2000:]
    checked = [f["path"] for f in json.loads(result.stdout)["files"]]
    assert checked and not [p for p in checked if "/siem/" in p]


# --- suppression of repeats per source ------------------------------------------------------------------------------

# The source address of each log source's records, in the field names of shared/DESIGN.md (Zeek's dhcp.log records
# no flow: an offer's source is its server).
SOURCE_FIELD = {"firewall": "src_ip", "dns": "src_ip", "zeek": "id.orig_h", "zeek dhcp": "server_addr"}
PERIOD = {reading.sigma_level: reading.suppress_seconds for reading in SEVERITY.values()}
KIBANA_UNIT = {"s": 1, "m": 60, "h": 3600}


def _source_in_schema(backend: str, sigma_file: str) -> str:
    """The source field of a Sigma file's log source, renamed as the backend's pipeline YAML renames it."""
    plan = RULES.get(sigma_file) or CORRELATIONS[sigma_file]
    logsource = {item["key"]: item["value"] for item in plan.context["logsource"]}
    kind = _logsource(sigma_file)
    return _in_schema(backend, kind, SOURCE_FIELD["zeek dhcp" if logsource.get("service") == "dhcp" else kind])


def _in_schema(backend: str, kind: str, field: str) -> str:
    """A Sigma field of a log source (firewall, dns, zeek) renamed as the backend's pipeline YAML renames it (a
    mapping that applies to every item of that log source, not the one for wildcard values)."""
    wanted = {"firewall": {"category": "firewall"}, "dns": {"category": "dns"}, "zeek": {"product": "zeek"}}[kind]
    for item in yaml.safe_load(siem.pipeline_text(backend))["transformations"]:
        conditions = [c for c in item.get("rule_conditions", []) if c["type"] == "logsource"]
        if item["type"] == "field_name_mapping" and "detection_item_conditions" not in item and \
                any(all(c.get(k) == v for k, v in wanted.items()) for c in conditions):
            field = item["mapping"].get(field, field)
    return field


def _level(sigma_file: str) -> str:
    return (RULES.get(sigma_file) or CORRELATIONS[sigma_file]).context["level"]


def test_every_saved_search_suppresses_repeats_per_source_for_its_levels_period(siem_build):
    out, _ = siem_build
    conf = configparser.ConfigParser(interpolation=None, strict=True)
    conf.read_string((out / "siem" / "splunk" / "savedsearches.conf").read_text())
    searches = {conf[s]["search"]: conf[s] for s in conf.sections()}
    queries = _queries(out, "splunk")
    assert len(searches) == len(queries) == len(EXPECTED["splunk"])
    for sigma_file, query in queries.items():
        stanza = searches[" ".join(query.splitlines())]
        field = stanza["alert.suppress.fields"]
        assert stanza["alert.suppress"] == "1" and stanza["alert.digest_mode"] == "0", sigma_file  # per result
        assert field == _source_in_schema("splunk", sigma_file), sigma_file
        assert field in _schema_fields("splunk", _logsource(sigma_file))[0], sigma_file
        assert stanza["alert.suppress.period"] == f"{PERIOD[_level(sigma_file)]}s", sigma_file
        if sigma_file in CORRELATIONS:  # a correlation's results hold only its group-by fields
            assert f" by _time {field}\n" in query, query


@pytest.mark.parametrize("backend", ["lucene", "esql"])
def test_every_kibana_rule_suppresses_alerts_per_source_for_its_levels_period(siem_build, backend):
    out, _ = siem_build
    rules = [json.loads(line) for line in (out / "siem" / backend / "rules.ndjson").read_text().splitlines()]
    assert len(rules) == len(EXPECTED[backend])
    for sigma_file, rule in zip(EXPECTED[backend], rules, strict=True):
        suppression = rule["alert_suppression"]
        if rule["type"] == "threshold":  # alerts per threshold group, which holds the source: a duration alone
            assert set(suppression) == {"duration"}, sigma_file
            assert _source_in_schema(backend, sigma_file) in rule["threshold"]["field"], sigma_file
            duration = suppression["duration"]
            assert duration["value"] * KIBANA_UNIT[duration["unit"]] == PERIOD[_level(sigma_file)], sigma_file
            continue
        assert set(suppression) == {"group_by", "duration", "missing_fields_strategy"}, sigma_file
        assert suppression["group_by"] == [_source_in_schema(backend, sigma_file)], sigma_file
        assert suppression["group_by"][0] in _schema_fields(backend, _logsource(sigma_file))[0], sigma_file
        duration = suppression["duration"]
        assert isinstance(duration["value"], int) and duration["value"] >= 1 and duration["unit"] in KIBANA_UNIT
        assert duration["value"] * KIBANA_UNIT[duration["unit"]] == PERIOD[_level(sigma_file)], sigma_file
        assert suppression["missing_fields_strategy"] in ("suppress", "doNotSuppress")
        if sigma_file in CORRELATIONS:
            assert f"by timebucket, {suppression['group_by'][0]}" in rule["query"], rule["query"]


def test_suppression_periods_shrink_as_severity_grows():
    """Louder alerts come back sooner: each level's period is shorter than the level below it."""
    periods = [PERIOD[level] for level in ("informational", "low", "medium", "high", "critical")]
    assert periods == sorted(periods, reverse=True) and len(set(periods)) == len(periods)


# --- Kibana threshold rules --------------------------------------------------------------------------------------

THRESHOLD_SCHEMA = json.loads((Path(__file__).parent / "data" / "kibana_threshold_rule.schema.json").read_text())


def _kibana_rules(out: Path, backend: str) -> dict[str, dict]:
    """rule_id -> the Kibana rule of a backend's NDJSON bundle."""
    lines = (out / "siem" / backend / "rules.ndjson").read_text().splitlines()
    return {rule["rule_id"]: rule for rule in map(json.loads, lines)}


def _sigma(out: Path, sigma_file: str) -> dict:
    return yaml.safe_load((out / "sigma" / sigma_file).read_text())


def test_no_kibana_rule_alerts_on_a_rule_that_a_correlation_counts(siem_build):
    """The base rule of a scan correlation matches every single connection it counts (every inbound TCP connection
    to a port below 144, for one): alone in Kibana it would page on each of them."""
    out, _ = siem_build
    assert BASE_RULES
    for backend in ("lucene", "esql"):
        imported = _kibana_rules(out, backend)
        for base in BASE_RULES:
            assert _sigma(out, base)["id"] not in imported, (backend, base)


@pytest.mark.parametrize("sigma_file", sorted(CORRELATIONS))
def test_lucene_correlation_is_a_kibana_threshold_rule_of_kibanas_schema(siem_build, sigma_file, tmp_path):
    out, _ = siem_build
    correlation = _sigma(out, sigma_file)
    rule = _kibana_rules(out, "lucene")[correlation["id"]]
    jsonschema.validate(rule, THRESHOLD_SCHEMA)
    assert rule["type"] == "threshold" and rule["language"] == "lucene"
    assert rule["name"] == f"SIGMA - {correlation['title']}" and rule["severity"] == correlation["level"]
    # the query is the base rule's own: what the Lucene backend gives it converted alone, outside the correlation
    base = CORRELATIONS[sigma_file].context["file"].removeprefix("sigma/")
    (tmp_path / "alone").mkdir()
    shutil.copy(out / "sigma" / base, tmp_path / "alone" / base)
    result = run_rulegen("convert", str(tmp_path / "alone"), "-o", str(tmp_path / "siem"), "--siem", "lucene")
    assert result.returncode == 0, result.stderr
    alone = (tmp_path / "siem" / "lucene" / "queries" / base).with_suffix(".lucene").read_text()
    assert rule["query"] == alone.rstrip("\n")


@pytest.mark.parametrize("sigma_file", ["net_firewall_ssh_probe.yml", *sorted(set(RULES) - BASE_RULES)[:3]])
def test_lucene_rules_that_no_correlation_counts_stay_query_rules(siem_build, sigma_file):
    out, _ = siem_build
    rule = _kibana_rules(out, "lucene")[_sigma(out, sigma_file)["id"]]
    assert rule["type"] == "query" and "threshold" not in rule


SITE_BASE = """title: Site Firewall Connection to the Mail Relay
id: 1d2b3c4d-0000-4000-8000-000000000010
name: site_mail_relay
status: experimental
description: A site's base rule.
author: site
date: 2026-01-01
logsource:
    category: firewall
detection:
    selection:
        dst_port: 25
    condition: selection
level: low
"""
SITE_CORRELATION = """title: {title}
id: {id}
status: experimental
correlation:
    type: {type}
    rules:
        - site_mail_relay
    group-by:
        - src_ip
        - dst_ip
    timespan: 2h
    condition:
        {op}: 5
level: {level}
"""


def test_site_event_count_correlations_become_threshold_rules_or_are_skipped_with_the_reason(tmp_path):
    """An event_count at or above a count is a threshold rule without cardinality; gt 5 is at least 6; a condition
    below a count has no threshold rule form and is skipped, with the reason."""
    folder = tmp_path / "sigma"
    folder.mkdir()
    (folder / "site_base.yml").write_text(SITE_BASE)
    cases = {"site_gte.yml": ("event_count", "gte", "high", 5), "site_gt.yml": ("event_count", "gt", "low", 6),
             "site_lt.yml": ("event_count", "lt", "low", None), "site_temporal.yml": ("temporal", "gte", "low", None)}
    for n, (name, (kind, op, level, _)) in enumerate(cases.items()):
        (folder / name).write_text(SITE_CORRELATION.format(title=f"Site {name}", type=kind, op=op, level=level,
                                                           id=f"1d2b3c4d-0000-4000-8000-00000000002{n}"))
    result = run_rulegen("convert", str(folder), "-o", str(tmp_path / "siem"), "--siem", "lucene")
    assert result.returncode == 0, result.stderr
    rules = {r["name"].removeprefix("SIGMA - Site "): r for r in map(json.loads, (tmp_path / "siem" / "lucene" /
                                                                            "rules.ndjson").read_text().splitlines())}
    assert sorted(rules) == ["site_gt.yml", "site_gte.yml"]  # the base rule alerts through them only
    for name, rule in rules.items():
        jsonschema.validate(rule, THRESHOLD_SCHEMA)
        assert rule["threshold"] == {"field": ["source.ip", "destination.ip"], "value": cases[name][3]}
        assert (rule["interval"], rule["from"]) == ("2h", "now-2h")
        assert rule["query"] == "destination.port:25"
    lt = next(x for x in result.stdout.splitlines() if "skipped" in x and "site_lt.yml" in x)
    assert "alerts at or above a count" in lt
    temporal = next(x for x in result.stdout.splitlines() if "skipped" in x and "site_temporal.yml" in x)
    assert "temporal correlation has no threshold rule form" in temporal


# --- correlations mean the same in every output ------------------------------------------------------------------

TIME_UNITS = {"s": 1, "second": 1, "m": 60, "minute": 60, "h": 3600, "hour": 3600, "d": 86400, "day": 86400}
OPERATORS = {"gte": ">=", "gt": ">", "lte": "<=", "lt": "<", "eq": "=="}


def _seconds(count: str, unit: str) -> int:
    return int(count) * TIME_UNITS[unit.rstrip("s") if len(unit) > 1 else unit]


def _one(pattern: str, text: str) -> re.Match:
    found = re.findall(pattern, text)
    assert len(found) == 1, f"{pattern!r} found {len(found)} times in {text}"
    return re.search(pattern, text)


def _read_sqlite(sql: str) -> dict:
    """pySigma-backend-sqlite's correlation query: the event payload names each field (f0, f1...) by its column;
    the group keys, the counted value, the window anchored at each event and the metric's condition refer to them."""
    payload = dict(re.findall(r"'(f\d+)', CASE WHEN typeof\(`([^`]+)`\)", sql))
    groups = {g: payload[f] for f, g in re.findall(r"json_extract\(s\.payload, '\$\.(f\d+)'\) END AS (g\d+)", sql)}
    keys = _one(r"json_object\(((?:'[^']+', `g\d+`(?:, )?)+)\) AS group_keys", sql).group(1)
    named = re.findall(r"'([^']+)', `(g\d+)`", keys)
    assert all(groups[g] == name for name, g in named), (named, groups)
    counted = payload[_one(r"json_extract\(s\.payload, '\$\.(f\d+)'\) AS v\b", sql).group(1)]
    assert _one(r"COUNT\(DISTINCT m\.v COLLATE NOCASE\)", sql)
    start = _one(r"SELECT DISTINCT ts - (\d+) AS start, ts AS end", sql)
    op, count = _one(r"WHERE metric (>=|>|<=|<|==?) (\d+)\)", sql).groups()
    return {"group_by": [name for name, _ in named], "seconds": int(start.group(1)), "counted": counted,
            "condition": (op, int(count))}


def _read_splunk(spl: str) -> dict:
    span = _one(r"\| bin _time span=(\d+)([smhd])\b", spl).groups()
    counted, alias, by = _one(r"\| stats dc\(([^)]+)\) as (\w+) by _time ([\w. ]+?)\s*(?:\n|\|)", spl).groups()
    op, count = _one(rf"\| search {alias} (>=|>|<=|<|=) (\d+)", spl).groups()
    return {"group_by": by.split(), "seconds": _seconds(*span), "counted": counted, "condition": (op, int(count))}


def _read_esql(esql: str) -> dict:
    span = _one(r"\| eval timebucket=date_trunc\((\d+)\s*(second|minute|hour|day)s?, @timestamp\)", esql).groups()
    alias, counted, by = _one(r"\| stats (\w+)=count_distinct\(([^)]+)\) by timebucket, ([\w., ]+?)\s*(?:\n|\|)",
                              esql).groups()
    op, count = _one(rf"\| where {alias} (>=|>|<=|<|==) (\d+)", esql).groups()
    return {"group_by": [f.strip() for f in by.split(",")], "seconds": _seconds(*span), "counted": counted,
            "condition": (op, int(count))}


def _read_kibana_threshold(rule: dict) -> dict:
    window = _one(r"^(\d+)([smhd])$", rule["interval"]).groups()
    assert rule["from"] == f"now-{rule['interval']}" and rule["to"] == "now", "each run looks back one window"
    (cardinality,) = rule["threshold"]["cardinality"]
    # Kibana alerts when a group holds at least `value` events and at least `cardinality.value` distinct values
    assert rule["threshold"]["value"] <= cardinality["value"]
    return {"group_by": rule["threshold"]["field"], "seconds": _seconds(*window), "counted": cardinality["field"],
            "condition": (">=", cardinality["value"])}


@pytest.mark.parametrize("sigma_file", sorted(CORRELATIONS))
def test_a_correlation_means_the_same_in_every_output(siem_build, sigma_file):
    """Group-by, timespan, counted field and condition read back out of the SQLite proof's SQL, the Splunk search
    (query file and saved search), the ES|QL query and the Kibana threshold rule agree with the Sigma correlation,
    each in its own schema's field names. (All four count over the timespan; the SQLite proof slides the window
    from each event, the SIEMs count in fixed windows of that length.)"""
    from rulegen.prove.sigma import convert_correlation

    out, _ = siem_build
    sigma = _sigma(out, sigma_file)["correlation"]
    assert sigma["type"] == "value_count", "the readers below know value_count: teach them the new type"
    ((op_name, count),) = [(k, v) for k, v in sigma["condition"].items() if k != "field"]
    kind = _logsource(sigma_file)
    base = CORRELATIONS[sigma_file].context["file"].removeprefix("sigma/")

    def expected(backend: str | None, op: str) -> dict:
        name = (lambda f: f) if backend is None else (lambda f: _in_schema(backend, kind, f))
        return {"group_by": [name(f) for f in sigma["group-by"]],
                "seconds": _seconds(*re.fullmatch(r"(\d+)([smhd])", sigma["timespan"]).groups()),
                "counted": name(sigma["condition"]["field"]), "condition": (op, count)}

    (sql,) = convert_correlation(out / "sigma" / sigma_file, out / "sigma" / base)
    assert _read_sqlite(sql) == expected(None, OPERATORS[op_name])
    spl = _queries(out, "splunk")[sigma_file]
    assert _read_splunk(spl) == expected("splunk", OPERATORS[op_name].replace("==", "="))
    conf = configparser.ConfigParser(interpolation=None, strict=True)
    conf.read_string((out / "siem" / "splunk" / "savedsearches.conf").read_text())
    (stanza,) = [conf[s] for s in conf.sections() if conf[s]["search"] == " ".join(spl.splitlines())]
    assert _read_splunk(stanza["search"] + "\n") == expected("splunk", OPERATORS[op_name].replace("==", "="))
    esql = _queries(out, "esql")[sigma_file]
    assert _read_esql(esql) == expected("esql", OPERATORS[op_name])
    assert _read_esql(_kibana_rules(out, "esql")[_sigma(out, sigma_file)["id"]]["query"] + "\n") == \
        expected("esql", OPERATORS[op_name])
    if op_name in ("gte", "gt"):
        kibana = _read_kibana_threshold(_kibana_rules(out, "lucene")[_sigma(out, sigma_file)["id"]])
        assert kibana == expected("lucene", ">=") | ({"condition": (">=", count + 1)} if op_name == "gt" else {})


# --- rulegen convert -----------------------------------------------------------------------------------------------

def test_convert_gives_what_the_build_gave_byte_for_byte(siem_build, tmp_path):
    out, _ = siem_build
    result = run_rulegen("convert", "-o", str(tmp_path / "siem"), cwd=out.parent)  # default: out/sigma
    assert result.returncode == 0, result.stderr
    converted = {p.relative_to(tmp_path / "siem").as_posix(): p.read_bytes()
                 for p in (tmp_path / "siem").rglob("*") if p.is_file()}
    built = {p.relative_to(out / "siem").as_posix(): p.read_bytes() for p in (out / "siem").rglob("*") if p.is_file()}
    assert converted == built


SITE_RULE = """title: Firewall Connection to a Named Host
id: 1d2b3c4d-0000-4000-8000-000000000001
status: experimental
description: A site rule with a field the pipelines do not map.
author: site
date: 2026-01-01
logsource:
    category: firewall
detection:
    selection:
        dst_port: 25
        dst_hostname: mail.example.com
    condition: selection
level: low
"""


def test_convert_skips_a_site_rule_with_an_unmapped_field_and_says_which(built, tmp_path):
    sigma_dir = tmp_path / "sigma"
    shutil.copytree(built / "sigma", sigma_dir)
    (sigma_dir / "site_fw_named_host.yml").write_text(SITE_RULE)
    result = run_rulegen("convert", str(sigma_dir), "-o", str(tmp_path / "siem"), "--siem", "splunk")
    assert result.returncode == 0, result.stderr
    line = next(x for x in result.stdout.splitlines() if "skipped" in x and "site_fw_named_host.yml" in x)
    assert "no mapping to the CIM Network_Traffic data model" in line and "dst_hostname" in line
    assert not (tmp_path / "siem" / "splunk" / "queries" / "site_fw_named_host.spl").exists()
    assert (tmp_path / "siem" / "splunk" / "queries" / "net_firewall_ssh_probe.spl").is_file()
    assert not (tmp_path / "siem" / "lucene").exists()


# --- bad input -----------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("command", ["build", "convert"])
def test_unknown_backend_is_a_usage_error(command, tmp_path):
    args = ["--out", str(tmp_path / "out")] if command == "build" else [str(tmp_path), "-o", str(tmp_path / "out")]
    result = run_rulegen(command, *args, "--siem", "splunk,qradar")
    assert result.returncode == 2
    assert "Invalid value for '--siem': unknown SIEM backend qradar (choose from splunk, lucene, esql)" in result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "out").exists()


def test_siem_without_the_sigma_target_is_refused(tmp_path):
    result = run_rulegen("build", "--out", str(tmp_path / "out"), "-t", "suricata", "--siem", "esql")
    assert result.returncode == 2
    assert "--siem converts the Sigma rules: build the sigma target too (-t sigma)" in result.stderr
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("text,message", [
    ("title: x\ndetection:\n  selection: [a\n", ":4: not valid YAML"),
    ("a: &x [1, 2]\nb: [*x, *x]\n", ":2: YAML aliases are not accepted in Sigma rules"),
    ("title: x\nlist: " + "[" * 100 + "]" * 100 + "\n", ":2: YAML nesting too deep"),
    ("title: only a title\n", ": not a valid Sigma rule"),
], ids=["syntax", "aliases", "nesting", "not a rule"])
def test_convert_refuses_bad_yaml_and_writes_nothing(tmp_path, text, message):
    sigma_dir = tmp_path / "sigma"
    sigma_dir.mkdir()
    (sigma_dir / "good.yml").write_text(SITE_RULE)
    (sigma_dir / "broken.yml").write_text(text)
    result = run_rulegen("convert", str(sigma_dir), "-o", str(tmp_path / "siem"))
    assert result.returncode == 2
    assert f"error: {sigma_dir / 'broken.yml'}{message}" in result.stderr, result.stderr
    assert "Traceback" not in result.stderr
    assert "nothing written" in result.stderr
    assert not (tmp_path / "siem").exists()


def test_convert_refuses_to_replace_a_folder_with_other_files(built, tmp_path):
    result = run_rulegen("convert", str(built / "sigma"), "-o", str(built))
    assert result.returncode == 2
    assert "refusing to replace a folder that holds other files" in result.stderr
    assert (built / "manifest.json").is_file()
