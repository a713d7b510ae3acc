"""out/REPORT.html: the knowledge and its rules for people to read, one self-contained page (no external
assets, no script) that opens with two inline SVG pictures, a port map and a coverage heat map. The template
holds the layout; everything it shows is computed here, in explore and (the pictures' geometry) in charts."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import jinja2
from jinja2.sandbox import SandboxedEnvironment

from rulegen import __version__
from rulegen.charts import SEVERITY_COLOUR, WIDTH, heat_map, port_map
from rulegen.explore import describe
from rulegen.render import make_environment, render_errors
from rulegen.targets import TARGETS

if TYPE_CHECKING:
    from rulegen.build import Compiled

REPORT_NAME = "REPORT.html"
REPORT_TEMPLATE = "report/REPORT.html.j2"


def html_environment(templates_dir: Path) -> SandboxedEnvironment:
    """The rule environment with autoescape on: knowledge text is data and stays text in HTML."""
    env = make_environment(templates_dir)
    env.autoescape = True
    return env


def render_report(compiled: Compiled, templates_dir: Path) -> str:
    entries = describe(compiled)
    patterns = [p for e in entries for p in e.patterns]
    totals = [{"target": t, "built": t in compiled.targets,
               "expressed": sum(c.expressed for p in patterns for c in p.cells if c.target == t)} for t in TARGETS]
    pictures = {"port_map": port_map(compiled.kb), "heat_map": heat_map(compiled.kb, entries, compiled.targets),
                "width": WIDTH, "severity_colours": SEVERITY_COLOUR}
    try:
        template = html_environment(templates_dir).get_template(REPORT_TEMPLATE)
        return template.render(entries=entries, targets=TARGETS, built=compiled.targets, totals=totals,
                               pattern_count=len(patterns), generator=f"rulegen {__version__}", **pictures)
    except (jinja2.TemplateError, TypeError, ValueError, AttributeError) as exc:
        raise render_errors(exc, templates_dir) from None
