"""`rulegen new entry` and `rulegen new pattern`: commented YAML skeletons a site edits, which build as they are on
top of the shipped knowledge. A pattern given a file goes to the end of its entry's `patterns:` list, text kept."""

from __future__ import annotations

import re
import textwrap
from pathlib import Path

import yaml

from rulegen.errors import KnowledgeError, Problem
from rulegen.knowledge import _LineLoader
from rulegen.schema import SCHEMA_FILE

# What each detect kind's skeleton says: (title start, category, classtype, severity, extra keys, why it may be benign)
DETECTS = {
    "probe": ("Inbound probe of", "SCAN", "attempted-recon", "low", "",
              "A colleague or a monitoring system checking the port from outside."),
    "traffic": ("Inbound traffic to", "POLICY", "policy-violation", "low", "",
                "A partner that the site lets reach the service from outside."),
    "payload": ("Inbound command to", "POLICY", "policy-violation", "medium", """\
match:  # exactly one match kind (docs/knowledge.md, "Worked examples")
  content:  # raw bytes, all present, in order
    - {text: "ADMIN", offset: 0, depth: 5}  # control characters need double quotes: "QUIT\\r\\n"
""", "An administrator using the service's admin command from outside on purpose."),
    "sweep": ("Sweep of many hosts on", "SCAN", "attempted-recon", "low", """\
sweep: {distinct: dst_ip, count: 10, seconds: 60}  # dst_ip: many hosts; dst_port: many ports
""", "An inventory scan by the site's own scanner from an outside address."),
}

ENTRY = """\
# yaml-language-server: $schema={schema}
# A knowledge file of your site (docs/knowledge.md). Build it on top of rulegen's own knowledge:
#   rulegen build -k @shipped -k {folder}
# and prove what it builds with `rulegen selftest -k @shipped -k {folder}`.
entries:
  - id: {entry_id}  # unique slug in every knowledge folder you build together
    table: destination  # destination: a port a service listens on; source: a source port
    ports: [{port}]  # integers or "low-high" ranges
    protocols: [{transport}]  # tcp and/or udp
    service: {entry_id}
    title: {title}
    description:
      en: >-  # English, at least a sentence: the Sigma rules' description
        What listens on port {port} here, who may reach it, and why traffic to it from outside matters.
      # zh: >-  # Chinese: optional at a site (rulegen's shipped knowledge has both)
    references:  # at least one URL: where the facts come from (ATT&CK goes under attack:)
      - https://intranet.example/wiki/{entry_id}
    tags: [site]  # optional slugs
    patterns:  # one or more; `rulegen new pattern FILE` adds one at the end
{patterns}"""

PATTERN = """\
- id: {pattern_id}  # unique slug; by convention the entry id first
  title: {title}
  category: {category}  # SCAN | DOS | MALWARE | POLICY | INFO | EXPLOIT | ADWARE
  direction: inbound  # inbound (outside -> home) | outbound | internal | broadcast | any
  transport: {transport}
  dst_ports: [{port}]
  detect: {detect}  # probe | traffic | payload | sweep
{extra}  severity: {severity}  # informational | low | medium | high | critical
  classtype: {classtype}  # Suricata's classification.config
  attack:  # optional: MITRE ATT&CK Enterprise
    tactic: {tactic}
    technique: {technique}
  response: alert  # alert | log | drop | reject (the firewalls act on log, drop, reject)
  false_positives: >-  # when it fires on benign traffic
    {false_positives}
"""
ATTACK = {"probe": ("reconnaissance", "T1595.001"), "traffic": ("initial-access", "T1133"),
          "payload": ("initial-access", "T1190"), "sweep": ("reconnaissance", "T1595.001")}


COMMENT_COLUMN = 40
TRAILING_COMMENT = re.compile(r"^(.*?\S)  +(# .*)$")


def _align(text: str) -> str:
    """Trailing comments start at one column, whatever the values before them."""
    return "".join(TRAILING_COMMENT.sub(lambda m: m.group(1).ljust(COMMENT_COLUMN - 1) + " " + m.group(2), line)
                   for line in text.splitlines(keepends=True))


