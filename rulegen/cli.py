"""The command line: a thin click layer over the library. Exit 0 ok, 1 failure, 2 bad input or usage."""

from __future__ import annotations

import json
import os
import sys
from collections import Counter
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, NoReturn

import click
import jinja2

if TYPE_CHECKING:
    from rulegen.explore import EntryView

from rulegen import __version__, packs, siem
from rulegen.build import ValidationFailed
from rulegen.build import build as run_build
from rulegen.errors import KnowledgeError, RulegenError
from rulegen.model import KnowledgeBase
from rulegen.render import default_templates_dir
from rulegen.targets import TARGETS
from rulegen.targets.firewall import HOOK_PLACES, LOG_TARGETS, NFLOG_GROUP, NFLOG_GROUPS, POLICIES, Deploy
from rulegen.validate import FORMATS, grouped, notes, problems, refusals, suggestions
from rulegen.validate import validate as run_validate
from rulegen.validate.base import FileReport

SHOWN_CHANGES = 40


def _knowledge_option(note: str):  # noqa: ANN202 - a click decorator
    return click.option("--knowledge", "-k", "knowledge", multiple=True, type=click.Path(path_type=Path),
                        help="Knowledge folder or file, or a shipped pack: @article (the 2003 article), @current "
                             f"(today's attacked services), {packs.SHIPPED} (both). Repeatable: later folders add "
                             "entries and override patterns of earlier ones. Default: $"
                             f"{packs.ENV} ({os.pathsep}-separated), else `knowledge = [...]` in "
                             f"./{packs.CONFIG}, else {packs.SHIPPED}. {note}")


def _selection(value: tuple[Path, ...]) -> tuple[packs.Selection, list[Path]]:
    """The knowledge chosen (-k, else the environment, else rulegen.toml, else both shipped packs) and its roots
    in order; a bad config or an unknown @pack exits 2."""
    try:
        chosen = packs.choose([str(v) for v in value])
        return chosen, packs.resolve(chosen)
    except RulegenError as exc:
        _fail(exc)


def _knowledge_roots(value: tuple[Path, ...]) -> list[Path]:
    return _selection(value)[1]


def _targets(value: tuple[str, ...]) -> list[str]:
    names = [n.strip() for v in value for n in v.split(",") if n.strip()] or list(TARGETS)
    unknown = [n for n in names if n not in TARGETS]
    if unknown:
        raise click.BadParameter(f"unknown target {', '.join(unknown)} (choose from {', '.join(TARGETS)})")
    return names


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="rulegen")
def main() -> None:
    """Compile the port knowledge base into Suricata, Sigma, iptables and nftables rules.

    rulegen ships two knowledge packs, both built by default: @article (Graham's 2003 Firewall Forensics FAQ)
    and @current (the services attacked on today's Internet). Choose with -k, or set a default in
    RULEGEN_KNOWLEDGE or rulegen.toml.
    """


def _siem_backends(value: tuple[str, ...]) -> list[str]:
    try:
        return siem.backend_names(value)
    except siem.SiemInputError as exc:
        raise click.BadParameter(str(exc), param_hint="'--siem'") from None


def _fail(exc: RulegenError, command: str | None = None) -> NoReturn:
    """Print the error (bad knowledge: one `error: file:line: entry: message` line per problem) and exit with
    its code; `command` adds the line saying that it wrote nothing."""
    knowledge = isinstance(exc, KnowledgeError)
    for problem in exc.problems if knowledge else [exc]:
        click.echo(f"error: {problem}", err=True)
    if command:
        what = f"{len(exc.problems)} problem(s) in the knowledge; " if knowledge else ""
        click.echo(f"rulegen {command}: {what}nothing written", err=True)
    sys.exit(exc.exit_code)


def _print_conversions(conversions: list[siem.Conversion], siem_dir: Path, rules_in: str) -> None:
    for c in conversions:
        embedded = f" ({len(c.embedded)} base rule(s) inside their correlation rule)" if c.embedded else ""
        click.echo(f"  siem      {c.backend:<6} {len(c.converted):>4} queries{embedded}, {len(c.skipped)} skipped "
                   f"-> {siem_dir / c.backend / siem.BACKENDS[c.backend].bundle}")
        for skip in c.skipped:
            click.echo(f"            {c.backend} skipped {rules_in}{skip.rule}: {skip.reason}")


