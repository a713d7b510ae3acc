"""rulegen validate on rule sets it did not write: ET Open's Suricata rules and SigmaHQ's Sigma rules.

    .venv/bin/python benchmarks/foreign.py --suricata ET_OPEN/rules --sigma SIGMA/rules/linux SIGMA/rules/network \\
        [--sigma-config SIGMA/tests/sigma_cli_conf.yml]

The rule sets are snapshots of the public repositories, kept out of this repository: give their folders.
Prints, per rule set, the engine errors (must be 0: the engines load these rules), the lint grouped by code,
the notes, and the times of `rulegen validate` beside the engine alone: one `suricata -T` loading every rules
file, and pySigma's own parse and conversion to Splunk. With --sigma-config, SigmaHQ's rules are validated a
second time with SigmaHQ's own validator choice and exclusions, under --strict: they must be clean.
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from measure import PY, Run, pysigma_alone, ratio, run  # noqa: E402

ENABLED = re.compile(r"(alert|drop|reject|pass)\s")


def validate(*args: str) -> tuple[Run, dict]:
    result = run([PY, "-m", "rulegen", "validate", "--json", *args], cwd=ROOT)
    if result.code not in (0, 1):
        raise SystemExit(f"rulegen validate {' '.join(args)} exited {result.code}:\n{result.stderr[-3000:]}")
    return result, json.loads(result.stdout)


def suricata_alone(folders: list[Path], work: Path) -> Run:
    """One `suricata -T` loading every .rules file of the folders, under rulegen's minimal config."""
    from rulegen.validate.suricata import DATA, MINIMAL_CONFIG, classification_file

    files = sorted(p.resolve() for folder in folders for p in folder.rglob("*.rules"))
    config = work / "suricata.yaml"
    config.write_text(MINIMAL_CONFIG.format(classification=classification_file(), reference=DATA / "reference.config")
                      + "rule-files:\n" + "".join(f"  - {p}\n" for p in files))
    result = run(["suricata", "-T", "-c", str(config), "-l", str(work)])
    if result.code != 0:
        raise SystemExit(f"suricata -T failed on the rule set:\n{result.stdout[-2000:]}{result.stderr[-2000:]}")
    return result


def summary(title: str, report: dict, timing: Run, alone: tuple[str, Run]) -> list[str]:
    files = report["files"]
    lines = [f"== {title}: {len(files)} file(s), exit {timing.code}",
             f"   engine errors: {report['engine_errors']} (must be 0), failed files: {len(report['failed_files'])}"]
    for name, groups in (("lint", report["lint"]), ("notes", report["notes"])):
        total = sum(g["count"] for g in groups)
        lines.append(f"   {name}: {total}" + ("" if groups else " (none)"))
        lines += [f"     {g['code']:<40} {g['count']:>6} in {g['files']:>3} file(s)  [{g['engine']}]" for g in groups]
    label, engine = alone
    lines.append(f"   time: rulegen validate {timing.wall:.1f} s wall, {timing.cpu:.1f} s CPU; {label} alone "
                 f"{engine.wall:.1f} s wall, {engine.cpu:.1f} s CPU (ratio {ratio(timing.wall, engine.wall)} wall, "
                 f"{ratio(timing.cpu, engine.cpu)} CPU)")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--suricata", type=Path, nargs="*", default=[], help="folders of Suricata .rules files")
    parser.add_argument("--sigma", type=Path, nargs="*", default=[], help="folders of Sigma rules")
    parser.add_argument("--sigma-config", type=Path, help="a sigma-cli validation config (SigmaHQ's own)")
    args = parser.parse_args()
    out = []
    versions = subprocess.run(["suricata", "-V"], capture_output=True, text=True).stdout.strip()
    out.append(f"{versions}; Python {sys.version.split()[0]}")
    with tempfile.TemporaryDirectory(prefix="rulegen-foreign-") as tmp:
        if args.suricata:
            timing, report = validate(*map(str, args.suricata))
            rules = sum(1 for folder in args.suricata for p in folder.rglob("*.rules")
                        for line in p.read_text(errors="replace").splitlines() if ENABLED.match(line))
            out += summary(f"Suricata rules ({rules} enabled)", report, timing,
                           ("suricata -T (one process, all files)", suricata_alone(args.suricata, Path(tmp))))
        if args.sigma:
            alone = pysigma_alone(args.sigma)
            rules, queries, failed = alone.stdout.split()
            timing, report = validate(*map(str, args.sigma))
            out += summary(f"Sigma rules (pySigma alone: {rules} rules, {queries} Splunk queries, {failed} not "
                           "converted)", report, timing, ("pySigma parse + Splunk", alone))
            if args.sigma_config:
                timing, report = validate("--strict", "--sigma-config", str(args.sigma_config), *map(str, args.sigma))
                out += summary(f"Sigma rules, --strict --sigma-config {args.sigma_config.name}", report, timing,
                               ("pySigma parse + Splunk", alone))
    print("\n".join(out))


if __name__ == "__main__":
    main()
