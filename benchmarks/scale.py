"""`rulegen build` with validation at N times the shipped knowledge, beside pySigma's own parse and conversion to
Splunk of the same Sigma folder.

    .venv/bin/python benchmarks/scale.py [--times 40] [--runs 2] [--src CHECKOUT]

--src measures the rulegen of another checkout (its own templates) with this interpreter, for a before/after
comparison. The knowledge is the shipped one replicated (benchmarks/synth.py replicate()); the first build, not
counted, writes the lock. Prints medians of wall and CPU seconds (CPU: the process tree, children included).
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "benchmarks"))

import synth  # noqa: E402
from measure import PY, Run, pysigma_alone, ratio, run  # noqa: E402


def build(src: Path, work: Path, out: str, *flags: str) -> Run:
    result = run([PY, "-m", "rulegen", "build", "-k", "kb", "-o", out, *flags], cwd=work,
                 env={"PYTHONPATH": str(src)})
    if result.code != 0:
        raise SystemExit(f"rulegen build {' '.join(flags)} failed:\n{result.stderr[-3000:]}")
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--times", type=int, default=40)
    parser.add_argument("--runs", type=int, default=2)
    parser.add_argument("--src", type=Path, default=ROOT, help="the checkout whose rulegen is measured")
    parser.add_argument("--work", type=Path, default=None)
    args = parser.parse_args()
    work = args.work or Path(tempfile.mkdtemp(prefix="rulegen-scale-"))
    shutil.rmtree(work / "kb", ignore_errors=True)
    synth.replicate(ROOT / "knowledge", args.times, work / "kb")
    build(args.src, work, "out", "--no-validate")  # writes the lock: later builds are steady-state rebuilds
    plain = [build(args.src, work, "out", "--no-validate") for _ in range(args.runs)]
    checked = [build(args.src, work, "out-validated") for _ in range(args.runs)]
    alone = [pysigma_alone([work / "out" / "sigma"]) for _ in range(args.runs)]
    sigma_files = len(list((work / "out" / "sigma").glob("*.yml")))

    def med(runs: list[Run], what: str) -> float:
        return statistics.median(getattr(r, what) for r in runs)

    print(f"{args.times}x the shipped knowledge ({sigma_files} Sigma files), rulegen from {args.src}, "
          f"median of {args.runs} run(s):")
    rows = [("build --no-validate", plain), ("build (with validation)", checked),
            ("pySigma alone: parse + Splunk", alone)]
    for name, runs in rows:
        print(f"  {name:<32} {med(runs, 'wall'):7.2f} s wall  {med(runs, 'cpu'):7.2f} s CPU")
    print(f"  build with validation / pySigma alone: {ratio(med(checked, 'wall'), med(alone, 'wall'))} wall, "
          f"{ratio(med(checked, 'cpu'), med(alone, 'cpu'))} CPU  [aim <= 3]")


if __name__ == "__main__":
    main()
