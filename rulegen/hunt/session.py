"""One `rulegen hunt` run: the rules converted per producer as producers appear in the logs, the alerts
split by level, rulegen patterns named from out/manifest.json, and the rules no producer of the input carries."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from rulegen.hunt import engine, formats, report
from rulegen.hunt.rules import Plan, RuleInfo, plan, rule_paths


def manifest_patterns(folders: list[Path]) -> tuple[dict[int, str], dict[str, str]]:
    """sid -> pattern and Sigma rule id -> pattern, from a manifest.json in or beside a rule folder."""
    by_sid: dict[int, str] = {}
    by_uuid: dict[str, str] = {}
    for folder in folders:
        for candidate in (folder / "manifest.json", folder.parent / "manifest.json"):
            try:
                manifest = json.loads(candidate.read_text(encoding="utf-8"))
            except (OSError, ValueError):
                continue
            for row in manifest.get("patterns", []):
                if isinstance(row, dict) and "id" in row:
                    if isinstance(row.get("sid"), int):
                        by_sid[row["sid"]] = row["id"]
                    if row.get("uuid"):
                        by_uuid[str(row["uuid"])] = row["id"]
            break
    return by_sid, by_uuid


@dataclass
class Hunt:
    rule_folders: list[Path]
    min_level: str = "low"
    plans: dict[str, Plan] = field(default_factory=dict)
    below: Counter[RuleInfo] = field(default_factory=Counter)
    alerts: int = 0

    def __post_init__(self) -> None:
        self.paths = rule_paths(self.rule_folders)
        self.by_sid, self.by_uuid = manifest_patterns(self.rule_folders)

    def plan_for(self, producer: formats.Producer) -> Plan:
        if producer.name not in self.plans:
            self.plans[producer.name] = plan(self.paths, producer)
        return self.plans[producer.name]

    def run(self, logs: list[Path]) -> Iterator[engine.Alert]:
        """The alerts at or above the minimum level; the others are counted in `below`."""
        for path in logs:
            if not path.is_file():
                raise formats.LogInputError(f"{path}: no such log file")
        for alert in engine.hunt(logs, self.plan_for):
            if not report.at_or_above(alert.rule.level, self.min_level):
                self.below[alert.rule] += 1
                continue
            sids = {e.record.get("rulegen.sid") for e in alert.events} - {None}
            named = [self.by_sid[s] for s in sorted(sids) if s in self.by_sid]
            if alert.rule.id in self.by_uuid:
                named.append(self.by_uuid[alert.rule.id])
            alert.patterns = list(dict.fromkeys(named))
            self.alerts += 1
            yield alert

    def not_applicable(self) -> list[tuple[str, str]]:
        """Rules no producer of the input could carry: (rule file, the reasons per producer)."""
        if not self.plans:
            return []
        rows = []
        for path in self.paths:
            key = str(path)
            if all(key in p.not_applicable for p in self.plans.values()):
                reasons = "; ".join(f"{p.producer.label}: {p.not_applicable[key][1]}" for p in self.plans.values())
                rows.append((key, reasons))
        return rows
