"""Targets: what of a pattern each output format can express, and the context its templates get.

Each target module exposes `NAME`, `plan(pattern, kb) -> Plan` and `render(plans, stamps, env, kb)`.
A Plan is either expressed (with a context of plain, JSON-able values) or a gap with its reason.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from rulegen.model import Pattern

TARGETS = ("suricata", "sigma", "iptables", "nftables")


@dataclass(frozen=True)
class Plan:
    pattern: Pattern
    context: dict[str, Any] | None = None
    reason: str | None = None

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
    """One generated file and the patterns (with their IDs) it carries."""

    path: str  # relative to out/
    text: str
    patterns: list[str] = field(default_factory=list)
    per_pattern: bool = False  # the whole file is one pattern's rule (Sigma); else lines name their pattern
    # the part of a line that only places the rule in the file (iptables' `-A CHAIN `: which chain depends
    # on the neighbouring patterns too), left out of the pattern's fingerprint
    placement: str | None = None


def gap(pattern: Pattern, reason: str) -> Plan:
    return Plan(pattern, reason=reason)


def sanitize_line(text: str) -> str:
    """One line of plain text: control characters and line breaks become spaces."""
    cleaned = "".join(ch if ch.isprintable() else " " for ch in text)
    return " ".join(cleaned.split())
