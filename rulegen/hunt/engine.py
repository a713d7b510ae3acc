"""Run the converted rules over log records in an in-memory SQLite database, a batch at a time.

Each producer has its own database. A batch of records (BATCH_SIZE) fills the table `batch`, one column per
field the rules read (NUMERIC affinity with NOCASE collation: ports compare as numbers, strings as Sigma does,
case-insensitively; a record's array values give one row per value, so an equality matches any value, as in
Sigma). Each detection is one query per batch; the columns the rules compare with numbers (ports) are indexed, so
most queries read only the rows of their port.
Correlations: the events any correlation's base rule matches are kept in `held` with their time; after each batch
every correlation's plan (pySigma-backend-sqlite's sliding windows) runs over `held`; then events older than the
longest timespan (plus SLACK for records written out of order) are dropped, and so are those no future window can
need (see `compact`). Memory is bounded by the batch and the correlation windows, not by the log. A correlation
alerts once per group for a window, and again only for a window that starts after the last one it reported ended.
"""

from __future__ import annotations

import itertools
import json
import re
import sqlite3
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

import yaml
from sigma.backends.sqlite.runtime import execute_plan

from rulegen.hunt import formats
from rulegen.hunt.rules import BATCH, HELD, PIPELINES, TIME, Plan, RuleInfo

BATCH_SIZE = 20000
SLACK = 60.0  # seconds a record may arrive out of time order and still count in its window
EVIDENCE = 20  # events listed per correlation alert


@dataclass
class Event:
    file: str
    line: int
    fields: dict[str, Any]  # the rule-relevant fields, under their Sigma names
    record: dict[str, Any]  # the record as the producer wrote it


@dataclass
class Alert:
    rule: RuleInfo
    producer: str
    events: list[Event]
    group: dict[str, Any] | None = None  # a correlation's group-by values
    window: tuple[float, float] | None = None  # a correlation's first and last event times (epoch seconds)
    metric: Any = None
    patterns: list[str] = field(default_factory=list)  # rulegen patterns named by a LOG prefix

    @property
    def source(self) -> tuple[str, int]:
        return (self.events[0].file, self.events[0].line) if self.events else ("", 0)


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _walk(value: Any, parts: list[str]) -> Any:
    for i, part in enumerate(parts):
        if isinstance(value, dict):
            value = value.get(part)
        elif isinstance(value, list):  # an array of objects (EVE dns.queries[]): every element's value
            found = [_walk(item, parts[i:]) for item in value]
            return [v for item in found for v in (item if isinstance(item, list) else [item]) if v is not None]
        else:
            return None
    return value


def getter(name: str) -> Callable[[dict], Any]:
    """The value of a column in any record: the key itself (Zeek, ulogd2 write flat dotted names), else the
    nested path (EVE)."""
    if "." not in name:
        return lambda record: record.get(name)
    parts = name.split(".")

    def get(record: dict) -> Any:
        value = record.get(name)
        return _walk(record, parts) if value is None else value
    return get


SPECIAL = {bool, dict}  # values a column holds as a number or as JSON text
LIST = list


def indexed(columns: list[str], wheres: list[str]) -> list[str]:
    """The columns some rule compares with a number (`dest_port=23`, `"id.resp_p">=0`): worth an index."""
    return [c for c in columns if any(re.search(rf"(?<![\w.`\"]){re.escape(q)}\s*(?:=|>=|<=|>|<)\s*-?\d", w)
                                      for w in wheres for q in (c, f"`{c}`"))]


def _cell(value: Any) -> Any:
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, dict):
        return json.dumps(value, sort_keys=True)
    return value


@lru_cache(maxsize=1024)
def _compiled(pattern: str) -> re.Pattern[str]:
    return re.compile(pattern)


def regexp(pattern: str | None, value: Any) -> bool:
    """SQLite's REGEXP operator (`value REGEXP pattern`), which the backend emits for `|re`: Python's re.search,
    as Sigma's regular expressions are matched unanchored unless the pattern anchors them."""
    return pattern is not None and value is not None and _compiled(pattern).search(str(value)) is not None


def _applies(item: dict, logsource: tuple[str, str, str]) -> bool:
    """Whether a pipeline item's log source conditions hold for a rule's (category, product, service)."""
    conditions = [c for c in item.get("rule_conditions", []) if c.get("type") == "logsource"]
    have = dict(zip(("category", "product", "service"), logsource, strict=True))
    matched = [all(have[k] == str(c[k]) for k in have if k in c) for c in conditions]
    if not matched:
        return True
    return not any(matched) if item.get("rule_cond_not") else (all(matched) if item.get("rule_cond_op") == "and"
                                                                 else any(matched))


