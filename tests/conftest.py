"""Shared fixtures: a build of the shipped knowledge, engine lookup, and a CLI runner."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from rulegen.knowledge import default_knowledge_dir, load_knowledge
from rulegen.render import default_templates_dir

REPO = Path(__file__).resolve().parent.parent
REQUIRE_ENGINES = os.environ.get("RULEGEN_REQUIRE_ENGINES") == "1"


# One small entry that tests complete with their own patterns (and ip_lists before it).
ODD_ENTRY_HEAD = """entries:
  - id: odd
    table: destination
    ports: [4444]
    protocols: [tcp]
    service: odd
    title: Odd service
    description: {en: "An odd port that nobody should expose.", zh: "奇怪的端口。"}
    references: ["http://www.robertgraham.com/pubs/firewall-seen.html"]
    patterns:
"""
# The pattern most tests give that entry: a port probe every target expresses.
ODD_PROBE_PATTERN = """      - id: odd-probe
        title: Probe of the odd port
        category: SCAN
        direction: inbound
        transport: tcp
        detect: probe
        dst_ports: [4444]
        severity: low
        classtype: attempted-recon
        response: drop
        false_positives: Scanners.
"""


def need(tool: str) -> str:
    """The path of an engine; skip without it, or fail when RULEGEN_REQUIRE_ENGINES=1 (CI)."""
    path = shutil.which(tool) or next((p for p in (f"/usr/sbin/{tool}", f"/sbin/{tool}") if os.path.exists(p)), None)
    if path:
        return path
    if REQUIRE_ENGINES:
        pytest.fail(f"{tool} not found and RULEGEN_REQUIRE_ENGINES=1")
    pytest.skip(f"{tool} not installed")


def need_root() -> None:
    if os.geteuid() != 0:
        if REQUIRE_ENGINES:
            pytest.fail("this test needs root and RULEGEN_REQUIRE_ENGINES=1")
        pytest.skip("needs root")


def run_rulegen(*args: str, cwd: Path | None = None, env: dict | None = None) -> subprocess.CompletedProcess:
    """Run the CLI the way a user does, in its own process."""
    return subprocess.run([sys.executable, "-m", "rulegen", *args], capture_output=True, text=True,
                          cwd=cwd, env={**os.environ, **(env or {})}, timeout=300)


def copy_knowledge(dest: Path) -> Path:
    """A private copy of the shipped knowledge (with its lock), so tests never touch the repo's."""
    shutil.copytree(default_knowledge_dir(), dest)
    return dest


@pytest.fixture(scope="session")
def kb():
    return load_knowledge([default_knowledge_dir()])


@pytest.fixture(scope="session")
def built(tmp_path_factory) -> Path:
    """out/ built once from a copy of the shipped knowledge, with --frozen: the committed lock must fit."""
    root = tmp_path_factory.mktemp("build")
    knowledge = copy_knowledge(root / "knowledge")
    result = run_rulegen("build", "--frozen", "--knowledge", str(knowledge), "--out", str(root / "out"))
    assert result.returncode == 0, result.stderr
    return root / "out"


@pytest.fixture(scope="session")
def manifest(built) -> dict:
    return json.loads((built / "manifest.json").read_text())


@pytest.fixture(scope="session")
def templates_dir() -> Path:
    return default_templates_dir()
