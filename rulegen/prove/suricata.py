"""Prove the Suricata rules: each expressed pattern's sid alerts on its own capture; normal traffic stays quiet.

One `suricata -r` process per capture (about 0.1 s each with rulegen's rules), run in parallel:
every capture starts with empty flow, host and threshold tables, so an alert is attributed to its
capture by the log folder it lands in.
"""

from __future__ import annotations

import json
import os
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from rulegen.model import KnowledgeBase
from rulegen.prove import Proof, captures
from rulegen.validate import engines
from rulegen.validate.suricata import DATA, MINIMAL_CONFIG, classification_file

TARGET = "suricata"
NORMAL = "normal-traffic"
UNICAST = "~unicast"  # suffix of a broadcast pattern's unicast look-alike capture
LOWEST_PRIORITY = 4
REPLAY_TIMEOUT = 120

# The minimal config of `rulegen validate`, plus eve.json with alerts (and their rule metadata).
REPLAY_CONFIG = MINIMAL_CONFIG + """outputs:
  - eve-log:
      enabled: yes
      filetype: regular
      filename: eve.json
      types:
        - alert:
            metadata: yes
"""


@dataclass(frozen=True)
class Alert:
    sid: int
    priority: int  # eve's alert.severity is the rule's priority (1 highest, 4 lowest)
    pattern: str | None  # the rule's rulegen_pattern metadata
    src: str
    dst: str


@dataclass
class Replay:
    name: str  # the pattern id, or "normal-traffic"
    pcap: Path
    alerts: list[Alert] = field(default_factory=list)
    error: str | None = None
    expect_dsts: tuple[str, ...] = ()  # destinations that must each raise the sid (the broadcast forms)

    def count(self, sid: int) -> int:
        return sum(1 for a in self.alerts if a.sid == sid)


def expressed(out_dir: Path) -> dict[str, int]:
    """pattern id -> sid, for every pattern that out/manifest.json says the suricata target expresses."""
    manifest = json.loads((out_dir / "manifest.json").read_text(encoding="utf-8"))
    return {p["id"]: p["sid"] for p in manifest["patterns"]
            if p["coverage"].get(TARGET, {}).get("expressed") and p["coverage"][TARGET].get("built", True)}


def write_config(work_dir: Path) -> Path:
    config = work_dir / "suricata.yaml"
    config.write_text(REPLAY_CONFIG.format(classification=classification_file(), reference=DATA / "reference.config"),
                      encoding="utf-8")
    return config


def read_alerts(eve: Path) -> list[Alert]:
    alerts = []
    if not eve.exists():
        return alerts
    for line in eve.read_text(encoding="utf-8", errors="replace").splitlines():
        event = json.loads(line) if line.strip() else {}
        if event.get("event_type") != "alert":
            continue
        alert = event["alert"]
        pattern = (alert.get("metadata") or {}).get("rulegen_pattern") or [None]
        alerts.append(Alert(alert["signature_id"], alert.get("severity", 3), pattern[0],
                            f"{event.get('src_ip')}:{event.get('src_port', '')}",
                            f"{event.get('dest_ip')}:{event.get('dest_port', '')}"))
    return alerts


def replay_one(binary: str, config: Path, rules: Path, pcap: Path, log_dir: Path) -> Replay:
    log_dir.mkdir(parents=True, exist_ok=True)
    (log_dir / "eve.json").unlink(missing_ok=True)  # suricata appends to an existing eve.json
    replay = Replay(pcap.stem, pcap)
    result = engines.run([binary, "-c", str(config), "-r", str(pcap), "-S", str(rules), "-l", str(log_dir),
                          "-k", "none", "--runmode", "single"], timeout=REPLAY_TIMEOUT)
    if result.returncode != 0:
        tail = (result.stderr or result.stdout).strip().splitlines()[-3:]
        replay.error = f"suricata exit {result.returncode}: {' | '.join(tail)}"
    replay.alerts = read_alerts(log_dir / "eve.json")
    return replay


def run(kb: KnowledgeBase, out_dir: Path, work_dir: Path, binary: str | None = None) -> dict[str, Replay]:
    """Write a capture per expressed pattern plus the normal-traffic capture, and replay each one."""
    binary = binary or engines.find("suricata")
    if binary is None:
        raise FileNotFoundError("suricata not found")
    work_dir.mkdir(parents=True, exist_ok=True)
    config = write_config(work_dir)
    rules = out_dir / "suricata" / "rulegen.rules"
    patterns = {p.id: p for p in kb.patterns}
    folder = work_dir / "captures"
    pcaps, failed = [], {}
    for pid in expressed(out_dir):
        if pid in patterns:
            try:
                pcaps.append(captures.write(patterns[pid], kb, folder / f"{pid}.pcap"))
            except Exception as exc:  # noqa: BLE001 - one pattern's builder must not hide the other proofs
                failed[pid] = Replay(pid, folder / f"{pid}.pcap", error=f"no capture: {type(exc).__name__}: {exc}")
    pcaps += _unicast_lookalikes(kb, [patterns[pid] for pid in expressed(out_dir) if pid in patterns], folder)
    pcaps.append(captures.normal_traffic().write(folder / f"{NORMAL}.pcap"))
    with ThreadPoolExecutor(max_workers=max(2, os.cpu_count() or 2)) as pool:
        replays = {r.name: r for r in pool.map(
            lambda pcap: replay_one(binary, config, rules, pcap, work_dir / "logs" / pcap.stem), pcaps)}
    for pid, replay in replays.items():
        if pid in patterns and patterns[pid].dst_net.kind == "broadcast":
            replay.expect_dsts = tuple(dst for _, dst in captures.broadcast_forms(patterns[pid], kb))
    return {**failed, **replays}


