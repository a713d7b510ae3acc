"""`rulegen hunt` throughput: synthetic EVE flow and DNS events through the shipped Sigma rules (correlations
included), beside the Zircolite way (the SQLite backend's queries over one in-memory table holding every event).

    .venv/bin/python benchmarks/hunt.py --events 1000000 [--rules out/sigma] [--work DIR] [--zircolite]

Each measurement runs in a child process, so its peak RSS (ru_maxrss of that child) is its own. Prints events/s
on the wall clock and on CPU time (the machine may be shared), and peak RSS. The synthetic log: 90% flows
(outside clients of a few home servers on common ports and probes of odd ones, home clients out), 10% DNS
requests, one event every 100 µs (10,000 a second), and a port scan (30 ports of one host) every 5,000 events so
the correlations have work to do.
"""

from __future__ import annotations

import argparse
import json
import random
import resource
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


SERVERS = {25: "192.168.1.25", 22: "192.168.1.22", 993: "192.168.1.25", 53: "192.168.1.53"}


def synth(path: Path, count: int, seed: int = 7) -> Path:
    rng = random.Random(seed)
    ports = [80, 443, 443, 443, 22, 25, 53, 123, 993, 8080, 3389, 23, 5632, 31337]
    base = 1_764_400_000.0
    with path.open("w") as out:
        for i in range(count):
            t = base + i * 0.0001
            stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t)) + f".{int(t % 1 * 1e6):06d}+0000"
            scan = i % 5000 < 30  # a scan burst every 5000 events
            if i % 10 == 9:
                record = {"timestamp": stamp, "flow_id": i, "event_type": "dns", "src_ip": f"192.168.1.{i % 200}",
                          "src_port": 30000 + i % 30000, "dest_ip": "192.168.1.1", "dest_port": 53, "proto": "UDP",
                          "dns": {"version": 2, "type": "query", "id": i % 65536,
                                  "rrname": f"host{i % 977}.example.com", "rrtype": "A", "tx_id": 0}}
            else:
                inbound = scan or rng.random() < 0.4
                port = (i % 5000) if scan else rng.choice(ports)
                if scan:  # a scanner walking the ports of one host
                    src, dst = f"203.0.113.{i // 5000 % 250}", "192.168.1.80"
                elif inbound:  # outside clients of the site's servers
                    src, dst = f"198.51.100.{rng.randrange(250)}", SERVERS.get(port, "192.168.1.80")
                else:  # home clients out
                    src, dst = f"192.168.1.{rng.randrange(200)}", f"198.51.100.{rng.randrange(250)}"
                record = {"timestamp": stamp, "flow_id": i, "event_type": "flow", "src_ip": src,
                          "src_port": 40000 + i % 20000, "dest_ip": dst, "dest_port": port, "proto": "TCP",
                          "app_proto": "failed", "flow": {"pkts_toserver": 1, "pkts_toclient": 0,
                                                          "bytes_toserver": 74, "bytes_toclient": 0,
                                                          "start": stamp, "end": stamp, "age": 0,
                                                          "state": "new", "reason": "timeout", "alerted": False}}
            out.write(json.dumps(record, separators=(",", ":")) + "\n")
    return path


def measure_hunt(log: Path, rules: Path) -> dict:
    from rulegen.hunt.session import Hunt

    session = Hunt([rules], "informational")
    session.plan_for(__import__("rulegen.hunt.formats", fromlist=["EVE"]).EVE)  # conversion not timed
    wall, cpu = time.perf_counter(), time.process_time()
    alerts = sum(1 for _ in session.run([log]))
    return {"wall": time.perf_counter() - wall, "cpu": time.process_time() - cpu, "alerts": alerts}


def measure_zircolite(log: Path, rules: Path) -> dict:
    """Every event in one in-memory table, then every query over it: the detections' SQL, and the correlations'
    plans run by the backend's runtime (materialised stages with indexes), as Zircolite runs them."""
    import sqlite3

    from sigma.backends.sqlite.runtime import execute_plan

    from rulegen.hunt import engine, formats
    from rulegen.hunt.rules import BATCH, HELD, TIME, plan, rule_paths

    eve = plan(rule_paths([rules]), formats.EVE)
    columns = sorted(eve.columns)
    getters = [engine.getter(c) for c in columns]
    wall, cpu = time.perf_counter(), time.process_time()
    db = sqlite3.connect(":memory:")
    defs = ", ".join(f'"{c}" NUMERIC COLLATE NOCASE' for c in columns)
    db.execute(f"CREATE TABLE {HELD} (_file INTEGER, _line INTEGER, {TIME} REAL, {defs})")
    rows = ((0, n, formats.EVE.timestamp(r), *[engine._cell(g(r)) for g in getters])  # noqa: SLF001
            for n, r, _ in formats.read(log, formats.EVE))
    db.executemany(f"INSERT INTO {HELD} VALUES ({', '.join('?' * (len(columns) + 3))})", rows)
    alerts = 0
    for _, where in eve.detections:
        alerts += db.execute(f"SELECT count(*) FROM {HELD} WHERE {where.replace(BATCH, HELD)}").fetchone()[0]
    for correlation in eve.correlations:
        alerts += len(execute_plan(db, correlation.plan, include_events=False)[0])
    return {"wall": time.perf_counter() - wall, "cpu": time.process_time() - cpu, "alerts": alerts}


def child(kind: str, log: Path, rules: Path) -> None:
    result = (measure_hunt if kind == "hunt" else measure_zircolite)(log, rules)
    result["rss_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps(result))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--rules", type=Path, default=ROOT / "out" / "sigma")
    parser.add_argument("--work", type=Path, default=Path("/tmp/rulegen-hunt-bench"))
    parser.add_argument("--zircolite", action="store_true", help="also measure the Zircolite way")
    parser.add_argument("--child", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child[0], Path(args.child[1]), Path(args.child[2]))
        return
    args.work.mkdir(parents=True, exist_ok=True)
    log = args.work / f"eve-{args.events}.json"
    if not log.exists():
        synth(log, args.events)
    print(f"{args.events} events, {log.stat().st_size / 2**20:.0f} MiB, rules {args.rules}")
    for kind in ["hunt"] + (["zircolite"] if args.zircolite else []):
        out = subprocess.run([sys.executable, __file__, "--child", kind, str(log), str(args.rules)],
                             capture_output=True, text=True, check=True).stdout
        r = json.loads(out.splitlines()[-1])
        print(f"{kind:10} {args.events / r['wall']:>12,.0f} events/s wall  {args.events / r['cpu']:>12,.0f} events/s "
              f"CPU  {r['wall']:8.1f} s  peak RSS {r['rss_mib']:7.0f} MiB  alerts {r['alerts']}")


if __name__ == "__main__":
    main()