def sigma_names(pipeline: str, logsource: tuple[str, str, str]) -> tuple[dict[str, str], set[str]]:
    """Read back from the pipeline, for a rule of this log source: producer field -> Sigma field (its field name
    mappings), and the fields it only scopes records by (its added conditions: event_type, _path...)."""
    document = yaml.safe_load((PIPELINES / pipeline).read_text(encoding="utf-8"))
    names: dict[str, str] = {}
    scope: set[str] = set()
    for item in document.get("transformations", []):
        if not _applies(item, logsource):
            continue
        if item.get("type") == "add_condition":
            scope |= set(item["conditions"])
        elif item.get("type") == "field_name_mapping":
            for sigma, target in item["mapping"].items():
                for name in target if isinstance(target, list) else [target]:
                    names.setdefault(name, sigma)
    return names, scope - set(names)


class Matcher:
    """One producer's plan, database and correlation state."""

    def __init__(self, plan: Plan) -> None:
        self.plan = plan
        self.columns = sorted(plan.columns)
        self.getters = {c: getter(c) for c in self.columns}
        # a flat key as it is (Zeek, ulogd2, kernel lines), or a nested path (EVE): (first part, the rest)
        self.flat = None if plan.producer.nested else self.columns
        self.nested = [(c.split(".", 1)[0], c.split(".")[1:]) for c in self.columns]
        self.naming: dict[tuple[str, str, str], tuple[dict[str, str], set[str]]] = {}  # per log source
        self.db = sqlite3.connect(":memory:")
        self.db.create_function("REGEXP", 2, regexp, deterministic=True)
        defs = ", ".join(f"{_quote(c)} NUMERIC COLLATE NOCASE" for c in self.columns)
        self.db.execute(f"CREATE TABLE {BATCH} (_n INTEGER, _line INTEGER, {TIME} REAL{', ' + defs if defs else ''})")
        self.db.execute(f"CREATE TABLE {HELD} (_file INTEGER, _line INTEGER, {TIME} REAL{', ' + defs if defs else ''})")
        self.insert = (f"INSERT INTO {BATCH} VALUES ({', '.join('?' * (len(self.columns) + 3))})")
        self.scans = [(info, f"SELECT DISTINCT _n FROM {BATCH} WHERE {where}") for info, where in plan.detections]
        for column in indexed(self.columns, [w for _, w in plan.detections]):
            self.db.execute(f"CREATE INDEX {_quote('i_' + column)} ON {BATCH} ({_quote(column)})")
        self.bases = " OR ".join(f"({w})" for w in plan.bases) or None
        self.hold = f"INSERT INTO {HELD} VALUES ({', '.join('?' * (len(self.columns) + 3))})"
        self.held_records: dict[tuple[int, int], tuple[str, dict]] = {}  # (file index, line) -> (file, record)
        self.reported: dict[tuple[str, str], float] = {}  # (correlation, group) -> end of the last window reported
        self.latest = float("-inf")

    def rows(self, batch: list[tuple[int, dict, bytes]], timestamp: Callable[[dict], float | None] | None = None
             ) -> Iterator[tuple]:
        """(index in the batch, line, time, the columns' values); the time only when `timestamp` is given."""
        flat, nested = self.flat, self.nested
        for n, (line, record, _) in enumerate(batch):
            get = record.get
            values = [get(name) for name in flat] if flat is not None else \
                [get(top) if not rest else _walk(get(top), rest) for top, rest in nested]
            if SPECIAL & set(map(type, values)):
                values = [_cell(v) for v in values]
            stamp = timestamp(record) if timestamp else None
            if LIST not in map(type, values):
                yield (n, line, stamp, *values)
                continue
            lists = [i for i, v in enumerate(values) if isinstance(v, list)]
            for combo in itertools.product(*[values[i] or [None] for i in lists]):
                for i, v in zip(lists, combo, strict=True):
                    values[i] = _cell(v)
                yield (n, line, stamp, *values)

    def names(self, rule: RuleInfo) -> tuple[dict[str, str], set[str]]:
        if rule.logsource not in self.naming:
            self.naming[rule.logsource] = sigma_names(self.plan.producer.pipeline, rule.logsource)
        return self.naming[rule.logsource]

    def event(self, rule: RuleInfo, file: str, line: int, record: dict) -> Event:
        """The record, and the fields the rule reads under the Sigma names of its log source."""
        names, scope = self.names(rule)
        fields = {}
        for column in rule.fields:
            value = self.getters[column](record)
            if value is not None and column not in scope:
                fields[names.get(column, column)] = value
        return Event(file, line, fields, record)

    def feed(self, file_index: int, file: str, batch: list[tuple[int, dict, bytes]]) -> Iterator[Alert]:
        self.db.execute(f"DELETE FROM {BATCH}")
        self.db.executemany(self.insert, self.rows(batch))
        for info, sql in self.scans:
            for (n,) in self.db.execute(sql).fetchall():
                line, record, _ = batch[n]
                yield Alert(info, self.plan.producer.name, [self.event(info, file, line, record)])
        if self.bases is None:
            return
        held = [n for (n,) in self.db.execute(f"SELECT DISTINCT _n FROM {BATCH} WHERE {self.bases} ORDER BY _n")]
        if not held:
            return
        timestamp = self.plan.producer.timestamp
        kept = [batch[n] for n in held]
        rows = [(file_index, *row[1:]) for row in self.rows(kept, timestamp)]
        self.db.executemany(self.hold, rows)
        for line, record, _ in kept:
            self.held_records[(file_index, line)] = (file, record)
        self.latest = max([self.latest, *(r[2] for r in rows if r[2] is not None)])
        yield from self.correlate()
        self.prune()
        self.compact()

    def correlate(self) -> Iterator[Alert]:
        for correlation in self.plan.correlations:
            windows, _ = execute_plan(self.db, correlation.plan, include_events=False)
            for row in windows:
                ids = [int(str(i).split(":", 1)[1]) for i in row["event_ids"]]
                marks = ", ".join("?" * len(ids))
                first, last = self.db.execute(f"SELECT min({TIME}), max({TIME}) FROM {HELD} WHERE rowid IN ({marks})",
                                              ids).fetchone()
                key = (correlation.info.path, json.dumps(row["group_keys"], sort_keys=True))
                if first is None or first <= self.reported.get(key, float("-inf")):
                    continue  # this window overlaps one already reported for the group
                self.reported[key] = last
                shown = self.db.execute(f"SELECT _file, _line FROM {HELD} WHERE rowid IN ({marks}) "
                                        f"ORDER BY {TIME}, _file, _line LIMIT {EVIDENCE}", ids).fetchall()
                info = correlation.info
                events = [self.event(info, self.held_records[k][0], k[1], self.held_records[k][1]) for k in shown
                          if k in self.held_records]
                names = self.names(info)[0]
                yield Alert(info, self.plan.producer.name, events,
                            group={names.get(k, k): v for k, v in row["group_keys"].items()},
                            window=(first, last), metric=row["metric_value"])

    def compact(self) -> None:
        """After the windows were evaluated: of the events a value_count correlation keeps, only the latest of each
        (group, value) can still change a window that ends from now on, so the others go (every event of the other
        correlation types stays). This keeps the windows' SQL, which weighs each kept event against the others of
        its group, from growing with busy ordinary traffic."""
        keep = []
        for c in self.plan.correlations:
            where = " OR ".join(f"({w})" for w in c.bases) or "0"
            if c.distinct:
                keys = ", ".join(_quote(k) for k in c.distinct)
                keep.append(f"SELECT max(rowid) FROM {HELD} WHERE {where} GROUP BY {keys}")
            else:
                keep.append(f"SELECT rowid FROM {HELD} WHERE {where}")
        if not keep:
            return
        self.db.execute("CREATE TEMP TABLE IF NOT EXISTS keep (id INTEGER PRIMARY KEY)")
        self.db.execute("DELETE FROM keep")
        self.db.execute(f"INSERT OR IGNORE INTO keep {' UNION '.join(keep)}")
        drop = "rowid NOT IN (SELECT id FROM keep)"
        for key in self.db.execute(f"SELECT _file, _line FROM {HELD} WHERE {drop}").fetchall():
            self.held_records.pop(key, None)
        self.db.execute(f"DELETE FROM {HELD} WHERE {drop}")

    def prune(self) -> None:
        """Drop the events, and the reported windows, that ended before the longest timespan (plus SLACK)."""
        horizon = self.latest - self.plan.window - SLACK
        old = f"{TIME} < ? OR {TIME} IS NULL"
        gone = self.db.execute(f"SELECT _file, _line FROM {HELD} WHERE {old}", (horizon,)).fetchall()
        if gone:
            self.db.execute(f"DELETE FROM {HELD} WHERE {old}", (horizon,))
            for key in gone:
                self.held_records.pop(key, None)
        self.reported = {k: end for k, end in self.reported.items() if end >= horizon}


def batches(records: Iterable[tuple[int, dict, bytes]]) -> Iterator[list[tuple[int, dict, bytes]]]:
    batch: list[tuple[int, dict, bytes]] = []
    for item in records:
        batch.append(item)
        if len(batch) >= BATCH_SIZE:
            yield batch
            batch = []
    if batch:
        yield batch


def hunt(files: list[Path], plan_for: Callable[[formats.Producer], Plan]) -> Iterator[Alert]:
    """Every alert of every file, in file order; `plan_for` converts the rules for a producer once."""
    matchers: dict[str, Matcher] = {}
    for index, path in enumerate(files):
        producer = formats.detect(path)
        if producer.name not in matchers:
            matchers[producer.name] = Matcher(plan_for(producer))
        matcher = matchers[producer.name]
        for batch in batches(formats.read(path, producer)):
            yield from matcher.feed(index, str(path), batch)
