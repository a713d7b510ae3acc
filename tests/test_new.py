"""`rulegen new entry` / `rulegen new pattern`: commented skeletons that build as they are on top of the shipped
knowledge, pass the JSON Schema, are proven by selftest, and never overwrite a file."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import yaml
from conftest import run_rulegen
from test_schema import VALIDATOR

from rulegen import schema
from rulegen.knowledge import default_knowledge_dir, load_knowledge

DETECTS = ("probe", "traffic", "payload", "sweep")


def new(*args: str) -> str:
    result = run_rulegen("new", *args)
    assert result.returncode == 0, result.stderr
    return result.stdout


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    """A site folder written only by `rulegen new`: one tcp entry with a pattern of every detect kind, and a udp
    entry with a payload pattern."""
    folder = tmp_path_factory.mktemp("new") / "site"
    folder.mkdir()
    new("entry", str(folder), "--id", "my-app", "--port", "9000")
    for detect in DETECTS[1:]:
        new("pattern", str(folder / "my-app.yaml"), "--detect", detect)
    new("entry", str(folder / "beacon.yaml"), "--id", "beacon", "--transport", "udp", "--detect", "payload",
        "--port", "9001")
    return folder


def test_the_skeletons_build_on_top_of_the_shipped_knowledge_validated(site, tmp_path):
    result = run_rulegen("build", "-k", "@shipped", "-k", str(site), "-o", str(tmp_path / "out"), "--json")
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    assert summary["warnings"] == []
    coverage = {row["id"]: row["coverage"] for row in json.loads((tmp_path / "out" / "manifest.json").read_text())
                ["patterns"]}
    for pattern in [f"my-app-{d}" for d in DETECTS] + ["beacon-payload"]:
        assert coverage[pattern]["suricata"]["built"], pattern
    for detect in ("probe", "traffic", "sweep"):  # Sigma reads firewall logs: no payload there
        assert coverage[f"my-app-{detect}"]["sigma"]["built"], detect


def test_selftest_proves_the_skeletons(site, tmp_path):
    alone = tmp_path / "alone"
    alone.mkdir()
    for path in site.glob("*.yaml"):
        (alone / path.name).write_text(path.read_text())
    result = run_rulegen("selftest", "-k", str(alone), "-t", "suricata,sigma", "--json")
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr
    proofs = json.loads(result.stdout)
    proven = {(p["pattern"], p["side"]) for p in proofs if p["proven"]}
    for detect in DETECTS:
        assert {(f"my-app-{detect}", "fires"), (f"my-app-{detect}", "quiet")} <= proven, detect


def test_the_skeletons_pass_the_json_schema(site):
    for path in site.glob("*.yaml"):
        assert list(VALIDATOR.iter_errors(yaml.safe_load(path.read_text()))) == [], path


def test_the_entry_skeleton_names_the_schema_and_says_zh_is_optional(site):
    text = (site / "my-app.yaml").read_text()
    assert text.startswith(f"# yaml-language-server: $schema={schema.SCHEMA_FILE}\n")
    assert "# zh:" in text and "optional at a site" in text
    assert f"rulegen build -k @shipped -k {site}" in text


def test_printed_skeletons_are_what_the_files_hold(site, tmp_path):
    printed = new("entry", "--id", "my-app", "--port", "9000")
    written = (site / "my-app.yaml").read_text()
    assert written.startswith(printed.replace("site/", f"{site}/").split("      - id: my-app-traffic")[0])
    folder = tmp_path / "pasted"
    folder.mkdir()
    item = new("pattern", "--entry", "my-app", "--id", "my-app-extra", "--detect", "sweep", "--port", "9000")
    (folder / "a.yaml").write_text(printed + "\n".join("      " + line for line in item.splitlines()) + "\n")
    kb = load_knowledge([default_knowledge_dir(), folder])
    assert [p.id for p in kb.entry("my-app").patterns] == ["my-app-probe", "my-app-extra"]


def test_new_never_overwrites(site):
    before = (site / "my-app.yaml").read_bytes()
    result = run_rulegen("new", "entry", str(site), "--id", "my-app")
    assert result.returncode == 2
    assert "already exists" in result.stderr
    assert (site / "my-app.yaml").read_bytes() == before
    taken = run_rulegen("new", "pattern", str(site / "my-app.yaml"), "--id", "my-app-probe")
    assert taken.returncode == 2
    assert "my-app-probe' is already in the file" in taken.stderr
    assert (site / "my-app.yaml").read_bytes() == before


def test_a_pattern_goes_to_the_named_entry_and_nothing_else_changes(tmp_path):
    folder = tmp_path / "site"
    folder.mkdir()
    two = folder / "two.yaml"
    first = new("entry", "--id", "first", "--port", "9100")
    second = new("entry", "--id", "second", "--port", "9200")
    two.write_text(first + "\n# the second one\n" + second.split("entries:\n", 1)[1])
    os.chmod(two, 0o640)
    before = two.read_text()
    ambiguous = run_rulegen("new", "pattern", str(two))
    assert ambiguous.returncode == 2 and "name one with --entry" in ambiguous.stderr
    new("pattern", str(two), "--entry", "first", "--detect", "payload")
    after = two.read_text()
    kb = load_knowledge([default_knowledge_dir(), folder])
    assert [p.id for p in kb.entry("first").patterns] == ["first-probe", "first-payload"]
    assert [p.id for p in kb.entry("second").patterns] == ["second-probe"]
    assert kb.entry("first").patterns[1].dst_ports[0].low == 9100
    removed = [line for line in before.splitlines() if line not in after.splitlines()]
    assert removed == []
    assert os.stat(two).st_mode & 0o777 == 0o640
