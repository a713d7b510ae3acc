"""Prove the Suricata rules: each expressed pattern's sid alerts on its own capture (fires), and raises nothing
on the look-alike traffic of its quiet capture (stays quiet); normal traffic raises nothing above priority 4.

One `suricata -r` process per capture (about 0.1 s each with rulegen's rules), run in parallel:
every capture starts with empty flow, host, xbit and threshold tables, so an alert is attributed to its
capture by the log folder it lands in. The replay config's HOME_NET is the knowledge's home set.
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
from rulegen.validate.suricata import minimal_config

TARGET = "suricata"
NORMAL = "normal-traffic"
QUIET = ".quiet"  # a quiet capture is named <pattern id>.quiet.pcap
LOWEST_PRIORITY = 4
REPLAY_TIMEOUT = 120

# Added to the minimal config of `rulegen validate`: eve.json with alerts (and their rule metadata).
EVE_OUTPUT = """outputs:
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
    name: str  # the pattern id, <pattern id>.quiet, or "normal-traffic"
    pcap: Path
    alerts: list[Alert] = field(default_factory=list)
    error: str | None = None
    shows: tuple[str, ...] = ()  # what a quiet capture holds (captures.quiet)
    expect_dsts: tuple[str, ...] = ()  # destinations that must each raise the sid (the broadcast forms)
    # (what, client port) of the flows that must each raise the sid: the derived message and every fires sample
    expect_ports: tuple[tuple[str, int], ...] = ()

    def count(self, sid: int) -> int:
        return sum(1 for a in self.alerts if a.sid == sid)


def expressed(out_dir: Path) -> dict[str, int]:
    """pattern id -> sid, for every pattern that out/manifest.json says the suricata target expresses."""
    manifest = json.loads((out_dir / "manifest.json").read_text(encoding="utf-8"))
    return {p["id"]: p["sid"] for p in manifest["patterns"]
            if p["coverage"].get(TARGET, {}).get("expressed") and p["coverage"][TARGET].get("built", True)}


def write_config(work_dir: Path, kb: KnowledgeBase) -> Path:
    """The replay config: HOME_NET is the knowledge's home set (EXTERNAL_NET !$HOME_NET), as for every target."""
    config = work_dir / "suricata.yaml"
    config.write_text(minimal_config(kb.home.addresses) + EVE_OUTPUT, encoding="utf-8")
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
    """Write a capture and a quiet capture per expressed pattern, plus the normal-traffic capture, and replay
    each one; the result is keyed by capture name (pattern id, <pattern id>.quiet, normal-traffic)."""
    binary = binary or engines.find("suricata")
    if binary is None:
        raise FileNotFoundError("suricata not found")
    work_dir.mkdir(parents=True, exist_ok=True)
    config = write_config(work_dir, kb)
    rules = out_dir / "suricata" / "rulegen.rules"
    patterns = {p.id: p for p in kb.patterns}
    folder = work_dir / "captures"
    pcaps, failed, shows = [], {}, {}
    for pid in expressed(out_dir):
        if pid not in patterns:
            continue
        for name in (pid, pid + QUIET):
            pcap = folder / f"{name}.pcap"
            try:
                if name == pid:
                    pcaps.append(captures.write(patterns[pid], kb, pcap))
                else:
                    written, shown = captures.write_quiet(patterns[pid], kb, pcap)
                    pcaps.append(written)
                    shows[name] = tuple(shown)
            except Exception as exc:  # noqa: BLE001 - one pattern's builder must not hide the other proofs
                failed[name] = Replay(name, pcap, error=f"no capture: {type(exc).__name__}: {exc}")
    pcaps.append(captures.normal_traffic(kb).write(folder / f"{NORMAL}.pcap"))
    with ThreadPoolExecutor(max_workers=max(2, os.cpu_count() or 2)) as pool:
        replays = list(pool.map(lambda pcap: replay_one(binary, config, rules, pcap, work_dir / "logs" / pcap.stem),
                                pcaps))
    for replay in replays:
        replay.shows = shows.get(replay.name, ())
        if replay.name in patterns and patterns[replay.name].dst_net.kind == "broadcast":
            replay.expect_dsts = tuple(dst for _, dst in captures.broadcast_forms(patterns[replay.name], kb))
        elif replay.name in patterns:
            replay.expect_ports = captures.fires_flows(patterns[replay.name])
    return {**failed, **{r.name: r for r in replays}}


