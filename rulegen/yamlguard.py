"""YAML before and after PyYAML: cheap checks before it sees a text (its pure-Python parser is quadratic on deep
flow nesting: 200,000 nested brackets took 155 s here, so deep `[` / `{` nesting is refused up front), and its
syntax errors told as `line, column` with a hint of what to write instead."""

from __future__ import annotations

import yaml

MAX_FLOW_DEPTH = 64

QUOTING_HINT = (
    'inside double quotes a backslash starts an escape (\\r \\n \\t \\\\ \\" \\xNN); for a literal backslash '
    "write \\\\ or use single quotes ('C:\\temp' keeps the backslash), and for control characters such as "
    'CR LF use double quotes ("QUIT\\r\\n")')
# Words of a parser's problem (libyaml's and PyYAML's wordings) -> what the author most likely meant.
HINTS = (
    ("found unknown escape character", QUOTING_HINT),
    ("mapping values are not allowed", "a ': ' inside a plain value starts a mapping: quote the value"),
    ("cannot start any token", "indent with spaces, not tabs, and quote a value that starts with @, ` or %"),
    ("found unexpected end of stream", "a quoted string is not closed: end it with the same quote it opens with"),
    ("did not find expected key",
     "check the indentation; inside single quotes write a quote as '' ('it''s'), or use double quotes"),
    ("expected <block end>",
     "check the indentation; inside single quotes write a quote as '' ('it''s'), or use double quotes"),
    ("duplicate key", "a mapping names each key once: merge the two or rename one"),
    ("did not find expected '-' indicator", "the items of a list all start with '-' at the same indentation"),
    ("expected ','", "a flow list [a, b] or mapping {a: b} is not closed, or lacks a comma"),
)


def excessive_nesting(text: str, limit: int = MAX_FLOW_DEPTH) -> int | None:
    """The line where flow brackets nest deeper than `limit` (outside quoted strings), or None."""
    depth = 0
    line = 1
    quote = ""
    for ch in text:
        if ch == "\n":
            line += 1
            if quote == "'":  # a plain single-quoted scalar may span lines; keep it simple and safe
                continue
        if quote:
            if ch == quote:
                quote = ""
            continue
        if ch in "\"'" and depth:  # quotes only matter inside flow collections here
            quote = ch
        elif ch in "[{":
            depth += 1
            if depth > limit:
                return line
        elif ch in "]}" and depth:
            depth -= 1
    return None


def explain(exc: yaml.MarkedYAMLError) -> tuple[int, int, str]:
    """A parser error as (line, column, message), both 1-based, the message ending with a hint when one fits."""
    mark = exc.problem_mark or exc.context_mark
    line, column = (mark.line + 1, mark.column + 1) if mark else (1, 1)
    problem = exc.problem or exc.context or "syntax error"
    message = f"YAML syntax error at line {line}, column {column}: {problem}"
    if exc.context and exc.problem and exc.context_mark and exc.context_mark.line != (mark.line if mark else -1):
        message += f" ({exc.context} started at line {exc.context_mark.line + 1})"
    hint = next((h for words, h in HINTS if words in problem), None)
    return line, column, f"{message}; {hint}" if hint else message
