"""The command line: a thin click layer over the library. Exit 0 ok, 1 failure, 2 bad input or usage."""

from __future__ import annotations

import json
import sys
from collections import Counter
from dataclasses import asdict
from pathlib import Path

import click

from rulegen import __version__
from rulegen.build import ValidationFailed
from rulegen.build import build as run_build
from rulegen.errors import KnowledgeError, RulegenError
from rulegen.knowledge import default_knowledge_dir
from rulegen.render import default_templates_dir
from rulegen.targets import TARGETS
from rulegen.targets.firewall import POLICIES
from rulegen.validate import FORMATS, problems
from rulegen.validate import validate as run_validate
from rulegen.validate.base import FileReport


def _targets(value: tuple[str, ...]) -> list[str]:
    names = [n.strip() for v in value for n in v.split(",") if n.strip()] or list(TARGETS)
    unknown = [n for n in names if n not in TARGETS]
    if unknown:
        raise click.BadParameter(f"unknown target {', '.join(unknown)} (choose from {', '.join(TARGETS)})")
    return names


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="rulegen")
def main() -> None:
    """Compile the port knowledge base into Suricata, Sigma, iptables and nftables rules."""


@main.command()
@click.option("--knowledge", "-k", "knowledge", multiple=True, type=click.Path(path_type=Path),
              help="Knowledge folder or file (default: the shipped knowledge). The lock file "
                   "rulegen.lock is kept in the last one given.")
@click.option("--templates", type=click.Path(path_type=Path), default=None,
              help="Templates folder, one subfolder per target (default: the shipped templates).")
@click.option("--out", "-o", "out_dir", type=click.Path(path_type=Path), default=Path("out"), show_default=True,
              help="Output folder; replaced whole and atomically by a successful build.")
@click.option("--target", "-t", "target", multiple=True,
              help=f"Targets to build, repeatable or comma-separated: {', '.join(TARGETS)} (default: all).")
@click.option("--frozen", is_flag=True, help="Fail (exit 1) instead of changing the lock file (for CI).")
@click.option("--no-validate", is_flag=True, help="Skip validating the new output before it replaces out/.")
@click.option("--policy", type=click.Choice(POLICIES), default=None,
              help="Firewall response for every pattern iptables and nftables express, instead of the "
                   "knowledge's (alert-only patterns stay out of the firewall).")
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
def build(knowledge: tuple[Path, ...], templates: Path | None, out_dir: Path, target: tuple[str, ...],
          frozen: bool, no_validate: bool, policy: str | None, as_json: bool) -> None:
    """Build out/ from the knowledge base: Suricata rules and sid-msg.map, Sigma rules,
    iptables/ip6tables-restore files and an nftables table, plus manifest.json.

    The new output is validated (as `rulegen validate` does) before it replaces out/; a failed
    check leaves out/ and the lock unchanged (exit 1). Bad knowledge stops the build with
    `file:line: entry: message` (exit 2) and writes nothing.
    """
    targets = _targets(target)
    roots = list(knowledge) or [default_knowledge_dir()]
    try:
        result = run_build(roots, templates or default_templates_dir(), out_dir, targets, frozen=frozen,
                           validate=not no_validate, targets_named=bool(target), policy=policy)
    except ValidationFailed as exc:
        _print_reports(exc.reports, err=True)
        click.echo(f"rulegen build: {exc}", err=True)
        sys.exit(exc.exit_code)
    except KnowledgeError as exc:
        for problem in exc.problems:
            click.echo(f"error: {problem}", err=True)
        click.echo(f"rulegen build: {len(exc.problems)} problem(s) in the knowledge; nothing written", err=True)
        sys.exit(exc.exit_code)
    except RulegenError as exc:
        click.echo(f"error: {exc}", err=True)
        click.echo("rulegen build: nothing written", err=True)
        sys.exit(exc.exit_code)
    counts = Counter()
    for artifact in result.artifacts:
        counts[artifact.path.split("/", 1)[0]] += 1
    expressed = {t: sum(p.expressed for p in result.plans[t]) for t in result.targets}
    summary = {
        "out": str(out_dir),
        "entries": len(result.kb.entries),
        "patterns": len(result.kb.patterns),
        "rules": expressed,
        "files": dict(sorted(counts.items())),
        "validated_by": sorted({c for r in result.reports for c in r.checked_by}),
        "lock": {"path": str(result.lock_path), "written": result.lock_written,
                 "added": result.changes.added, "retired": result.changes.retired,
                 "revised": result.changes.revised},
    }
    if as_json:
        click.echo(json.dumps(summary, indent=2))
        return
    click.echo(f"rulegen {__version__}: {summary['entries']} entries, {summary['patterns']} patterns")
    for name in result.targets:
        click.echo(f"  {name:<9} {expressed[name]:>4} patterns expressed, "
                   f"{counts.get(name, 0)} file(s) in {out_dir / name}")
    changes = result.changes
    if changes.any:
        click.echo(f"  lock      {len(changes.added)} added, {len(changes.revised)} revised (rev + 1), "
                   f"{len(changes.retired)} retired -> {result.lock_path}")
    if result.reports:
        click.echo(f"  validated {len(result.reports)} file(s) clean, by: {', '.join(summary['validated_by'])}")
    else:
        click.echo("  not validated (--no-validate)")
    click.echo(f"wrote {out_dir}/ (manifest.json lists every artifact and the coverage)")


