"""Stable identities: SIDs, Sigma UUIDs and revisions, kept in a lock file beside the knowledge.

A pattern keeps its SID and UUID forever; a changed rule text (its fingerprint) gets rev + 1 and a
new `updated` date; a removed pattern's SID is retired and never handed to another pattern.

Each pack keeps its own lock in its folder and gives its new patterns SIDs in its own range (pack.yaml
`sids`), so a pack's SIDs are the same whether it is built alone or with the others. A site that builds its
own folder on top of the packs keeps one lock of its own: the locks of the folders beneath it are "upstream",
a pattern new to the site's lock takes (adopts) its upstream SID when that SID is free, so the SIDs of shipped
rules are the same at every site, and the site's own patterns get SIDs in the site's range.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

from rulegen.errors import KnowledgeError, Problem
from rulegen.model import Pack
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
    adopted: list[str] = field(default_factory=list)  # new to a site's lock, with their upstream SID

    @property
    def any(self) -> bool:
        return bool(self.added or self.retired or self.revised or self.adopted)

    def extend(self, other: LockChanges) -> None:
        for name in ("added", "retired", "revised", "adopted"):
            getattr(self, name).extend(getattr(other, name))


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
    def __init__(self, path: Path, next_sid: int, patterns: dict[str, LockedPattern], retired: dict[str, int],
                 pack: Pack | None = None):
        self.path = path
        self.next_sid = next_sid
        self.patterns = patterns
        self.retired = retired
        self.upstream: dict[str, LockedPattern] = {}
        self.pack = pack  # whose SID range new patterns take; None: the whole local range

    @property
    def sids(self) -> tuple[int, int]:
        return self.pack.sids if self.pack else SID_RANGE

    @classmethod
    def load(cls, path: Path, pack: Pack | None = None, upstream: list[Path] = ()) -> Lock:
        """The lock at `path` (empty when missing) allocating in `pack`'s range, with the patterns of the
        `upstream` locks to adopt."""
        lock = cls._read(path)
        lock.pack = pack
        lock.next_sid = max(lock.next_sid, lock.sids[0])
        for upstream_path in upstream:
            if upstream_path.exists() and upstream_path.resolve() != path.resolve():
                other = cls._read(upstream_path)
                for pid, locked in other.patterns.items():
                    lock.upstream.setdefault(pid, locked)
                if lock.sids[0] < other.next_sid <= lock.sids[1] + 1:  # a site on a site: above the one beneath
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
                self.patterns[pid], adopted = self._new_entry(pid, fingerprints[pid], today)
                (changes.adopted if adopted else changes.added).append(pid)
            elif locked.fingerprint != fingerprints[pid]:
                locked.rev += 1
                locked.updated = today
                locked.fingerprint = fingerprints[pid]
                changes.revised.append(pid)
        return changes

    def _new_entry(self, pid: str, fingerprint: str, today: str) -> tuple[LockedPattern, bool]:
        """The lock entry of a pattern new to this lock, and whether it was adopted from upstream."""
        upstream = self.upstream.get(pid)
        if pid not in self.retired and upstream is not None and upstream.sid not in self._used_sids():
            same = upstream.fingerprint == fingerprint
            return LockedPattern(upstream.sid, upstream.uuid, upstream.rev if same else upstream.rev + 1,
                                 upstream.created, upstream.updated if same else today, fingerprint), True
        sid = self.retired.pop(pid, None)  # the same pattern id coming back keeps its own SID
        if sid is None:
            sid = self._allocate()
        return LockedPattern(sid, rule_uuid(pid), 1, today, today, fingerprint), False

    def sid_changes(self, changes: LockChanges) -> list[SidChange]:
        """The changes with their SIDs and revs, ordered by SID, for a reviewer to read."""
        lines = [SidChange("added", self.patterns[p].sid, p, self.patterns[p].rev) for p in changes.added]
        lines += [SidChange("retired", self.retired[p], p, None) for p in changes.retired]
        lines += [SidChange("revised", self.patterns[p].sid, p, self.patterns[p].rev) for p in changes.revised]
        return sorted(lines, key=lambda c: (c.sid, c.change))

    def _used_sids(self) -> set[int]:
        return {p.sid for p in self.patterns.values()} | set(self.retired.values())

    def _allocate(self) -> int:
        sid, used = self.next_sid, self._used_sids()
        while sid in used:  # a SID adopted from upstream inside this range
            sid += 1
        low, high = self.sids
        if sid > high:
            pack = self.pack
            where = (pack.location.file, pack.location.line) if pack and pack.location else (str(self.path), 1)
            name = f"pack {pack.id}" if pack else "the local range"
            raise KnowledgeError([Problem(*where, None, f"{name}: the SID range {low}-{high} is used up; give the "
                                                        "pack a wider range of its own ('sids' in pack.yaml)")])
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


class LockSet:
    """The locks one build keeps, each recording the patterns of some packs (None: of every pack)."""

    def __init__(self, units: list[tuple[Lock, frozenset[str] | None]]):
        self.units = units
        self.before = {lock.path: lock.dumps() if lock.path.exists() else "" for lock, _ in units}
        self.changes: list[LockChanges] = []

    @property
    def paths(self) -> list[Path]:
        return [lock.path for lock, _ in self.units]

    @property
    def patterns(self) -> dict[str, LockedPattern]:
        return {pid: locked for lock, _ in self.units for pid, locked in lock.patterns.items()}

    def update(self, patterns: list[tuple[str, str]], fingerprints: dict[str, str], today: str,
               switched_off: list[tuple[str, str]] = ()) -> LockChanges:
        """Each lock brought in line with its packs' patterns ((pattern id, pack id) pairs, in knowledge order)."""
        total = LockChanges([], [], [])
        self.changes = []
        for lock, packs in self.units:
            def mine(pairs: list[tuple[str, str]], packs: frozenset[str] | None = packs) -> list[str]:
                return [pid for pid, pack in pairs if packs is None or pack in packs]
            changes = lock.update(mine(patterns), fingerprints, today, mine(switched_off))
            self.changes.append(changes)
            total.extend(changes)
        return total

    def changed(self) -> list[Lock]:
        """The locks whose text the update changed (or that did not exist yet)."""
        return [lock for lock, _ in self.units if lock.dumps() != self.before[lock.path]]

    def stamps(self) -> dict[str, Stamp]:
        return {pid: stamp for lock, _ in self.units for pid, stamp in lock.stamps().items()}

    def sid_changes(self) -> list[SidChange]:
        """What the last update changed, with SIDs and revs, ordered by SID (adopted SIDs are not listed)."""
        lines = [line for (lock, _), changes in zip(self.units, self.changes, strict=True)
                 for line in lock.sid_changes(changes)]
        return sorted(lines, key=lambda c: (c.sid, c.change))