def pattern_text(entry_id: str, pattern_id: str, detect: str, port: int, transport: str, indent: int = 0,
                 number: int = 1) -> str:
    title_start, category, classtype, severity, extra, benign = DETECTS[detect]
    tactic, technique = ATTACK[detect]
    title = f"{title_start} {entry_id} port {port}" + (f" ({number})" if number > 1 else "")
    text = PATTERN.format(pattern_id=pattern_id, title=title,
                          category=category, transport=transport, port=port, detect=detect,
                          extra=textwrap.indent(extra, "  "), severity=severity, classtype=classtype,
                          tactic=tactic, technique=technique, false_positives=benign)
    return _align(textwrap.indent(text, " " * indent))


def entry_text(entry_id: str, port: int, transport: str, detect: str, folder: str) -> str:
    patterns = pattern_text(entry_id, f"{entry_id}-{detect}", detect, port, transport, indent=6)
    return _align(ENTRY.format(schema=SCHEMA_FILE, folder=folder, entry_id=entry_id, port=port, transport=transport,
                               title=f"{entry_id} on port {port}", patterns=patterns))


class SkeletonError(KnowledgeError):
    """The file a pattern should go into cannot take it (exit 2, nothing written)."""


def add_pattern(path: Path, entry_id: str | None, pattern_id: str | None, detect: str) -> tuple[str, str]:
    """The text of `path` with a new pattern at the end of the entry's `patterns:`, and the pattern's id.
    The entry's first port and protocol are the pattern's; `entry_id` may be left out when the file has one."""
    def fail(line: int, message: str) -> SkeletonError:
        return SkeletonError([Problem(str(path), line, entry_id, message)])

    try:
        text = path.read_text(encoding="utf-8")
        data = yaml.load(text, Loader=_LineLoader)  # noqa: S506 - a SafeLoader
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        raise fail(1, f"cannot read the file as YAML: {exc}") from None
    entries = data.get("entries") if isinstance(data, dict) else None
    if not isinstance(entries, list) or not entries:
        raise fail(1, "the file has no entries: write one with `rulegen new entry`")
    ids = [e.get("id") for e in entries if isinstance(e, dict)]
    if entry_id is None:
        if len(ids) != 1:
            raise fail(1, f"the file has {len(ids)} entries: name one with --entry ({', '.join(map(str, ids))})")
        entry_id = ids[0]
    if entry_id not in ids:
        raise fail(1, f"no entry {entry_id!r} in the file (it has: {', '.join(map(str, ids))})")
    entry = entries[ids.index(entry_id)]
    patterns = entry.get("patterns")
    if not isinstance(patterns, list) or not patterns or not getattr(patterns, "item_lines", None):
        raise fail(entry.line, "the entry has no pattern list to add to")
    lines = text.splitlines(keepends=True)
    first = lines[patterns.item_lines[0] - 1]
    if "-" not in first or first.lstrip()[:1] != "-":
        raise fail(patterns.line, "the entry's patterns are a flow list ([...]): write them one per '- ' line")
    indent = len(first) - len(first.lstrip())
    taken = {str(p.get("id")) for e in entries if isinstance(e, dict) for p in e.get("patterns") or []
             if isinstance(p, dict)}
    if pattern_id in taken:
        raise fail(patterns.line, f"pattern {pattern_id!r} is already in the file: give another --id")
    number = 1
    base = pattern_id or f"{entry_id}-{detect}"
    pattern_id = base
    while pattern_id in taken:  # the default id: the next free number
        number += 1
        pattern_id = f"{base}-{number}"
    ports = entry.get("ports") or [47001]
    port = int(re.match(r"\s*(\d+)", str(ports[0])).group(1)) if re.match(r"\s*\d", str(ports[0])) else 47001
    transport = (entry.get("protocols") or ["tcp"])[0]
    end = patterns.item_lines[-1]  # 1-based line of the last item; its block ends before a shallower line
    while end < len(lines):
        line = lines[end]
        depth = len(line) - len(line.lstrip())
        if line.strip() and not line.lstrip().startswith("#") and (
                depth < indent or (depth == indent and not line.lstrip().startswith("-"))):
            break
        end += 1
    while end > patterns.item_lines[-1] and not lines[end - 1].strip():
        end -= 1  # keep the blank lines between entries where they were
    if end and not lines[end - 1].endswith("\n"):
        lines[end - 1] += "\n"
    new = pattern_text(str(entry_id), pattern_id, detect, port, str(transport), indent, number)
    return "".join([*lines[:end], new, *lines[end:]]), pattern_id
