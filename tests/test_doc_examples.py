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
from test_schema import VALIDATOR

from rulegen.errors import KnowledgeError
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


def _kinds_of_the_docs_whole_files(tmp_path: Path) -> set[str]:
    """The match kinds of every YAML block anywhere in the doc that loads alone as a knowledge file."""
    kinds = set()
    for index, block in enumerate(re.findall(r"^```yaml\n(.*?)^```", DOC.read_text(encoding="utf-8"), re.M | re.S)):
        path = tmp_path / f"block-{index}.yaml"
        path.write_text(block, encoding="utf-8")
        try:
            kinds |= {p.match.kind for p in load_knowledge([path]).patterns if p.match is not None}
        except KnowledgeError:
            continue  # a fragment, not a whole file
    return kinds


def test_one_example_per_detect_kind_and_match_kind(tmp_path):
    detects = {h.split(": ", 1)[1] for h in EXAMPLES if h.startswith("detect: ")}
    matches = {h.split(": ", 1)[1] for h in EXAMPLES if h.startswith("match: ")}
    assert detects == {d.value for d in Detect}
    documented_elsewhere = _kinds_of_the_docs_whole_files(tmp_path) - matches
    assert matches | documented_elsewhere == set(MATCH_KINDS), set(MATCH_KINDS) - matches - documented_elsewhere


@pytest.mark.parametrize("heading", sorted(EXAMPLES))
def test_each_example_loads_alone_and_shows_its_kind(heading, tmp_path):
    path = tmp_path / "example.yaml"
    path.write_text(EXAMPLES[heading], encoding="utf-8")
    kb = load_knowledge([path])
    assert kb.warnings == ()
    kind, name = heading.split(": ", 1)
    assert kb.patterns
    if kind == "detect":
        assert all(p.detect.value == name for p in kb.patterns)
    else:
        assert all(p.match is not None and p.match.kind == name for p in kb.patterns)


@pytest.mark.parametrize("heading", sorted(EXAMPLES))
def test_each_example_passes_the_schema(heading):
    assert list(VALIDATOR.iter_errors(yaml.safe_load(EXAMPLES[heading]))) == []


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
