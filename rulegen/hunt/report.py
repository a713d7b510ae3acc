"""What `rulegen hunt` prints: a rich table on a terminal, plain text when piped, NDJSON with --json.

Alerts at or above `--min-level` are reported (and set exit code 1); informational ones, and any others below
the threshold, are counted apart per rule. Rules that no producer of the input can carry are listed once each,
with the reason.
"""

from __future__ import annotations

import json
import sys
from collections import Counter
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any, TextIO

from rulegen.hunt.engine import Alert
from rulegen.hunt.rules import LEVELS, RuleInfo
from rulegen.present import print_table


def at_or_above(level: str, minimum: str) -> bool:
    return LEVELS.index(level) >= LEVELS.index(minimum) if level in LEVELS else True


def _time(seconds: float | None) -> str | None:
    if seconds is None:
        return None
    return datetime.fromtimestamp(seconds, UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


def alert_json(alert: Alert) -> dict[str, Any]:
    data: dict[str, Any] = {
        "rule": {"id": alert.rule.id, "title": alert.rule.title, "level": alert.rule.level,
                 "tags": list(alert.rule.tags), "file": alert.rule.path},
        "producer": alert.producer,
        "source": {"file": alert.source[0], "line": alert.source[1]},
    }
    if alert.group is not None:
        data["correlation"] = {"group": alert.group, "value": alert.metric,
                               "first": _time(alert.window[0]) if alert.window else None,
                               "last": _time(alert.window[1]) if alert.window else None}
    if alert.patterns:
        data["rulegen_patterns"] = alert.patterns
    data["events"] = [{"source": {"file": e.file, "line": e.line}, "fields": e.fields, "record": e.record}
                      for e in alert.events]
    return data


def write_ndjson(alerts: Iterable[Alert], out: TextIO = sys.stdout) -> None:
    for alert in alerts:
        out.write(json.dumps(alert_json(alert), ensure_ascii=False, sort_keys=False, default=str) + "\n")


def _what(alert: Alert) -> str:
    if alert.group is not None:
        keys = ", ".join(f"{k}={v}" for k, v in alert.group.items())
        return f"{keys}: {alert.metric} within the window"
    fields = alert.events[0].fields if alert.events else {}
    return " ".join(f"{k}={v}" for k, v in fields.items() if k not in ("event_type", "_path"))[:160]


def alerts_table(alerts: list[Alert]) -> None:
    rows = [(a.rule.level, a.rule.title, f"{a.source[0]}:{a.source[1]}", ", ".join(a.patterns) or "-", _what(a))
            for a in alerts]
    print_table("Alerts", ("level", "rule", "source", "rulegen pattern", "what"), rows)


def below_table(counts: Counter[RuleInfo], minimum: str) -> None:
    rows = [(r.level, r.title, str(n)) for r, n in sorted(counts.items(), key=lambda i: (i[0].level, i[0].title))]
    print_table(f"Informational and below {minimum} (not alerts)", ("level", "rule", "events"), rows)


def not_applicable_table(rows: list[tuple[str, str]]) -> None:
    print_table("Rules the input cannot carry (not applicable)", ("rule", "why"), rows)
