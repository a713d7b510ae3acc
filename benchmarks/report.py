"""Rendering out/REPORT.html (its pictures included) at N times the shipped knowledge.

    .venv/bin/python benchmarks/report.py [--times 10] [--runs 5] [--src CHECKOUT]

The knowledge is the shipped one replicated (benchmarks/synth.py replicate()), compiled once in memory; then
render_report runs --runs times. --src measures another checkout (its own templates), for a before/after
comparison. Prints the median and the fastest run in CPU seconds of this process, and the page's size.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "benchmarks"))

import synth  # noqa: E402
from measure import PY  # noqa: E402

RENDER = """
import statistics, sys, time
from pathlib import Path
from rulegen.build import compile_rules
from rulegen.report import render_report
from rulegen.targets import TARGETS
knowledge, templates, runs = Path(sys.argv[1]), Path(sys.argv[2]) / "templates", int(sys.argv[3])
compiled = compile_rules([knowledge], templates, TARGETS)
seconds = []
for _ in range(runs):
    start = time.process_time()
    html = render_report(compiled, templates)
    seconds.append(time.process_time() - start)
print(f"{len(compiled.kb.entries)} entries, {len(compiled.kb.patterns)} patterns: REPORT.html "
      f"{len(html.encode()) / 1e6:.1f} MB, render {statistics.median(seconds):.2f} s CPU median, "
      f"{min(seconds):.2f} s fastest, of {runs} runs")
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--times", type=int, default=10)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--src", type=Path, default=ROOT, help="the checkout whose rulegen is measured")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="rulegen-report-") as work:
        knowledge = synth.replicate(ROOT / "knowledge", args.times, Path(work) / "kb")
        result = subprocess.run([PY, "-c", RENDER, str(knowledge), str(args.src), str(args.runs)],
                                env={**os.environ, "PYTHONPATH": str(args.src)}, capture_output=True, text=True)
    if result.returncode:
        raise SystemExit(result.stderr[-3000:])
    print(f"{args.times}x the shipped knowledge, rulegen from {args.src}: {result.stdout.strip()}")


if __name__ == "__main__":
    main()
