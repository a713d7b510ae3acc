"""Cheap checks before PyYAML sees a text: its pure-Python parser is quadratic on deep flow nesting
(200,000 nested brackets took 155 s here), so deep `[` / `{` nesting is refused up front."""

from __future__ import annotations

MAX_FLOW_DEPTH = 64


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
