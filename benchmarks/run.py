"""rulegen benchmark: build and validation at scale, Suricata runtime cost, firewall rule walk.

    .venv/bin/python benchmarks/run.py [--sizes 1000,10000] [--runs 3] [--work DIR]

Prints one table. Not part of the test suite. Needs suricata, iptables-restore, ip6tables-restore and
nft (root for the firewall checks). Packets only go into a pcap file under the work folder.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import resource
import shutil
import statistics
import struct
import subprocess
import sys
import tempfile
import time
from array import array
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

PY = sys.executable
PCAP_PACKETS = 2_000_000


# --------------------------------------------------------------------------- child measurements

def _child(argv: list[str]) -> None:
    """Run one measurement in this fresh process and print JSON: seconds, peak RSS of self and children."""
    kind = argv[0]
    start = time.perf_counter()
    if kind == "build":
        from rulegen.build import build
        from rulegen.render import default_templates_dir
        from rulegen.targets import TARGETS

        kb, out, validate = Path(argv[1]), Path(argv[2]), argv[3] == "1"
        start = time.perf_counter()
        result = build([kb], default_templates_dir(), out, list(TARGETS), validate=validate)
        bad = sum(1 for r in result.reports for f in r.findings if f.severity in ("error", "warning"))
        extra = {"findings": bad}
    elif kind == "sigma":
        from rulegen.validate import sigma

        files = sorted(Path(argv[1]).glob("*.yml"))
        reports = sigma.check(files, own=True)  # as the build checks its own output
        extra = {"findings": sum(len(r.findings) for r in reports), "files": len(files)}
    elif kind == "lint":
        from rulegen.validate import lint

        findings, status = lint.lint(Path(argv[1]), timeout=900)
        extra = {"findings": len(findings), "status": status}
    else:
        raise SystemExit(f"unknown child {kind}")
    seconds = time.perf_counter() - start
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    kids = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    print(json.dumps({"seconds": seconds, "rss_self_kb": own, "rss_children_kb": kids, **extra}))


def child(*args: str) -> dict:
    result = subprocess.run([PY, __file__, "--child", *args], capture_output=True, text=True, cwd=ROOT)
    if result.returncode != 0:
        raise SystemExit(f"child {args} failed:\n{result.stderr[-3000:]}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def timed(cmd: list[str], **kw) -> tuple[float, subprocess.CompletedProcess]:
    start = time.perf_counter()
    result = subprocess.run(cmd, capture_output=True, text=True, stdin=subprocess.DEVNULL, **kw)
    return time.perf_counter() - start, result


def median(values: list[float]) -> float:
    return statistics.median(values)


# --------------------------------------------------------------------------- engines alone

def suricata_config(folder: Path) -> Path:
    from rulegen.validate.suricata import minimal_config

    config = folder / "suricata.yaml"
    config.write_text(minimal_config())
    return config


def suricata_t(rules: Path, config: Path, logdir: Path) -> float:
    seconds, result = timed(["suricata", "-T", "-c", str(config), "-S", str(rules), "-l", str(logdir)])
    if result.returncode != 0:
        raise SystemExit(f"suricata -T failed on {rules}:\n{result.stdout[-2000:]}{result.stderr[-2000:]}")
    return seconds


def engines_alone(out: Path, config: Path, logdir: Path) -> dict[str, float]:
    rules = out / "suricata" / "rulegen.rules"
    times = {"suricata -T": suricata_t(rules, config, logdir)}
    times["pySigma"] = child("sigma", str(out / "sigma"))["seconds"]
    from rulegen.validate.firewall import MATCH_SET, with_ipsets

    ipt = 0.0
    for tool, name, family in (("iptables-restore", "rulegen.rules", "inet"),
                               ("ip6tables-restore", "rulegen6.rules", "inet6")):
        path = out / "iptables" / name
        sets = sorted(set(MATCH_SET.findall(path.read_text())))
        wrapper = with_ipsets(path, sets, family) if sets else []  # the sets it matches, in a throwaway netns
        seconds, result = timed([*wrapper, tool, "--test", str(path)])
        if result.returncode != 0:
            raise SystemExit(f"{tool} --test failed: {result.stderr[-2000:]}")
        ipt += seconds
    times["iptables-restore --test (v4+v6)"] = ipt
    seconds, result = timed(["nft", "-c", "-f", str(out / "nftables" / "rulegen.nft")])
    if result.returncode != 0:
        raise SystemExit(f"nft -c failed: {result.stderr[-2000:]}")
    times["nft -c"] = seconds
    return times


# --------------------------------------------------------------------------- normal-traffic pcap

def _csum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\x00"
    total = sum(array("H", data))  # native order; folded and stored back in the same order
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def normal_pcap(path: Path, packets: int = PCAP_PACKETS) -> tuple[Path, int]:
    """Repeat rulegen.prove.captures.normal_traffic() (DNS, HTTP, TLS, NTP, SSH, SMTP flows) with the home
    host, the peers and the client ports varied, checksums recomputed, until `packets` packets are written."""
    if path.is_file():
        count = (path.stat().st_size and int(path.with_suffix(".count").read_text()))
        return path, count
    from rulegen.prove.captures import normal_traffic

    template = [(float(p.time), bytes(p)) for p in normal_traffic().packets]
    t0, span = template[0][0], template[-1][0] - template[0][0] + 0.05
    out = bytearray(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1))
    written, rep = 0, 0
    while written < packets:
        a, b = (rep >> 8) & 0xFF, rep & 0xFF
        for stamp, raw in template:
            if written >= packets:
                break
            frame = bytearray(raw)
            if frame[12:14] != b"\x08\x00":
                continue
            ihl = (frame[14] & 0x0F) * 4
            for off in (26, 30):  # vary the last two octets of every address per repetition
                frame[off + 2] = (frame[off + 2] + a) & 0xFF
                frame[off + 3] = (frame[off + 3] + b) % 250 + 1
            proto = frame[23]
            l4 = 14 + ihl
            for off in (l4, l4 + 2):  # client ports (>= 1024) vary too
                port = struct.unpack_from("!H", frame, off)[0]
                if port >= 1024:
                    struct.pack_into("!H", frame, off, 1024 + (port - 1024 + rep * 7) % 64000)
            frame[24:26] = b"\x00\x00"
            frame[24:26] = struct.pack("=H", _csum(bytes(frame[14:l4])))
            total_len = struct.unpack_from("!H", frame, 16)[0]
            seg = frame[l4:14 + total_len]
            cks = {6: 16, 17: 6}.get(proto)
            if cks is not None:
                seg[cks:cks + 2] = b"\x00\x00"
                pseudo = bytes(frame[26:34]) + struct.pack("!BBH", 0, proto, len(seg))
                value = _csum(pseudo + bytes(seg))
                if proto == 17 and value == 0:
                    value = 0xFFFF
                seg[cks:cks + 2] = struct.pack("=H", value)
                frame[l4:14 + total_len] = seg
            when = stamp - t0 + rep * span + 1_700_000_000
            sec = int(when)
            out += struct.pack("<IIII", sec, int((when - sec) * 1e6), len(frame), len(frame)) + frame
            written += 1
        rep += 1
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(bytes(out))
    path.with_suffix(".count").write_text(str(written))
    return path, written


def replay(pcap: Path, rules: Path, config: Path, logdir: Path) -> float:
    """CPU seconds (user + system) of one `suricata -r`: on a shared machine, the time the process itself
    used is steadier than the wall clock, which counts the other tenants' work too."""
    shutil.rmtree(logdir, ignore_errors=True)
    logdir.mkdir(parents=True)
    with open(logdir / "stderr.txt", "wb") as err:
        child = subprocess.Popen(["suricata", "-r", str(pcap), "-k", "none", "--runmode", "single", "-c", str(config),
                                  "-S", str(rules), "-l", str(logdir)], stdout=subprocess.DEVNULL, stderr=err)
        _, status, usage = os.wait4(child.pid, 0)
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"suricata -r failed:\n{(logdir / 'stderr.txt').read_text()[-2000:]}")
    return usage.ru_utime + usage.ru_stime