@main.command()
@_knowledge_option("Each pack keeps its lock (rulegen.lock) in its folder; a site folder given last keeps one "
                   "lock of its own.")
@click.option("--templates", type=click.Path(path_type=Path), default=None,
              help="Templates folder, one subfolder per target (default: the shipped templates).")
@click.option("--out", "-o", "out_dir", type=click.Path(path_type=Path), default=Path("out"), show_default=True,
              help="Output folder; replaced whole and atomically by a successful build.")
@click.option("--target", "-t", "target", multiple=True,
              help=f"Targets to build, repeatable or comma-separated: {', '.join(TARGETS)} (default: all).")
@click.option("--siem", "siem_names", multiple=True,
              help=f"Also convert the Sigma rules into out/siem/<backend>/ for these SIEM backends, repeatable or "
                   f"comma-separated: {', '.join(siem.BACKENDS)} (default: none).")
@click.option("--frozen", is_flag=True, help="Fail (exit 1) instead of changing the lock file (for CI).")
@click.option("--no-validate", is_flag=True, help="Skip validating the new output before it replaces out/.")
@click.option("--policy", type=click.Choice(POLICIES), default=None,
              help="Firewall response for every pattern iptables and nftables express, instead of the "
                   "knowledge's (alert-only patterns stay out of the firewall).")
@click.option("--wan-if", "wan_if", multiple=True, metavar="IF",
              help="Interface whose packets the iptables and nftables hooks act on, repeatable (default: every "
                   "interface but lo).")
@click.option("--hook", type=click.Choice(HOOK_PLACES), default="insert", show_default=True,
              help="insert: the firewall hooks come before the site's own filter rules; append: after them.")
@click.option("--firewall-log", "firewall_log", type=click.Choice(LOG_TARGETS), default="log", show_default=True,
              help="Where the iptables and nftables rules log: the kernel LOG target (syslog, journalctl -k), or "
                   "NFLOG for ulogd2.")
