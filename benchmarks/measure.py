"""Timing for the benchmarks: one command in its own process, wall clock and CPU (its whole process tree).

On a shared machine the wall clock counts the other tenants' work too; the CPU seconds of the process tree
(user + system, children included) are what the command itself used. Both are reported."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

PY = sys.executable
SIGMA_ALONE = """
import sys
from sigma.backends.splunk import SplunkBackend
from sigma.collection import SigmaCollection
from sigma.correlations import SigmaCorrelationRule

collection = SigmaCollection.load_ruleset(sys.argv[1:])
backend = SplunkBackend()
queries = failed = 0
for rule in sorted(collection.rules, key=lambda r: isinstance(r, SigmaCorrelationRule)):  # base rules first
    try:
        convert = backend.convert_correlation_rule if isinstance(rule, SigmaCorrelationRule) else backend.convert_rule
        queries += len(convert(rule))
    except Exception:  # noqa: BLE001 - counted: a rule the backend cannot convert
        failed += 1
print(len(collection.rules), queries, failed)
"""


@dataclass
class Run:
    wall: float
    cpu: float
    code: int
    stdout: str
    stderr: str


def run(cmd: list[str], cwd: Path | None = None, env: dict | None = None) -> Run:
    """Run a command to its end; wall seconds and CPU seconds of it and every child it waited for."""
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        start = time.perf_counter()
        child = subprocess.Popen(cmd, cwd=cwd, stdout=out, stderr=err, stdin=subprocess.DEVNULL, text=True,
                                 env={**os.environ, **(env or {})})
        _, status, usage = os.wait4(child.pid, 0)
        wall = time.perf_counter() - start
        child.returncode = os.waitstatus_to_exitcode(status)  # reaped here: Popen must not wait for it again
        out.seek(0)
        err.seek(0)
        return Run(wall, usage.ru_utime + usage.ru_stime, child.returncode, out.read(), err.read())


def pysigma_alone(folders: list[Path]) -> Run:
    """pySigma's own parse and conversion to Splunk of Sigma folders, as `sigma convert -t splunk` does it."""
    return run([PY, "-c", SIGMA_ALONE, *map(str, folders)])


def ratio(a: float, b: float) -> str:
    return f"{a / b:.2f}" if b else "-"