# --------------------------------------------------------------------------- firewall shape

PROTOCOLS = ("tcp", "udp", "icmp")  # a packet of each; the worst case over them is reported


PROTOCOLS = ("tcp", "udp", "icmp")  # a packet of each; the largest walk over them is reported
PATTERN_JUMP = re.compile(r"rulegen \d+ ")  # a jump carrying a pattern's comment: only its own packets take it


def iptables_walk(path: Path) -> dict[str, dict[str, int]]:
    """Per hook, the rules a packet that no pattern matches is compared with, jumps followed:
    - `other port`: a packet to a port no pattern names (most traffic): only jumps that nothing but the
      protocol (-p) conditions are taken (the hook jump, the protocol dispatch);
    - `worst`: an upper bound for any unmatched packet: port gates are taken too (a packet to a pattern's
      port that fails its other matches); a jump to a pattern's own chain is never taken."""
    rules: dict[str, list[str]] = {}
    for line in path.read_text().splitlines():
        m = re.match(r"-[AI] (\S+) (.*)", line)
        if m:
            rules.setdefault(m.group(1), []).append(m.group(2))

    def taken(rule: str, proto: str, worst: bool) -> str | None:
        target = re.search(r"-j (\S+)", rule)
        if not target or target.group(1) not in rules or PATTERN_JUMP.search(rule):
            return None
        # an interface condition of a hook jump (! -i lo, -i WAN) holds for the packets measured
        conditions = re.sub(r'-m comment --comment "[^"]*"|-j \S+|(?:! )?-[io] \S+', "", rule).split()
        if conditions[:2] not in ([], ["-p", proto]):
            return None
        return target.group(1) if worst or len(conditions) <= 2 else None

    def walk(chain: str, proto: str, worst: bool, entered: set[str]) -> int:
        """A chain is entered once: the multiport gates of one run cover disjoint ports."""
        entered.add(chain)
        total = 0
        for rule in rules.get(chain, []):
            total += 1
            target = taken(rule, proto, worst)
            if target and target not in entered:
                total += walk(target, proto, worst, entered)
        return total

    return {mode: {hook: max(walk(hook, proto, mode == "worst", set()) for proto in PROTOCOLS)
                   for hook in ("INPUT", "FORWARD", "OUTPUT") if hook in rules} for mode in ("other port", "worst")}