@click.option("--nflog-group", "nflog_group", type=click.IntRange(NFLOG_GROUPS.start, NFLOG_GROUPS.stop - 1),
              default=None, metavar="N", help=f"The NFLOG group of --firewall-log nflog (default {NFLOG_GROUP}).")
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
def build(knowledge: tuple[Path, ...], templates: Path | None, out_dir: Path, target: tuple[str, ...],
          siem_names: tuple[str, ...], frozen: bool, no_validate: bool, policy: str | None, wan_if: tuple[str, ...],
          hook: str, firewall_log: str, nflog_group: int | None, as_json: bool) -> None:
    """Build out/ from the knowledge (both shipped packs unless -k says otherwise): Suricata rules and
    sid-msg.map, Sigma rules,
    iptables/ip6tables-restore files and an nftables table, plus manifest.json and REPORT.html
    (the knowledge and its rules as one self-contained web page).

    The new output is validated (as `rulegen validate` does) before it replaces out/; a failed
    check leaves out/ and the lock unchanged (exit 1). Bad knowledge stops the build with
    `file:line: entry: message` (exit 2) and writes nothing.
    """
    targets = _targets(target)
    backends = _siem_backends(siem_names)
    roots = _knowledge_roots(knowledge)
    if nflog_group is not None and firewall_log != "nflog":
        raise click.BadParameter("only NFLOG has a group: give --firewall-log nflog too", param_hint="--nflog-group")
    try:
        deploy = Deploy(tuple(dict.fromkeys(wan_if)), hook, firewall_log,
                        NFLOG_GROUP if nflog_group is None else nflog_group)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--wan-if") from None
    try:
        result = run_build(roots, templates or default_templates_dir(), out_dir, targets, frozen=frozen,
                           validate=not no_validate, targets_named=bool(target), siem_backends=backends,
                           policy=policy, deploy=deploy)
    except ValidationFailed as exc:
        _print_reports(exc.reports, err=True)
        click.echo(f"rulegen build: {exc}", err=True)
        sys.exit(exc.exit_code)
    except RulegenError as exc:
        _fail(exc, "build")
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
        "lock": {"paths": [str(p) for p in result.lock_paths], "written": [str(p) for p in result.locks_written],
                 "added": result.changes.added, "adopted": result.changes.adopted,
                 "retired": result.changes.retired, "revised": result.changes.revised},
        "changes": [asdict(c) for c in result.sid_changes],
        "overrides": [{"pattern": p.id, "override": str(p.override)}
                      for p in (*result.kb.patterns, *result.kb.disabled) if p.override],
        "warnings": [str(w) for w in result.warnings],
    }
    if result.conversions:
        summary["siem"] = {c.backend: c.summary("sigma/", "siem/") for c in result.conversions}
    if as_json:
        click.echo(json.dumps(summary, indent=2))
        return
    click.echo(f"rulegen {__version__}: {summary['entries']} entries, {summary['patterns']} patterns")
    for name in result.targets:
        click.echo(f"  {name:<9} {expressed[name]:>4} patterns expressed, "
                   f"{counts.get(name, 0)} file(s) in {out_dir / name}")
    _print_conversions(result.conversions, out_dir / "siem", "sigma/")
    for warning in result.warnings:  # on stderr too, where a script's eye is
        click.echo(f"warning: {warning}", err=True)
    changes = result.changes
    if summary["overrides"]:
        click.echo(f"  overrides {len(summary['overrides'])} pattern(s) changed by site knowledge:")
        for item in summary["overrides"]:
            click.echo(f"            {item['pattern']}: {item['override']}")
    locks = ", ".join(str(p) for p in result.lock_paths)
    if changes.any:
        click.echo(f"  lock      {len(changes.added)} added, {len(changes.revised)} revised (rev + 1), "
                   f"{len(changes.retired)} retired -> {locks}")
        if changes.adopted:
            click.echo(f"            {len(changes.adopted)} SID(s) adopted from the locks beneath "
                       "(the packs' own SIDs, kept; --json lists them)")
        for change in result.sid_changes[:SHOWN_CHANGES]:
            click.echo(f"            {change}")
        if len(result.sid_changes) > SHOWN_CHANGES:
            click.echo(f"            ... and {len(result.sid_changes) - SHOWN_CHANGES} more (--json lists all)")
    else:
        click.echo(f"  lock      no SID added, retired or revised since the previous build ({locks})")
    if result.reports:
        click.echo(f"  validated {len(result.reports)} file(s) clean, by: {', '.join(summary['validated_by'])}")
    else:
        click.echo("  not validated (--no-validate)")
    click.echo(f"wrote {out_dir}/ (manifest.json lists every artifact and the coverage)")


def _print_reports(reports: list[FileReport], err: bool = False) -> None:
    for report in reports:
        for finding in report.findings:
            click.echo(str(finding), err=err)
    clean = 0
    for report in reports:
        count = len(problems([report]))
        if err and not count:  # a failed build lists the files that failed, not every clean one
            clean += 1
            continue
        state = f"{count} problem(s)" if count else "ok"
        click.echo(f"{report.path}: {report.format}: {state}; checked by: {', '.join(report.checked_by)}", err=err)
    if clean:
        click.echo(f"{clean} other file(s) clean", err=err)


@main.command()
@click.argument("sigma_dir", required=False, default=Path("out/sigma"), type=click.Path(path_type=Path))
@click.option("--out", "-o", "out_dir", type=click.Path(path_type=Path), required=True,
              help="Output folder, one subfolder per backend; replaced whole and atomically.")
@click.option("--siem", "siem_names", multiple=True,
              help=f"SIEM backends, repeatable or comma-separated: {', '.join(siem.BACKENDS)} (default: all).")
