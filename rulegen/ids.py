"""Stable identities: SIDs, Sigma UUIDs and revisions, kept in a lock file beside the knowledge.

A pattern keeps its SID and UUID forever; a changed rule text (its fingerprint) gets rev + 1 and a
new `updated` date; a removed pattern's SID is retired and never handed to another pattern.

A site that builds its own folder on top of the shipped knowledge keeps its own lock. The locks of the
folders beneath it are "upstream": a pattern new to the site's lock takes its upstream SID when that SID
is free, so the SIDs of shipped rules are the same at every site, and the site's own patterns get SIDs
above every upstream one.
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


@dataclass(frozen=True)
class SidChange:
    """One line of what a build changed: a SID added, retired, or revised (rev + 1)."""

    change: str  # added | retired | revised
    sid: int
    pattern: str
    rev: int | None

    def __str__(self) -> str:
        rev = f"rev {self.rev - 1} -> {self.rev}" if self.change == "revised" else \
            (f"rev {self.rev}" if self.rev else "")
        return f"{self.change:<8} sid {self.sid}  {rev:<13} {self.pattern}"


class Lock:
    def __init__(self, path: Path, next_sid: int, patterns: dict[str, LockedPattern], retired: dict[str, int]):
        self.path = path
        self.next_sid = next_sid
        self.patterns = patterns
        self.retired = retired
        self.upstream: dict[str, LockedPattern] = {}

    @classmethod
    def load(cls, path: Path, upstream: list[Path] = ()) -> Lock:
        """The lock at `path` (empty when missing), with the patterns of the `upstream` locks to adopt."""
        lock = cls._read(path)
        for upstream_path in upstream:
            if upstream_path.exists() and upstream_path.resolve() != path.resolve():
                other = cls._read(upstream_path)
                for pid, locked in other.patterns.items():
                    lock.upstream.setdefault(pid, locked)
                lock.next_sid = max(lock.next_sid, other.next_sid)
        return lock

    @classmethod
    def _read(cls, path: Path) -> Lock:
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

    def update(self, pattern_ids: list[str], fingerprints: dict[str, str], today: str,
               switched_off: list[str] = ()) -> LockChanges:
        """Bring the lock in line with the current patterns (in knowledge order). Patterns switched off by
        an override keep their lock entry untouched: neither retired nor revised."""
        changes = LockChanges([], [], [])
        current = set(pattern_ids) | set(switched_off)
        for pid in sorted(set(self.patterns) - current):
            self.retired[pid] = self.patterns.pop(pid).sid
            changes.retired.append(pid)
        for pid in pattern_ids:
            locked = self.patterns.get(pid)
            if locked is None:
                self.patterns[pid] = self._new_entry(pid, fingerprints[pid], today)
                changes.added.append(pid)
            elif locked.fingerprint != fingerprints[pid]:
                locked.rev += 1
                locked.updated = today
                locked.fingerprint = fingerprints[pid]
                changes.revised.append(pid)
        return changes

    def _new_entry(self, pid: str, fingerprint: str, today: str) -> LockedPattern:
        upstream = self.upstream.get(pid)
        if pid not in self.retired and upstream is not None and upstream.sid not in self._used_sids():
            same = upstream.fingerprint == fingerprint
            return LockedPattern(upstream.sid, upstream.uuid, upstream.rev if same else upstream.rev + 1,
                                 upstream.created, upstream.updated if same else today, fingerprint)
        sid = self.retired.pop(pid, None)  # the same pattern id coming back keeps its own SID
        if sid is None:
            sid = self._allocate()
        return LockedPattern(sid, rule_uuid(pid), 1, today, today, fingerprint)

    def sid_changes(self, changes: LockChanges) -> list[SidChange]:
        """The changes with their SIDs and revs, ordered by SID, for a reviewer to read."""
        lines = [SidChange("added", self.patterns[p].sid, p, self.patterns[p].rev) for p in changes.added]
        lines += [SidChange("retired", self.retired[p], p, None) for p in changes.retired]
        lines += [SidChange("revised", self.patterns[p].sid, p, self.patterns[p].rev) for p in changes.revised]
        return sorted(lines, key=lambda c: (c.sid, c.change))

    def _used_sids(self) -> set[int]:
        return {p.sid for p in self.patterns.values()} | set(self.retired.values())

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