def nft_shape(path: Path) -> dict[str, Any]:
    """Rules, chains and sets of the table, and per base chain the rules walked as iptables_walk counts them:
    the protocol verdict map is followed; a port gate (`tcp dport {...} jump`, no comment) only for `worst`."""
    text = path.read_text()
    chains: dict[str, list[str]] = {}
    base: dict[str, str] = {}
    current = None
    for line in text.splitlines():
        s = line.strip()
        m = re.match(r"chain (\S+) \{", s)
        if m:
            current = m.group(1)
            chains[current] = []
        elif s == "}":
            current = None
        elif current and (hook := re.match(r"type filter hook (\w+)", s)):
            base[hook.group(1)] = current
        elif current and s and not s.startswith(("#", "policy ")):
            chains[current].append(s)

    def walk(chain: str, proto: str, worst: bool) -> int:
        total = 0
        for rule in chains.get(chain, []):
            total += 1
            vmap = re.fullmatch(r"meta (?:nfproto \. meta )?l4proto vmap \{ (.*) \}", rule)
            gate = re.fullmatch(r"(\w+) dport .* jump (\w+)", rule)
            if vmap:
                # an IPv4 packet's chain for the protocol (the map keys family . protocol, or protocol alone)
                targets = {p: chain for family, p, chain in re.findall(r"(?:ipv(\d) \. )?(\w+) : jump (\w+)",
                                                                        vmap.group(1)) if family in ("", "4")}
                total += walk(targets[proto], proto, worst) if proto in targets else 0
            elif gate and worst and gate.group(1) == proto:
                total += walk(gate.group(2), proto, worst)
        return total

    return {"rules": sum(len(r) for r in chains.values()), "chains": len(chains),
            "walk": {mode: {hook: max(walk(chain, proto, mode == "worst") for proto in PROTOCOLS)
                            for hook, chain in base.items()} for mode in ("other port", "worst")},
            "named sets": len(re.findall(r"^\s*set \S+ \{", text, re.M)),
            "anonymous sets": len(re.findall(r"(?<!= )\{ [^}]*, [^}]*\}", text)) - len(re.findall(r"vmap \{", text))}


# --------------------------------------------------------------------------- main

def machine() -> str:
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor())
    mem = next(int(line.split()[1]) for line in Path("/proc/meminfo").read_text().splitlines()
               if line.startswith("MemTotal"))
    suri = subprocess.run(["suricata", "-V"], capture_output=True, text=True).stdout.strip()
    suri = re.search(r"\d+\.\d+\.\d+", suri).group(0)
    return (f"machine: {os.cpu_count()} CPUs ({cpu}), {mem / 1024 / 1024:.1f} GiB RAM, Python "
            f"{platform.python_version()}, Suricata {suri}, {platform.system()} {platform.release()}")