@click.option("--templates", type=click.Path(path_type=Path), default=None,
              help="Templates folder with siem/savedsearches.conf.j2 (default: the shipped templates).")
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
def convert(sigma_dir: Path, out_dir: Path, siem_names: tuple[str, ...], templates: Path | None,
            as_json: bool) -> None:
    """Convert a folder of Sigma rules (default: out/sigma; every *.yml and *.yaml below it) into SIEM queries,
    with rulegen's pipelines for firewall, DNS and Zeek log sources: OUT/splunk/savedsearches.conf,
    OUT/lucene/rules.ndjson and OUT/esql/rules.ndjson (Kibana detection rules), and one query file per rule.
    Every alert is suppressed per source for a period set by the rule's level (the severity table).

    A rule a backend cannot convert is skipped with the reason (exit 0). Unreadable rules exit 2, writing nothing.
    """
    from rulegen.output import stage, swap_in
    from rulegen.render import make_environment, render_errors

    backends = _siem_backends(siem_names) or list(siem.BACKENDS)
    try:
        rules = siem.read_rules(sigma_dir)
        siem.check_output_folder(out_dir)
        templates_dir = templates or default_templates_dir()
        try:
            conversions = siem.convert(rules, backends, make_environment(templates_dir), f"{sigma_dir}/")
        except (jinja2.TemplateError, TypeError, ValueError, AttributeError) as exc:
            raise render_errors(exc, templates_dir) from None
        swap_in(stage(out_dir, {p: t.encode() for c in conversions for p, t in c.files.items()}), out_dir)
    except RulegenError as exc:
        _fail(exc, "convert")
    if as_json:
        click.echo(json.dumps({c.backend: c.summary(f"{sigma_dir}/", f"{out_dir}/") for c in conversions}, indent=2))
        return
    click.echo(f"rulegen {__version__}: {len(rules)} Sigma file(s) in {sigma_dir}")
    _print_conversions(conversions, out_dir, f"{sigma_dir}/")
    click.echo(f"wrote {out_dir}/")


@main.command()
@click.argument("logs", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--rules", "rule_dirs", multiple=True, type=click.Path(path_type=Path),
              help="A folder (or file) of Sigma rules; repeatable (default: out/sigma).")
@click.option("--min-level", type=click.Choice(["informational", "low", "medium", "high", "critical"]),
              default="low", show_default=True, help="Alerts below this level are only counted, apart.")
@click.option("--json", "as_json", is_flag=True, help="Write NDJSON: one object per alert.")
def hunt(logs: tuple[Path, ...], rule_dirs: tuple[Path, ...], min_level: str, as_json: bool) -> None:
    """Run Sigma rules over log files: Suricata EVE JSON, Zeek JSON logs, ulogd2 JSON, kernel LOG lines
    (syslog or journalctl -k text); each file's format is detected from its content, .gz too. Correlation
    rules count over their group-by fields in a sliding timespan window; a rule a correlation references
    alerts only through it (unless `generate: true`).

    Exit 0 when no alert, 1 when any alert at or above --min-level, 2 on bad input (unreadable or unknown
    log, broken rule).
    """
    from rulegen.hunt import report
    from rulegen.hunt.session import Hunt

    try:
        session = Hunt(list(rule_dirs) or [Path("out/sigma")], min_level)
        alerts = session.run(list(logs))
        if as_json:
            report.write_ndjson(alerts)
        else:
            found = list(alerts)
            if found:
                report.alerts_table(found)
            else:
                click.echo(f"no alerts at or above {min_level}")
            if session.below:
                report.below_table(session.below, min_level)
        skipped = session.not_applicable()
    except RulegenError as exc:
        _fail(exc)
    if as_json:
        for rule, count in sorted(session.below.items(), key=lambda i: (i[0].level, i[0].title)):
            click.echo(f"below {min_level}: {rule.level} {rule.title}: {count} event(s)", err=True)
    if skipped:
        if as_json:
            for rule, why in skipped:
                click.echo(f"not applicable: {rule}: {why}", err=True)
        else:
            report.not_applicable_table(skipped)
    sys.exit(1 if session.alerts else 0)


@main.command()
@click.argument("paths", nargs=-1, type=click.Path(path_type=Path))
@click.option("--format", "forced", type=click.Choice(FORMATS), default=None,
              help="Force the input format instead of detecting it from the extension and content.")
@click.option("--lint/--no-lint", default=True, show_default=True,
              help="Run suricata-check's quality checks (WARNING and above) on Suricata files, when installed.")
