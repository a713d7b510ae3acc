"""Stable identities: SIDs, Sigma UUIDs and revisions, kept in a lock file beside the knowledge.

A pattern keeps its SID and UUID forever; a changed rule text (its fingerprint) gets rev + 1 and a
new `updated` date; a removed pattern's SID is retired and never handed to another pattern.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

from rulegen.errors import KnowledgeError, Problem
from rulegen.targets import Stamp
from rulegen.targets.sigma import rule_uuid
from rulegen.targets.suricata import SID_RANGE

LOCK_NAME = "rulegen.lock"
FORMAT = 1


@dataclass
class LockedPattern:
    sid: int
    uuid: str
    rev: int
    created: str
    updated: str
    fingerprint: str


@dataclass
class LockChanges:
    added: list[str]
    retired: list[str]
    revised: list[str]

    @property
    def any(self) -> bool:
        return bool(self.added or self.retired or self.revised)


class Lock:
    def __init__(self, path: Path, next_sid: int, patterns: dict[str, LockedPattern], retired: dict[str, int]):
        self.path = path
        self.next_sid = next_sid
        self.patterns = patterns
        self.retired = retired

    @classmethod
    def load(cls, path: Path) -> Lock:
        if not path.exists():
            return cls(path, SID_RANGE[0], {}, {})
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as exc:
            raise KnowledgeError([Problem(str(path), exc.lineno, None, f"lock file is not valid JSON: {exc.msg}")]) \
                from None
        except (OSError, UnicodeDecodeError) as exc:
            raise KnowledgeError([Problem(str(path), 1, None, f"cannot read lock file: {exc}")]) from None
        try:
            if data["format"] != FORMAT:
                raise ValueError(f"unknown lock format {data['format']!r}")
            patterns = {pid: LockedPattern(**fields) for pid, fields in data["patterns"].items()}
            retired = {pid: int(sid) for pid, sid in data["retired"].items()}
            next_sid = int(data["next_sid"])
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise KnowledgeError([Problem(str(path), 1, None, f"lock file is malformed: {exc}")]) from None
        used = [p.sid for p in patterns.values()] + list(retired.values())
        if len(used) != len(set(used)):
            raise KnowledgeError([Problem(str(path), 1, None, "lock file gives one SID to two patterns")])
        # never below a SID already handed out, even if next_sid was edited by hand
        next_sid = max([next_sid, *(s + 1 for s in used)])
        return cls(path, next_sid, patterns, retired)

    def update(self, pattern_ids: list[str], fingerprints: dict[str, str], today: str) -> LockChanges:
        """Bring the lock in line with the current patterns (in knowledge order)."""
        changes = LockChanges([], [], [])
        current = set(pattern_ids)
        for pid in sorted(set(self.patterns) - current):
            self.retired[pid] = self.patterns.pop(pid).sid
            changes.retired.append(pid)
        for pid in pattern_ids:
            locked = self.patterns.get(pid)
            if locked is None:
                sid = self.retired.pop(pid, None)  # the same pattern id coming back keeps its own SID
                if sid is None:
                    sid = self._allocate()
                self.patterns[pid] = LockedPattern(sid, rule_uuid(pid), 1, today, today, fingerprints[pid])
                changes.added.append(pid)
            elif locked.fingerprint != fingerprints[pid]:
                locked.rev += 1
                locked.updated = today
                locked.fingerprint = fingerprints[pid]
                changes.revised.append(pid)
        return changes

    def _allocate(self) -> int:
        sid = self.next_sid
        if sid > SID_RANGE[1]:
            raise KnowledgeError([Problem(str(self.path), 1, None, "the local SID range 1000000-1999999 is used up")])
        self.next_sid = sid + 1
        return sid

    def stamps(self) -> dict[str, Stamp]:
        return {pid: Stamp(p.sid, p.uuid, p.rev, p.created, p.updated) for pid, p in self.patterns.items()}

    def dumps(self) -> str:
        data = {
            "format": FORMAT,
            "comment": "rulegen lock: stable SIDs, Sigma UUIDs and revisions. Written by `rulegen build`; commit it.",
            "next_sid": self.next_sid,
            "patterns": {pid: asdict(self.patterns[pid]) for pid in sorted(self.patterns)},
            "retired": dict(sorted(self.retired.items())),
        }
        return json.dumps(data, indent=2, sort_keys=True, ensure_ascii=False) + "\n"
