"""The Jinja2 environment: sandboxed, StrictUndefined, one folder of templates per target."""

from __future__ import annotations

from pathlib import Path

import jinja2
from jinja2.sandbox import SandboxedEnvironment

from rulegen.errors import Problem, RulegenError


class TemplateError(RulegenError):
    exit_code = 2


def default_templates_dir() -> Path:
    here = Path(__file__).resolve().parent
    for candidate in (here / "_data" / "templates", here.parent / "templates"):
        if candidate.is_dir():
            return candidate
    return here.parent / "templates"


def make_environment(templates_dir: Path) -> SandboxedEnvironment:
    """Knowledge values are only ever passed as data; templates render in a sandbox."""
    if not templates_dir.is_dir():
        raise TemplateError(str(Problem(str(templates_dir), 0, None, "templates folder does not exist")))
    return SandboxedEnvironment(
        loader=jinja2.FileSystemLoader(str(templates_dir)),
        undefined=jinja2.StrictUndefined,
        autoescape=False,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )


def render_errors(exc: Exception, templates_dir: Path) -> TemplateError:
    """Turn a Jinja2 failure into a `file:line: message` error."""
    if isinstance(exc, jinja2.TemplateSyntaxError):
        where = Problem(str(templates_dir / (exc.name or "?")), exc.lineno or 0, None, exc.message or str(exc))
        return TemplateError(str(where))
    if isinstance(exc, jinja2.TemplateNotFound):
        return TemplateError(str(Problem(str(templates_dir / exc.name), 0, None, "template not found")))
    return TemplateError(f"{templates_dir}: template error: {exc}")