@click.option("--strict", is_flag=True,
              help="Fail (exit 1) on the linters' suggestions too, and list each of them, as rulegen's own build does.")
@click.option("--sigma-config", type=click.Path(path_type=Path, dir_okay=False), default=None,
              help="A sigma-cli validation config (`sigma check --validation-config`) choosing the Sigma validators "
                   "and per-rule exclusions, e.g. SigmaHQ's tests/sigma_cli_conf.yml.")
@click.option("--json", "as_json", is_flag=True, help="Print the reports as JSON.")
def validate(paths: tuple[Path, ...], forced: str | None, lint: bool, strict: bool, sigma_config: Path | None,
             as_json: bool) -> None:
    """Validate rule files or folders (default: out/) in the real engines, falling back to built-in
    checks where an engine is missing or needs root (RULEGEN_REQUIRE_ENGINES=1 makes that an error).

    What an engine refuses (a syntax error; an engine that fails, is killed or runs past RULEGEN_ENGINE_TIMEOUT
    seconds, 600 by default) fails the file and prints as `path:line: [engine] message (entry: ID)`. What a
    linter suggests (suricata-check, pySigma's and SigmaHQ's validators) is counted by code, and fails only
    with --strict. Notes (an ATT&CK tag newer than the shipped ATT&CK data) fail nothing. Exit 0 clean, 1 a
    file failed, 2 bad input.
    """
    try:
        reports = run_validate(list(paths) or [Path("out")], forced, lint=lint, sigma_config=sigma_config)
    except RulegenError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(2)
    found = problems(reports, strict)
    failed = sorted({f.path for f in found})
    if as_json:
        click.echo(json.dumps({
            "files": [asdict(r) for r in reports], "strict": strict, "problems": len(found), "failed_files": failed,
            "engine_errors": len(refusals(reports)), "lint": [g.as_dict() for g in grouped(suggestions(reports))],
            "notes": [g.as_dict() for g in grouped(notes(reports))]}, indent=2))
    else:
        _print_validation(reports, strict)
    sys.exit(1 if found else 0)


def _print_validation(reports: list[FileReport], strict: bool) -> None:
    """Engine refusals one by one; lint and notes grouped by code (one by one too under --strict)."""
    for finding in problems(reports, strict):
        click.echo(str(finding))
    for title, groups in ((f"lint ({'fails under --strict' if strict else 'suggestions: exit 1 only with --strict'})",
                           grouped(suggestions(reports))), ("notes (fail nothing)", grouped(notes(reports)))):
        if groups:
            click.echo(f"{title}:")
        for g in groups:
            click.echo(f"  {g.code} [{g.engine}]: {g.count} in {len(g.files)} file(s), e.g. {g.example}")
    for report in reports:
        errors = len(refusals([report]))
        lint = len(suggestions([report]))
        state = f"FAILED, {errors} engine error(s)" if errors else ("FAILED" if strict and lint else "ok")
        extra = f", {lint} lint" if lint else ""
        click.echo(f"{report.path}: {report.format}: {state}{extra}; checked by: {', '.join(report.checked_by)}")
    failed = {f.path for f in problems(reports, strict)}
    click.echo(f"{len(reports)} file(s), {len(failed)} failed: {len(refusals(reports))} engine error(s), "
               f"{len(suggestions(reports))} lint finding(s){' (strict)' if strict else ''}, "
               f"{len(notes(reports))} note(s)")


@main.command()
@_knowledge_option("The build goes to a temporary folder: nothing is written.")
@click.option("--templates", type=click.Path(path_type=Path), default=None, help="Templates folder.")
@click.option("--target", "-t", "target", multiple=True,
              help=f"Targets to prove, repeatable or comma-separated: {', '.join(TARGETS)} (default: all).")
@click.option("--policy", type=click.Choice(POLICIES), default=None,
              help="Firewall response for every pattern iptables and nftables express, instead of the "
                   "knowledge's (alert-only patterns stay out of the firewall).")