def bench_size(label: str, kb: Path, work: Path, config: Path, runs: int) -> dict:
    out = work / f"out-{label}"
    logdir = work / f"log-{label}"
    logdir.mkdir(parents=True, exist_ok=True)
    child("build", str(kb), str(out), "0")  # warm-up: creates the lock (steady state: CI rebuilds)
    builds = [child("build", str(kb), str(out), "0") for _ in range(runs)]
    rules = out / "suricata" / "rulegen.rules"
    suri = [suricata_t(rules, config, logdir) for _ in range(runs)]
    valid = [child("build", str(kb), str(out), "1") for _ in range(max(1, runs - 1))]
    alone = engines_alone(out, config, logdir)
    lint = child("lint", str(rules))
    patterns = len(json.loads((out / "manifest.json").read_text())["patterns"])
    return {
        "label": label, "patterns": patterns,
        "suricata_rules": sum(1 for line in rules.read_text().splitlines() if line.startswith("alert")),
        "sigma_files": len(list((out / "sigma").glob("*.yml"))),
        "build": median([b["seconds"] for b in builds]), "suricata_T": median(suri),
        "build_rss": max(b["rss_self_kb"] for b in builds),
        "validate": median([v["seconds"] for v in valid]), "validate_findings": valid[0]["findings"],
        "validate_rss": max(max(v["rss_self_kb"], v["rss_children_kb"]) for v in valid),
        "alone": alone, "lint": lint["seconds"],
        "iptables": {"v4": iptables_walk(out / "iptables" / "rulegen.rules"),
                     "v6": iptables_walk(out / "iptables" / "rulegen6.rules")},
        "nft": nft_shape(out / "nftables" / "rulegen.nft"),
    }


