"""Printing what rulegen.explore returns: rich tables on a terminal, plain text when piped, JSON for scripts.

Rule lines are always printed whole, on lines of their own and never wrapped, so they can be copied.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from dataclasses import asdict

import click
from rich.console import Console
from rich.table import Table
from rich.text import Text

from rulegen.explore import EntryView, PatternView

TARGET_STYLE = {"suricata": "bold magenta", "sigma": "bold cyan", "iptables": "bold green", "nftables": "bold blue"}
SEVERITY_STYLE = {"critical": "bold white on red", "high": "bold red", "medium": "yellow", "low": "blue",
                  "informational": "dim"}


def on_terminal() -> bool:
    return sys.stdout.isatty()


def console() -> Console:
    return Console(highlight=False)


def print_json(data: object) -> None:
    click.echo(json.dumps(data, indent=2, ensure_ascii=False))


def print_table(title: str, columns: Sequence[str], rows: Sequence[Sequence[str]]) -> None:
    """A rich table on a terminal; piped, a header line and one line per row, columns separated by two
    spaces and padded (the last column is not)."""
    if on_terminal():
        table = Table(title=title, caption=f"{len(rows)} row(s)", header_style="bold")
        for name in columns:
            table.add_column(name, overflow="fold")
        for row in rows:
            table.add_row(*(Text(cell) for cell in row))
        console().print(table)
        return
    widths = [max([len(columns[i]), *(len(r[i]) for r in rows)]) for i in range(len(columns) - 1)]
    for row in [columns, *rows]:
        cells = [cell.ljust(width) for cell, width in zip(row, widths, strict=False)] + [row[-1]]
        click.echo("  ".join(cells).rstrip())


def entries_table(entries: list[EntryView]) -> None:
    rows = [(e.id, e.pack, _ports(e), ",".join(e.protocols), e.service, e.port_class, str(len(e.patterns)),
             ",".join(e.targets) or "-", ",".join(e.tags)) for e in entries]
    print_table("Knowledge entries", ("entry", "pack", "ports", "protocol", "service", "class", "patterns", "targets",
                                      "tags"), rows)


def coverage_table(rows: list[dict]) -> None:
    print_table("Coverage: pattern x target", ("pattern", "entry", "pack", "target", "expressed", "reason"),
                [(r["pattern"], r["entry"], r["pack"], r["target"], _expressed_cell(r),
                  r["warning"] or r["reason"] or "") for r in rows])


def _expressed_cell(row: dict) -> str:
    if row["expressed"]:
        return "yes"
    return "no, WARNING" if row["warning"] else "no"


def entries_json(entries: list[EntryView]) -> list[dict]:
    return [{"id": e.id, "pack": e.pack, "title": e.title, "table": e.table, "ports": e.ports,
             "protocols": list(e.protocols), "service": e.service, "port_class": e.port_class, "tags": list(e.tags),
             "patterns": [p.id for p in e.patterns], "targets": list(e.targets)} for e in entries]


def show_json(entries: list[EntryView], only_pattern: str | None) -> list[dict]:
    shown = []
    for entry in entries:
        data = asdict(entry)
        data["patterns"] = [asdict(p) for p in _patterns(entry, only_pattern)]
        shown.append(data)
    return shown


def show(entries: list[EntryView], only_pattern: str | None, lang: str) -> None:
    """Each entry: its facts and description in `lang`, then per pattern its facts and, per target, the exact
    lines generated (or why the target cannot express it)."""
    out = _Writer(console() if on_terminal() else None)
    for number, entry in enumerate(entries):
        if number:
            out.blank()
        out.heading(f"{_ports(entry)}  {entry.title}", "bold")
        out.field("entry", entry.id)
        out.field("pack", entry.pack)
        out.field("ports", f"{entry.table} {entry.ports} ({', '.join(entry.protocols)}), class {entry.port_class}")
        out.field("service", entry.service)
        out.field("tags", ", ".join(entry.tags))
        out.field("references", " ".join(entry.references))
        out.blank()
        out.text(entry.description[lang] or entry.description["en"])  # a site's entry may have no zh
        for pattern in _patterns(entry, only_pattern):
            out.blank()
            _show_pattern(out, pattern)


def _show_pattern(out: _Writer, p: PatternView) -> None:
    out.heading(f"pattern {p.id}: {p.title}", "bold underline")
    out.field("severity", f"{p.severity} ({p.category})", SEVERITY_STYLE[p.severity])
    out.field("ATT&CK", f"{p.technique}, tactic {p.tactic}" if p.technique else "-")
    out.field("traffic", f"{p.direction} {p.transport}, source ports {p.src_ports}, destination ports {p.dst_ports}")
    out.field("identity", f"sid {p.sid}{' (new: not in the lock yet)' if p.new else ''}, rev {p.rev}, "
                          f"Sigma id {p.uuid}")
    out.field("false positives", p.false_positives)
    if p.override:
        out.field("override", p.override)
    for cell in p.cells:
        if not cell.expressed:
            out.label(cell.target, f"WARNING: {cell.warning}" if cell.warning else f"not expressed: {cell.reason}")
            continue
        for rules in cell.rules:
            out.label(cell.target, rules.path)
            for text in rules.lines:
                out.code(text)


def _patterns(entry: EntryView, only: str | None) -> list[PatternView]:
    return [p for p in entry.patterns if only is None or p.id == only]


def _ports(entry: EntryView) -> str:
    return f"src {entry.ports}" if entry.table == "source" else entry.ports


class _Writer:
    """One show layout, written with rich styles on a terminal or as plain lines."""

    def __init__(self, rich: Console | None):
        self.rich = rich

    def _line(self, text: Text | str) -> None:
        if self.rich:
            self.rich.print(text)
        else:
            click.echo(str(text))

    def blank(self) -> None:
        self._line("")

    def heading(self, text: str, style: str) -> None:
        self._line(Text(text, style=style) if self.rich else f"== {text}")

    def field(self, name: str, value: str, style: str = "") -> None:
        if self.rich:
            self._line(Text.assemble((f"{name:<16}", "dim"), (value, style)))
        else:
            self._line(f"{name + ':':<17}{value}")

    def label(self, target: str, detail: str) -> None:
        if self.rich:
            self._line(Text.assemble((f"[{target}]", TARGET_STYLE[target]), " ", (detail, "dim")))
        else:
            self._line(f"[{target}] {detail}")

    def text(self, text: str) -> None:
        self._line(Text(text) if self.rich else text)

    def code(self, text: str) -> None:
        """Rule text exactly as generated: no markup, no highlighting, no wrapping."""
        if self.rich:
            self.rich.print(Text(text.rstrip("\n")), soft_wrap=True, crop=False)
        else:
            click.echo(text.rstrip("\n"))
