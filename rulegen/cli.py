"""The command line: a thin click layer over the library. Exit 0 ok, 1 failure, 2 bad input or usage."""

from __future__ import annotations

import json
import sys
from collections import Counter
from pathlib import Path

import click

from rulegen import __version__
from rulegen.build import build as run_build
from rulegen.errors import KnowledgeError, RulegenError
from rulegen.knowledge import default_knowledge_dir
from rulegen.render import default_templates_dir
from rulegen.targets import TARGETS


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
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
def build(knowledge: tuple[Path, ...], templates: Path | None, out_dir: Path, target: tuple[str, ...],
          frozen: bool, as_json: bool) -> None:
    """Build out/ from the knowledge base: Suricata rules and sid-msg.map, Sigma rules,
    iptables/ip6tables-restore files and an nftables table, plus manifest.json.

    Bad knowledge stops the build with `file:line: entry: message` (exit 2) and writes nothing.
    """
    targets = _targets(target)
    roots = list(knowledge) or [default_knowledge_dir()]
    try:
        result = run_build(roots, templates or default_templates_dir(), out_dir, targets, frozen=frozen)
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
    click.echo(f"wrote {out_dir}/ (manifest.json lists every artifact and the coverage)")


if __name__ == "__main__":
    main()
