"""Targets: what of a pattern each output format can express, and the context its templates get.

Each target module exposes `NAME`, `plan(pattern, kb) -> Plan` and `render(plans, stamps, env, kb)`.
A Plan is either expressed (with a context of plain, JSON-able values) or a gap with its reason.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from rulegen.model import Pattern

TARGETS = ("suricata", "sigma", "iptables", "nftables")


@dataclass(frozen=True)
class Plan:
    pattern: Pattern
    context: dict[str, Any] | None = None
    reason: str | None = None
    warning: str | None = None  # the knowledge asks this target for what it cannot enforce (build, coverage)

    @property
    def expressed(self) -> bool:
        return self.context is not None


@dataclass(frozen=True)
class Stamp:
    """The identity and history of a pattern, from the lock file."""

    sid: int
    uuid: str
    rev: int
    created: str  # YYYY-MM-DD
    updated: str  # YYYY-MM-DD


@dataclass
class Artifact:
    """One generated file and the patterns (with their IDs) it carries.

    A text file has `text`; a binary one (a tarball) has `data` instead, and is a package of text
    artifacts that the build already fingerprints, so it adds nothing to a pattern's fingerprint."""

    path: str  # relative to out/
    text: str
    patterns: list[str] = field(default_factory=list)
    per_pattern: bool = False  # the whole file is one pattern's rule (Sigma); else lines name their pattern
    data: bytes | None = None
    # the part of a line that only places the rule in the file (iptables' `-A CHAIN `: which chain depends
    # on the neighbouring patterns too), left out of the pattern's fingerprint
    placement: str | None = None

    @property
    def binary(self) -> bool:
        return self.data is not None

    @property
    def content(self) -> bytes:
        """The file's bytes, as written to out/ and hashed in the manifest."""
        return self.data if self.data is not None else self.text.encode("utf-8")


TOKEN = re.compile(r"[\w-]+")


def pattern_lines(artifact: Artifact) -> dict[str, list[str]]:
    """What an artifact says of each pattern it carries: a per-pattern file (Sigma) whole; in a line-based
    one the lines naming the pattern, in file order; a binary one (the rules tarball) nothing of its own,
    as it packs a text artifact. One pass over the lines: a pattern id stands in a line as a whole run of
    [\\w-] characters."""
    if artifact.binary:
        return {}
    if artifact.per_pattern:
        return {artifact.patterns[0]: [artifact.text]}
    wanted = set(artifact.patterns)
    hits: dict[str, list[str]] = {pid: [] for pid in wanted}
    for line in artifact.text.splitlines():
        for pid in wanted.intersection(TOKEN.findall(line)):
            hits[pid].append(line)
    return hits


def gap(pattern: Pattern, reason: str) -> Plan:
    return Plan(pattern, reason=reason)


def sanitize_line(text: str) -> str:
    """One line of plain text: control characters and line breaks become spaces."""
    if not text.isprintable():  # the per-character pass only for text that needs it
        text = "".join(ch if ch.isprintable() else " " for ch in text)
    return " ".join(text.split())