def table(rows: list[list[str]]) -> str:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = [" | ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths, strict=True)))
             for r in rows]
    lines.insert(1, "-+-".join("-" * w for w in widths))
    return "\n".join(lines)


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        _child(sys.argv[2:])
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1000,10000")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--replays", type=int, default=7)
    parser.add_argument("--work", type=Path, default=Path(tempfile.gettempdir()) / "rulegen-bench")
    args = parser.parse_args()
    import synth

    began = time.perf_counter()
    work = args.work
    work.mkdir(parents=True, exist_ok=True)
    config = suricata_config(work)
    results = []
    shipped = work / "kb-shipped"
    shutil.rmtree(shipped, ignore_errors=True)
    shutil.copytree(ROOT / "knowledge", shipped)  # the build writes the lock: never touch the real one
    results.append(bench_size("shipped", shipped, work, config, args.runs))
    for size in [int(s) for s in args.sizes.split(",") if s]:
        kb = work / f"kb-{size}"
        shutil.rmtree(kb, ignore_errors=True)
        synth.write(size, kb)
        results.append(bench_size(f"{size // 1000}k" if size % 1000 == 0 else str(size), kb, work, config,
                                  1 if size >= 10000 else args.runs))
        print(f"  [{time.perf_counter() - began:.0f} s] {size} done", file=sys.stderr)

    # Suricata runtime cost: shipped rules vs an empty rules file, alternating.
    pcap, count = normal_pcap(work / "normal-traffic.pcap")
    empty = work / "empty.rules"
    empty.write_text("")
    shipped_rules = work / "out-shipped" / "suricata" / "rulegen.rules"
    # A capture of one packet gives each ruleset's start-up (config and rule loading), which is no
    # per-packet cost: throughput is packets per CPU second of packet processing.
    no_packets = work / "one-packet.pcap"
    with pcap.open("rb") as capture:
        header, record = capture.read(24), capture.read(16)
        no_packets.write_bytes(header + record + capture.read(struct.unpack("<IIII", record)[2]))
    base, ours, base_start, our_start = [], [], [], []
    for _ in range(args.replays):
        base.append(replay(pcap, empty, config, work / "replay-empty"))
        ours.append(replay(pcap, shipped_rules, config, work / "replay-ours"))
        base_start.append(replay(no_packets, empty, config, work / "replay-empty"))
        our_start.append(replay(no_packets, shipped_rules, config, work / "replay-ours"))
    base_pps = count / (median(base) - median(base_start))
    our_pps = count / (median(ours) - median(our_start))
    cost = 1 - our_pps / base_pps

    # ------------------------------------------------------------------ the table
    def slowest(r: dict) -> tuple[str, float]:
        return max(r["alone"].items(), key=lambda kv: kv[1])

    by = {r["label"]: r for r in results}
    rows = [["", *[r["label"] for r in results]]]
    rows.append(["patterns (Suricata rules / Sigma files)",
                 *[f"{r['patterns']} ({r['suricata_rules']} / {r['sigma_files']})" for r in results]])
    rows.append(["(a) build --no-validate / suricata -T  [aim <= 0.5]",
                 *[f"{r['build'] / r['suricata_T']:.2f}" for r in results]])
    rows.append(["    build --no-validate, s", *[f"{r['build']:.2f}" for r in results]])
    rows.append(["    suricata -T alone, s", *[f"{r['suricata_T']:.2f}" for r in results]])
    rows.append(["(b) build+validate / slowest engine alone  [aim <= 1.25]",
                 *[f"{r['validate'] / slowest(r)[1]:.2f}" for r in results]])
    rows.append(["    build+validate wall, s", *[f"{r['validate']:.2f}" for r in results]])
    for name in results[0]["alone"]:
        rows.append([f"    {name} alone, s", *[f"{r['alone'][name]:.2f}" for r in results]])
    rows.append(["    slowest engine", *[slowest(r)[0].split()[0] for r in results]])
    rows.append(["    suricata-check lint alone (also in validate), s", *[f"{r['lint']:.2f}" for r in results]])
    rows.append(["    validation findings (must be 0)", *[str(r["validate_findings"]) for r in results]])
    rows.append(["(c) peak RSS build --no-validate, MiB", *[f"{r['build_rss'] / 1024:.0f}" for r in results]])
    rows.append(["    peak RSS build+validate (largest process), MiB",
                 *[f"{r['validate_rss'] / 1024:.0f}" for r in results]])
    for mode in ("other port", "worst"):
        rows.append([f"firewall: iptables walk ({mode}), v4 IN/FWD/OUT",
                     *["/".join(map(str, r["iptables"]["v4"][mode].values())) for r in results]])
        rows.append([f"firewall: ip6tables walk ({mode}), v6 IN/FWD/OUT",
                     *["/".join(map(str, r["iptables"]["v6"][mode].values())) for r in results]])
        rows.append([f"firewall: nft walk ({mode}), in/fwd/out",
                     *["/".join(str(r["nft"]["walk"][mode].get(h, 0)) for h in ("input", "forward", "output"))
                       for r in results]])
    rows.append(["firewall: nft rules in chains / sets named+anon",
                 *[f"{r['nft']['rules']} in {r['nft']['chains']} / "
                   f"{r['nft']['named sets']}+{r['nft']['anonymous sets']}" for r in results]])

    print(machine())
    headline = []
    for r in results:
        headline.append(f"{r['label']}: (a) {r['build'] / r['suricata_T']:.2f}  "
                        f"(b) {r['validate'] / slowest(r)[1]:.2f}")
    if "1k" in by and "10k" in by:
        small, big = by["1k"], by["10k"]
        scale = big["patterns"] / small["patterns"]
        headline.append("(c) growth 1k->10k (time ratio / size ratio): "
                        f"build {big['build'] / small['build'] / scale:.2f}, "
                        f"build+validate {big['validate'] / small['validate'] / scale:.2f}  [aim <= 1]")
    headline.append(f"suricata runtime cost of the shipped rules: {cost * 100:.1f}% "
                    f"({our_pps:,.0f} vs {base_pps:,.0f} packets per CPU second, {count:,} packets, median of "
                    f"{args.replays} alternating runs each, start-up subtracted)  [aim <= 5%]")
    print("ratios: " + "\n        ".join(headline))
    print()
    print(table(rows))
    print(f"\nreplay, CPU s: empty rules {', '.join(f'{t:.2f}' for t in base)} (start-up "
          f"{median(base_start):.2f}); rulegen.rules {', '.join(f'{t:.2f}' for t in ours)} (start-up "
          f"{median(our_start):.2f})")
    print(f"total benchmark time: {time.perf_counter() - began:.0f} s")


if __name__ == "__main__":
    main()
