"""The JSON Schema of the knowledge format: the checked-in file is the one the loader's tables give (regenerate it
with `rulegen schema -o rulegen/data/knowledge.schema.json`, never by hand), every shipped knowledge file passes
it, and it refuses what the loader refuses for the same reason."""

from __future__ import annotations

import json

import pytest
import yaml
from conftest import run_rulegen
from jsonschema import Draft7Validator

from rulegen import schema
from rulegen.errors import KnowledgeError
from rulegen.knowledge import default_knowledge_dir, knowledge_files, load_knowledge

VALIDATOR = Draft7Validator(json.loads(schema.SCHEMA_FILE.read_text(encoding="utf-8")))


def test_the_shipped_schema_is_the_generated_one():
    assert schema.SCHEMA_FILE.read_text(encoding="utf-8") == schema.dumps(), \
        "regenerate it: rulegen schema -o rulegen/data/knowledge.schema.json"


def test_every_key_of_the_loader_has_a_type_in_the_schema():
    assert schema.untyped() == [], "give these keys a type in rulegen/schema.py (TYPES or MATCH_TYPES)"


def test_the_schema_is_a_valid_draft7_schema():
    Draft7Validator.check_schema(schema.generate())


def test_schema_check_command_tells_a_stale_file(tmp_path):
    assert run_rulegen("schema", "--check").returncode == 0
    stale = tmp_path / "knowledge.schema.json"
    stale.write_text(schema.dumps().replace('"minItems": 1', '"minItems": 2', 1))
    result = run_rulegen("schema", "--check", "-o", str(stale))
    assert result.returncode == 1
    assert "rulegen schema -o" in result.stderr
    printed = run_rulegen("schema")
    assert printed.returncode == 0 and printed.stdout == schema.dumps()


@pytest.mark.parametrize("path", knowledge_files(default_knowledge_dir()),
                         ids=lambda p: str(p.relative_to(default_knowledge_dir())))
def test_the_shipped_knowledge_passes_the_schema(path):
    errors = [f"{'/'.join(map(str, e.absolute_path))}: {e.message}"
              for e in VALIDATOR.iter_errors(yaml.safe_load(path.read_text(encoding="utf-8")))]
    assert errors == []


GOOD_PATTERN = {"id": "a-probe", "title": "A probe", "category": "SCAN", "direction": "inbound",
                "transport": "tcp", "detect": "probe", "severity": "low", "classtype": "attempted-recon",
                "response": "alert", "false_positives": "Scanners."}
GOOD_ENTRY = {"id": "a", "table": "destination", "ports": [4444], "protocols": ["tcp"], "service": "a",
              "title": "A", "description": {"en": "An application port that nobody outside uses."},
              "references": ["https://intranet.example/a"], "patterns": [GOOD_PATTERN]}


def with_entry(**changes) -> dict:
    return {"entries": [{**GOOD_ENTRY, **changes}]}


def with_pattern(**changes) -> dict:
    pattern = {key: value for key, value in {**GOOD_PATTERN, **changes}.items() if value is not None}
    return with_entry(patterns=[pattern])


def _load_site(document: dict, folder) -> None:
    """The shipped knowledge with `document` as a site's one file on top."""
    folder.mkdir()
    (folder / "site.yaml").write_text(yaml.safe_dump(document), encoding="utf-8")
    load_knowledge([default_knowledge_dir(), folder])


def test_a_good_site_file_passes(tmp_path):
    assert list(VALIDATOR.iter_errors(with_entry())) == []
    payload = with_pattern(detect="payload", match={"content": [{"text": "HELO", "offset": 0, "depth": 4}]})
    assert list(VALIDATOR.iter_errors(payload)) == []
    _load_site(with_entry(), tmp_path / "plain")  # the loader takes both too
    _load_site(payload, tmp_path / "payload")


@pytest.mark.parametrize(("document", "why"), [
    (with_pattern(severty="low"), "unknown key"),
    (with_pattern(severity="urgent"), "unknown severity"),
    (with_entry(references=["https://attack.mitre.org/techniques/T1046/"]), "an ATT&CK page as a reference"),
    (with_pattern(detect="payload"), "payload without match"),
    (with_pattern(detect="sweep"), "sweep without sweep"),
    (with_pattern(detect="payload", match={"content": [{"text": "A"}], "dns": {"qtype": "ANY"}}), "two match kinds"),
    (with_pattern(detect="payload", match={"contnt": [{"text": "A"}]}), "unknown match kind"),
    (with_pattern(detect="payload", match={"content": [{"text": "A", "hex": "41"}]}), "text and hex"),
    (with_pattern(detect="payload", match={"dns": {"query": "a.example", "qtype": "ANY"}}), "query and qtype"),
    (with_pattern(dst_ports=[70000]), "port out of range"),
    (with_pattern(attack={"tactic": "discovery", "technique": "1046"}), "technique id"),
    (with_entry(description={"en": "Too short."}), "short English description"),
    (with_pattern(detect="payload", match={"ntp": {"mode": 7, "request": "peerlist"}}), "unknown NTP request"),
    ({"entrys": []}, "unknown top-level key"),
])
def test_the_schema_refuses_what_the_loader_refuses(document, why, tmp_path):
    assert list(VALIDATOR.iter_errors(document)), why
    with pytest.raises(KnowledgeError):
        _load_site(document, tmp_path / "site")