def _missing_dsts(replay: Replay, sid: int) -> list[str]:
    alerted = {a.dst.rsplit(":", 1)[0] for a in replay.alerts if a.sid == sid}
    return [dst for dst in replay.expect_dsts if dst not in alerted]


def _missing_flows(replay: Replay, sid: int) -> list[str]:
    """The expected flows (by client port) that did not raise the sid; an alert names the client port as its
    source or, for an answer to the client, as its destination."""
    ports = {end.rsplit(":", 1)[1] for a in replay.alerts if a.sid == sid for end in (a.src, a.dst)}
    return [what for what, port in replay.expect_ports if str(port) not in ports]


def _summary(alerts: list[Alert]) -> str:
    counts = Counter((a.sid, a.pattern, a.priority) for a in alerts)
    return ", ".join(f"sid {sid} ({pattern}, priority {prio}) {n}x"
                     for (sid, pattern, prio), n in sorted(counts.items())) or "none"


def _fires(pid: str, sid: int, replay: Replay) -> Proof:
    """The sid alerted on the pattern's capture; for a broadcast pattern, on each broadcast form in it."""
    hits = replay.count(sid)
    missing = _missing_dsts(replay, sid)
    silent = _missing_flows(replay, sid)
    if hits:
        detail = f"sid {sid} alerted {hits}x on {replay.pcap.name}"
        if replay.expect_dsts:
            forms = f"missed {', '.join(missing)}" if missing else "each"
            detail += f" (to {', '.join(replay.expect_dsts)}: {forms})"
        if replay.expect_ports:
            flows = f"missed {', '.join(silent)}" if silent else "each"
            detail += f" (the derived message and {len(replay.expect_ports) - 1} fires sample(s): {flows})"
    else:
        detail = (f"sid {sid} did not alert on {replay.pcap.name}"
                  f"{'; ' + replay.error if replay.error else ''}; alerts: {_summary(replay.alerts)}")
    return Proof(pid, TARGET, bool(hits) and not missing and not silent and not replay.error, detail)


def _quiet(pid: str, sid: int, replay: Replay) -> Proof:
    own = [a for a in replay.alerts if a.sid == sid]
    shown = "; ".join(replay.shows) or "nothing"
    if replay.error:
        detail = f"{replay.pcap.name}: {replay.error}"
    elif own:
        detail = (f"sid {sid} alerted {len(own)}x on {replay.pcap.name} "
                  f"({', '.join(sorted({f'{a.src} -> {a.dst}' for a in own}))}); it holds: {shown}")
    else:
        detail = f"sid {sid} stayed quiet on {replay.pcap.name}: {shown}"
    return Proof(pid, TARGET, not own and not replay.error and bool(replay.shows), detail, side="quiet")


def judge(replays: dict[str, Replay], out_dir: Path) -> list[Proof]:
    """Per expressed pattern: its own sid alerted on its capture (fires) and raised nothing on its quiet
    capture (quiet); then the normal-traffic Proof (quiet: nothing above priority 4)."""
    proofs = []
    for pid, sid in expressed(out_dir).items():
        for side, name, judged in (("fires", pid, _fires), ("quiet", pid + QUIET, _quiet)):
            replay = replays.get(name)
            proofs.append(judged(pid, sid, replay) if replay is not None else
                          Proof(pid, TARGET, False, "pattern not in the knowledge: no capture", side=side))
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
    proofs.append(Proof(NORMAL, TARGET, not loud and not normal.error, detail, side="quiet"))
    return proofs


def prove(kb: KnowledgeBase, out_dir: Path, work_dir: Path) -> list[Proof]:
    binary = engines.find("suricata")
    if binary is None:
        why = engines.unavailable("suricata", "not found")  # raises when RULEGEN_REQUIRE_ENGINES=1
        return [*(Proof(pid, TARGET, False, "not replayed", skipped=why, side=side)
                  for pid in expressed(out_dir) for side in ("fires", "quiet")),
                Proof(NORMAL, TARGET, False, "not replayed", skipped=why, side="quiet")]
    return judge(run(kb, out_dir, work_dir, binary), out_dir)