@click.option("--json", "as_json", is_flag=True, help="Print the proofs as JSON.")
def selftest(knowledge: tuple[Path, ...], templates: Path | None, target: tuple[str, ...], policy: str | None,
             as_json: bool) -> None:
    """Prove both sides of every rule built from the knowledge: it fires on its traffic, and it stays quiet
    on the traffic it resembles (the same probe from home or over loopback, one busy peer, ordinary use of
    the service). Suricata on generated captures, Sigma on log events in SQLite, iptables and nftables in
    network namespaces it creates (needs root and the engines; it says what it skips and why).

    The build goes to a temporary folder; neither out/ nor the lock file is touched. The build's warnings (a
    text that looks escaped but is not: its proof proves the literal text) are printed on stderr.
    Exit 0 when both sides of every expressed pattern are proven, 1 otherwise, 2 on bad input.
    """
    from rulegen.prove.runner import run_selftest

    roots = _knowledge_roots(knowledge)
    try:
        proofs, warnings = run_selftest(roots, templates or default_templates_dir(), _targets(target), policy)
    except RulegenError as exc:
        _fail(exc)
    for warning in warnings:  # a proof cannot tell what the author meant: the build's warnings say it
        click.echo(f"warning: {warning}", err=True)
    failed = [p for p in proofs if not p.proven and not p.skipped]
    if as_json:
        click.echo(json.dumps([asdict(p) for p in proofs], indent=2))
    else:
        click.echo(f"{'pattern':<44} {'target':<9} {'side':<6} proven  detail")
        for proof in proofs:
            state = "skip" if proof.skipped else ("yes" if proof.proven else "NO")
            click.echo(f"{proof.pattern:<44} {proof.target:<9} {proof.side:<6} {state:<7} "
                       f"{proof.skipped or proof.detail}")
        summary = Counter((p.target, p.side, "skipped" if p.skipped else ("proven" if p.proven else "failed"))
                          for p in proofs)
        for name in sorted({p.target for p in proofs}):
            sides = [f"{label} {summary[(name, side, 'proven')]} proven, {summary[(name, side, 'failed')]} not proven, "
                     f"{summary[(name, side, 'skipped')]} skipped"
                     for side, label in (("fires", "fires:"), ("quiet", "stays quiet:"))]
            click.echo(f"{name}: {'; '.join(sides)}")
        if warnings:
            click.echo(f"{len(warnings)} warning(s) from the build (on stderr): what the proofs above prove may not "
                       "be what the knowledge meant")
    sys.exit(1 if failed else 0)


def _explored(knowledge: tuple[Path, ...], templates: Path | None) \
        -> tuple[KnowledgeBase, list[EntryView], packs.Selection]:
    """The knowledge compiled in memory for list/show/coverage, and what was selected; bad input exits 2 as
    build does."""
    from rulegen.build import compile_rules
    from rulegen.explore import describe

    selection, roots = _selection(knowledge)
    try:
        compiled = compile_rules(roots, templates or default_templates_dir(), TARGETS)
    except RulegenError as exc:
        _fail(exc)
    return compiled.kb, describe(compiled), selection


def _knowledge_options(command):
    command = click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")(command)
    command = click.option("--templates", type=click.Path(path_type=Path), default=None,
                           help="Templates folder (default: the shipped templates).")(command)
    return _knowledge_option("Nothing is written, not even the lock.")(command)


@main.command(name="list")
@_knowledge_options
@click.option("--port", type=click.IntRange(0, 65535), default=None,
              help="Entries whose ports (or port range, or source port) include this port.")
@click.option("--class", "port_class", default=None, help="Entries in this port class (e.g. well-known).")
@click.option("--proto", type=click.Choice(["tcp", "udp"]), default=None, help="Entries of this protocol.")
@click.option("--tag", default=None, help="Entries with this tag (e.g. trojan).")
def list_entries(knowledge: tuple[Path, ...], templates: Path | None, as_json: bool, port: int | None,
                 port_class: str | None, proto: str | None, tag: str | None) -> None:
    """List the knowledge entries: ports, protocol, service, port class, patterns and the targets that
    express them. Filters combine with AND. A table on a terminal, plain columns when piped.
    """
    from rulegen.explore import select
    from rulegen.present import entries_json, entries_table, print_json

    kb, entries, selection = _explored(knowledge, templates)
    for option, value, known in (("--class", port_class, [c.id for c in kb.port_classes]),
                                 ("--tag", tag, sorted({t for e in kb.entries for t in e.tags}))):
        if value is not None and value not in known:
            click.echo(f"error: {option}: unknown value {value!r} (the knowledge has: {', '.join(known)})", err=True)
            click.echo(packs.hint(selection, [p.id for p in kb.packs]), err=True)
            sys.exit(2)
    chosen = select(kb, entries, port=port, port_class=port_class, proto=proto, tag=tag)
    if not chosen:
        click.echo(f"no entry matches these filters; {packs.hint(selection, [p.id for p in kb.packs])}", err=True)
    if as_json:
        print_json(entries_json(chosen))
    else:
        entries_table(chosen)