def _unicast_lookalikes(kb: KnowledgeBase, patterns: list, folder: Path) -> list[Path]:
    """The unicast look-alike capture of each broadcast pattern (the same datagrams to one home host)."""
    pcaps = []
    for pattern in patterns:
        wire = captures.unicast_lookalike(pattern, kb)
        if wire is not None:
            pcaps.append(wire.write(folder / f"{pattern.id}{UNICAST}.pcap"))
    return pcaps


def _missing_dsts(replay: Replay, sid: int) -> list[str]:
    alerted = {a.dst.rsplit(":", 1)[0] for a in replay.alerts if a.sid == sid}
    return [dst for dst in replay.expect_dsts if dst not in alerted]


def judge_unicast(replays: dict[str, Replay], out_dir: Path) -> list[Proof]:
    """A broadcast pattern's sid stays quiet on its unicast look-alike (a quiet proof per broadcast pattern)."""
    proofs = []
    for pid, sid in expressed(out_dir).items():
        replay = replays.get(pid + UNICAST)
        if replay is None:
            continue
        hits = replay.count(sid)
        detail = (f"sid {sid} {'alerted ' + str(hits) + 'x' if hits else 'quiet'} on {replay.pcap.name} "
                  f"(the port's unicast use){'; ' + replay.error if replay.error else ''}")
        proofs.append(Proof(pid, TARGET, not hits and not replay.error, detail, side="quiet"))
    return proofs


def _summary(alerts: list[Alert]) -> str:
    counts = Counter((a.sid, a.pattern, a.priority) for a in alerts)
    return ", ".join(f"sid {sid} ({pattern}, priority {prio}) {n}x"
                     for (sid, pattern, prio), n in sorted(counts.items())) or "none"


def judge(replays: dict[str, Replay], out_dir: Path) -> list[Proof]:
    """One Proof per expressed pattern (its own sid alerted on its capture), plus the normal-traffic Proof."""
    proofs = []
    for pid, sid in expressed(out_dir).items():
        replay = replays.get(pid)
        if replay is None:
            proofs.append(Proof(pid, TARGET, False, "pattern not in the knowledge: no capture"))
            continue
        hits = replay.count(sid)
        missing = _missing_dsts(replay, sid)
        if hits:
            detail = f"sid {sid} alerted {hits}x on {replay.pcap.name}"
            if replay.expect_dsts:
                forms = f"missed {', '.join(missing)}" if missing else "each"
                detail += f" (to {', '.join(replay.expect_dsts)}: {forms})"
        else:
            detail = (f"sid {sid} did not alert on {replay.pcap.name}"
                      f"{'; ' + replay.error if replay.error else ''}; alerts: {_summary(replay.alerts)}")
        proofs.append(Proof(pid, TARGET, bool(hits) and not missing and not replay.error, detail))
    normal = replays[NORMAL]
    loud = [a for a in normal.alerts if a.priority < LOWEST_PRIORITY]
    quiet = [a for a in normal.alerts if a.priority >= LOWEST_PRIORITY]
    if normal.error:
        detail = normal.error
    elif loud:
        detail = (f"alerts above priority {LOWEST_PRIORITY}: {_summary(loud)}; "
                  f"priority {LOWEST_PRIORITY}: {_summary(quiet)}")
    else:
        detail = f"no alert above priority {LOWEST_PRIORITY}; priority {LOWEST_PRIORITY}: {_summary(quiet)}"
    proofs.append(Proof(NORMAL, TARGET, not loud and not normal.error, detail))
    return proofs


def prove(kb: KnowledgeBase, out_dir: Path, work_dir: Path) -> list[Proof]:
    binary = engines.find("suricata")
    if binary is None:
        why = engines.unavailable("suricata", "not found")  # raises when RULEGEN_REQUIRE_ENGINES=1
        return [Proof(pid, TARGET, False, "not replayed", skipped=why)
                for pid in [*expressed(out_dir), NORMAL]]
    replays = run(kb, out_dir, work_dir, binary)
    return judge(replays, out_dir) + judge_unicast(replays, out_dir)
