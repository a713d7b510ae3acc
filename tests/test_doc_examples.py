"""docs/knowledge.md "Worked examples": every YAML block is a complete knowledge file that loads alone, passes the
JSON Schema, builds on top of the shipped knowledge validated in the engines, and is proven by selftest; and
there is one per detect kind and per match kind."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import yaml
from conftest import REPO, run_rulegen
from jsonschema import Draft7Validator

from rulegen import schema
from rulegen.knowledge import MATCH_KINDS, default_knowledge_dir, load_knowledge
from rulegen.model import Detect

DOC = REPO / "docs" / "knowledge.md"
SECTION = "## Worked examples"
# The match kinds documented elsewhere (helper kinds' heading): every kind needs an example somewhere in the doc.
BLOCK = re.compile(r"^### (?P<heading>.+?)\n(?:(?!^### ).)*?^```yaml\n(?P<yaml>.*?)^```", re.M | re.S)


def examples() -> dict[str, str]:
    text = DOC.read_text(encoding="utf-8")
    section = text.split(SECTION + "\n", 1)[1]
    section = re.split(r"^## ", section, maxsplit=1, flags=re.M)[0]
    return {m["heading"]: m["yaml"] for m in BLOCK.finditer(section)}


EXAMPLES = examples()


def slug(heading: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", heading.lower()).strip("-")


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("doc-examples") / "site"
    path.mkdir()
    for heading, text in EXAMPLES.items():
        (path / f"{slug(heading)}.yaml").write_text(text, encoding="utf-8")
    return path


def test_one_example_per_detect_kind_and_match_kind():
    detects = {h.split(": ", 1)[1] for h in EXAMPLES if h.startswith("detect: ")}
    matches = {h.split(": ", 1)[1] for h in EXAMPLES if h.startswith("match: ")}
    assert detects == {d.value for d in Detect}
    documented_elsewhere = {kind for kind in MATCH_KINDS if kind not in matches
                            and re.search(rf"^#+ .*\b{kind}\b", DOC.read_text(), re.M | re.I)}
    assert matches | documented_elsewhere == set(MATCH_KINDS), set(MATCH_KINDS) - matches


@pytest.mark.parametrize("heading", sorted(EXAMPLES))
def test_each_example_loads_alone_and_shows_its_kind(heading, tmp_path):
    path = tmp_path / "example.yaml"
    path.write_text(EXAMPLES[heading], encoding="utf-8")
    kb = load_knowledge([path])
    assert kb.warnings == ()
    kind, name = heading.split(": ", 1)
    if kind == "detect":
        assert all(p.detect.value == name for p in kb.patterns)
    else:
        assert all(p.match is not None and p.match.kind == name for p in kb.patterns)


@pytest.mark.parametrize("heading", sorted(EXAMPLES))
def test_each_example_passes_the_schema(heading):
    validator = Draft7Validator(json.loads(schema.SCHEMA_FILE.read_text()))
    assert list(validator.iter_errors(yaml.safe_load(EXAMPLES[heading]))) == []


def test_the_examples_build_on_top_of_the_shipped_knowledge_validated(folder, tmp_path):
    load_knowledge([default_knowledge_dir(), folder])
    result = run_rulegen("build", "-k", "@shipped", "-k", str(folder), "-o", str(tmp_path / "out"), "--json")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["warnings"] == []


def test_selftest_proves_every_example(folder):
    result = run_rulegen("selftest", "-k", str(folder), "--json")
    proofs = json.loads(result.stdout)
    failed = [f"{p['pattern']} {p['target']} {p['side']}: {p['detail']}" for p in proofs
              if not p["proven"] and not p["skipped"]]
    assert result.returncode == 0 and failed == [], failed or result.stderr
    ids = {p.id for p in load_knowledge([folder]).patterns}
    assert {p["pattern"] for p in proofs if p["proven"]} >= ids