@main.command()
@_knowledge_options
@click.argument("subject")
@click.option("--lang", type=click.Choice(["en", "zh"]), default="en", show_default=True,
              help="Language of the description.")
def show(knowledge: tuple[Path, ...], templates: Path | None, as_json: bool, subject: str, lang: str) -> None:
    """Show SUBJECT: a port number (every entry covering it, ranges and source ports included), an entry id
    or a pattern id. Prints the entry, its patterns and, per target, the exact rule lines a build writes
    (a pattern not yet in the lock shows the SID the next build reserves). Exit 2 when nothing matches.
    """
    from rulegen.explore import UnknownSubject, find
    from rulegen.present import print_json, show_json
    from rulegen.present import show as show_entries

    kb, entries, selection = _explored(knowledge, templates)
    try:
        chosen, only_pattern = find(kb, entries, subject)
    except UnknownSubject as exc:
        click.echo(f"error: {exc}", err=True)
        click.echo(packs.hint(selection, [p.id for p in kb.packs]), err=True)
        sys.exit(2)
    if as_json:
        print_json(show_json(chosen, only_pattern))
    else:
        show_entries(chosen, only_pattern, lang)


@main.command(name="coverage")
@_knowledge_options
def coverage_matrix(knowledge: tuple[Path, ...], templates: Path | None, as_json: bool) -> None:
    """The pattern x target matrix: one row per pattern and target, expressed or not and why not
    (the same verdicts as the coverage in out/manifest.json)."""
    from rulegen.explore import coverage_rows
    from rulegen.present import coverage_table, print_json

    _, entries, _ = _explored(knowledge, templates)
    rows = coverage_rows(entries)
    if as_json:
        print_json(rows)
    else:
        coverage_table(rows)


@main.group()
def new() -> None:
    """Write a commented skeleton of a knowledge entry or pattern that builds as it is on top of the shipped
    knowledge (`rulegen build -k @shipped -k site/`); edit it from there. An existing file is never overwritten."""


DETECT_CHOICE = click.Choice(["probe", "traffic", "payload", "sweep"])


def _slug(value: str | None, option: str) -> str | None:
    from rulegen.knowledge import SLUG

    if value is not None and not SLUG.match(value):
        raise click.BadParameter(f"must be a slug (a-z, 0-9, '-'), not {value!r}", param_hint=option)
    return value


@new.command(name="entry")
@click.argument("dest", required=False, type=click.Path(path_type=Path))
@click.option("--id", "entry_id", default="my-service", show_default=True, help="The entry's id (a slug).")
@click.option("--port", type=click.IntRange(0, 65535), default=47001, show_default=True, help="The entry's port.")
@click.option("--transport", type=click.Choice(["tcp", "udp"]), default="tcp", show_default=True)
@click.option("--detect", type=DETECT_CHOICE, default="probe", show_default=True,
              help="The detect kind of its first pattern.")