def _print_reports(reports: list[FileReport], err: bool = False) -> None:
    for report in reports:
        for finding in report.findings:
            click.echo(str(finding), err=err)
    for report in reports:
        count = len(problems([report]))
        state = f"{count} problem(s)" if count else "ok"
        click.echo(f"{report.path}: {report.format}: {state}; checked by: {', '.join(report.checked_by)}", err=err)


@main.command()
@click.argument("paths", nargs=-1, type=click.Path(path_type=Path))
@click.option("--format", "forced", type=click.Choice(FORMATS), default=None,
              help="Force the input format instead of detecting it from the extension and content.")
@click.option("--lint/--no-lint", default=True, show_default=True,
              help="Run suricata-check's quality checks (WARNING and above) on Suricata files, when installed.")
@click.option("--json", "as_json", is_flag=True, help="Print the reports as JSON.")
def validate(paths: tuple[Path, ...], forced: str | None, lint: bool, as_json: bool) -> None:
    """Validate rule files or folders (default: out/) in the real engines, falling back to built-in
    checks where an engine is missing or needs root (RULEGEN_REQUIRE_ENGINES=1 makes that an error).

    Prints `path:line: [engine] message (entry: ID)` per problem. Exit 0 clean, 1 problems, 2 bad input.
    """
    try:
        reports = run_validate(list(paths) or [Path("out")], forced, lint=lint)
    except RulegenError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(2)
    found = problems(reports)
    if as_json:
        click.echo(json.dumps({"files": [asdict(r) for r in reports], "problems": len(found)}, indent=2))
    else:
        _print_reports(reports)
        click.echo(f"{len(reports)} file(s), {len(found)} problem(s)")
    sys.exit(1 if found else 0)


@main.command()
@click.option("--knowledge", "-k", "knowledge", multiple=True, type=click.Path(path_type=Path),
              help="Knowledge folder or file (default: the shipped knowledge).")
@click.option("--templates", type=click.Path(path_type=Path), default=None, help="Templates folder.")
@click.option("--target", "-t", "target", multiple=True,
              help=f"Targets to prove, repeatable or comma-separated: {', '.join(TARGETS)} (default: all).")
@click.option("--policy", type=click.Choice(POLICIES), default=None,
              help="Firewall response for every pattern iptables and nftables express, instead of the "
                   "knowledge's (alert-only patterns stay out of the firewall).")
@click.option("--json", "as_json", is_flag=True, help="Print the proofs as JSON.")
def selftest(knowledge: tuple[Path, ...], templates: Path | None, target: tuple[str, ...], policy: str | None,
             as_json: bool) -> None:
    """Prove that the rules built from the knowledge fire: Suricata on generated captures, Sigma on
    log events in SQLite, iptables and nftables in network namespaces it creates (needs root and the
    engines; it says what it skips and why). Normal traffic must stay quiet.

    The build goes to a temporary folder; neither out/ nor the lock file is touched.
    Exit 0 when every expressed pattern is proven, 1 otherwise, 2 on bad input.
    """
    from rulegen.prove.runner import run_selftest

    roots = list(knowledge) or [default_knowledge_dir()]
    try:
        proofs = run_selftest(roots, templates or default_templates_dir(), _targets(target), policy)
    except KnowledgeError as exc:
        for problem in exc.problems:
            click.echo(f"error: {problem}", err=True)
        sys.exit(2)
    except RulegenError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(exc.exit_code)
    failed = [p for p in proofs if not p.proven and not p.skipped]
    if as_json:
        click.echo(json.dumps([asdict(p) for p in proofs], indent=2))
    else:
        click.echo(f"{'pattern':<44} {'target':<9} proven  detail")
        for proof in proofs:
            state = "skip" if proof.skipped else ("yes" if proof.proven else "NO")
            click.echo(f"{proof.pattern:<44} {proof.target:<9} {state:<7} {proof.skipped or proof.detail}")
        summary = Counter((p.target, "skipped" if p.skipped else ("proven" if p.proven else "failed"))
                          for p in proofs)
        for name in sorted({p.target for p in proofs}):
            click.echo(f"{name}: {summary[(name, 'proven')]} proven, {summary[(name, 'failed')]} not proven, "
                       f"{summary[(name, 'skipped')]} skipped")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