def new_entry(dest: Path | None, entry_id: str, port: int, transport: str, detect: str) -> None:
    """Print an entry skeleton, or write it to DEST: a new .yaml file, or a folder (then DEST/ID.yaml)."""
    from rulegen.skeleton import entry_text

    _slug(entry_id, "--id")
    if dest is not None and dest.is_dir():
        dest = dest / f"{entry_id}.yaml"
    folder = str(dest.parent) + "/" if dest is not None else "site/"
    text = entry_text(entry_id, port, transport, detect, folder)
    if dest is None:
        click.echo(text, nl=False)
        return
    if dest.suffix not in (".yaml", ".yml"):
        click.echo(f"error: {dest}: a knowledge file ends in .yaml (or give an existing folder)", err=True)
        sys.exit(2)
    try:
        with dest.open("x", encoding="utf-8") as handle:  # "x": never overwrite
            handle.write(text)
    except FileExistsError:
        click.echo(f"error: {dest}: already exists; rulegen new never overwrites (add a pattern to it with "
                   f"`rulegen new pattern {dest}`)", err=True)
        sys.exit(2)
    except OSError as exc:
        click.echo(f"error: {dest}: cannot write: {exc.strerror}", err=True)
        sys.exit(2)
    click.echo(f"wrote {dest}: build it with `rulegen build -k @shipped -k {dest.parent}`")


@new.command(name="pattern")
@click.argument("file", required=False, type=click.Path(path_type=Path, dir_okay=False))
@click.option("--entry", "entry_id", default=None,
              help="The entry the pattern belongs to (default: the file's only entry; my-service when printing).")
@click.option("--id", "pattern_id", default=None, help="The pattern's id (default: ENTRY-DETECT).")
@click.option("--detect", type=DETECT_CHOICE, default="probe", show_default=True)
@click.option("--port", type=click.IntRange(0, 65535), default=47001, show_default=True,
              help="The pattern's port when printing (in a FILE: the entry's first port).")
@click.option("--transport", type=click.Choice(["tcp", "udp"]), default="tcp", show_default=True,
              help="When printing (in a FILE: the entry's first protocol).")
def new_pattern(file: Path | None, entry_id: str | None, pattern_id: str | None, detect: str, port: int,
                transport: str) -> None:
    """Print a pattern skeleton (an item for an entry's `patterns:` list), or add it to the end of that list
    in FILE, a knowledge file written by `rulegen new entry` or by hand. Nothing else in FILE changes."""
    from rulegen.skeleton import add_pattern, pattern_text

    _slug(entry_id, "--entry")
    _slug(pattern_id, "--id")
    if file is None:
        entry = entry_id or "my-service"
        click.echo(pattern_text(entry, pattern_id or f"{entry}-{detect}", detect, port, transport), nl=False)
        return
    try:
        text, added = add_pattern(file, entry_id, pattern_id, detect)
    except RulegenError as exc:
        _fail(exc)
    from rulegen.output import write_file_atomic

    mode = file.stat().st_mode & 0o777
    write_file_atomic(file, text)
    file.chmod(mode)  # the file keeps its permissions (the atomic write's temporary file is private)
    click.echo(f"added pattern {added} to {file}")


@main.command(name="schema")
@click.option("--out", "-o", "out_file", type=click.Path(path_type=Path, dir_okay=False), default=None,
              help="Write the schema to this file (default: print it).")
@click.option("--check", is_flag=True, help="Exit 1 if --out (default: the shipped schema) differs from the schema "
                                            "the loader's tables give now.")
def schema_command(out_file: Path | None, check: bool) -> None:
    """The JSON Schema of knowledge files, written from the loader's own tables, for editor completion
    (docs/knowledge.md says how). rulegen ships it as rulegen/data/knowledge.schema.json; after a change to
    the loader, `rulegen schema -o rulegen/data/knowledge.schema.json` writes it anew."""
    from rulegen import schema

    text = schema.dumps()
    if check:
        path = out_file or schema.SCHEMA_FILE
        if not path.is_file() or path.read_text(encoding="utf-8") != text:
            click.echo(f"{path}: differs from the schema the loader's tables give; write it with "
                       f"`rulegen schema -o {path}`", err=True)
            sys.exit(1)
        click.echo(f"{path}: up to date")
    elif out_file:
        try:
            out_file.write_text(text, encoding="utf-8")
        except OSError as exc:
            click.echo(f"error: {out_file}: cannot write: {exc.strerror}", err=True)
            sys.exit(2)
        click.echo(f"wrote {out_file}")
    else:
        click.echo(text, nl=False)


if __name__ == "__main__":
    main()
