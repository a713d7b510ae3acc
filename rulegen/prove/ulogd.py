"""A firewall log as a site's ulogd2 writes it: the NFLOG-built iptables or nftables rules of an out/ (`rulegen
build --firewall-log nflog`) loaded into the firewall proof's host namespace, ulogd2 running inside that namespace
with its NFLOG input on the rules' group and its JSON output plugin, and the proof's probes sent from the peer.

NFLOG hands each logged packet to a netlink socket of the namespace it was logged in, so ulogd2 must run in the
host namespace itself (the kernel LOG target, by contrast, writes nothing a namespace can read unless the host sets
`net.netfilter.nf_log_all_netns=1`). The JSON lines carry the rule's prefix (`oob.prefix`, `rulegen:<sid>:<action> `),
`src_ip`, `dest_ip`, `src_port`, `dest_port` and `ip.protocol` (a number: 6 TCP, 17 UDP) among ulogd's other keys.
"""

from __future__ import annotations

import contextlib
import glob
import json
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from rulegen.model import KnowledgeBase
from rulegen.prove import firewall

# Where Debian (and a source build) put ulogd's plugins.
PLUGIN_DIRS = ("/usr/lib/*/ulogd", "/usr/lib/ulogd", "/usr/local/lib/ulogd", "/usr/lib64/ulogd")
PLUGINS = ("inppkt_NFLOG", "raw2packet_BASE", "filter_IFINDEX", "filter_IP2STR", "output_JSON")
READY = "entering main loop"  # ulogd's log line once every plugin stack is up
START_TIMEOUT = 20.0  # seconds for ulogd to come up
SETTLE = 0.5  # seconds without a new JSON line before ulogd is stopped (the kernel flushes NFLOG batches)
SETTLE_TIMEOUT = 10.0
CONFIG = """[global]
logfile="{log}"
loglevel=3
{plugins}
stack=log1:NFLOG,base1:BASE,ifi1:IFINDEX,ip2str1:IP2STR,json1:JSON

[log1]
group={group}
netlink_qthreshold=1

[json1]
file="{json}"
sync=1
"""


@dataclass
class FirewallLog:
    """The JSON log ulogd2 wrote, and what was sent to make it (the firewall proof's cases, with their probes)."""

    path: Path
    cases: list[firewall.Case]


def plugin_dir() -> Path | None:
    """The folder holding ulogd's NFLOG input and JSON output plugins (Debian: ulogd2 and ulogd2-json)."""
    for pattern in PLUGIN_DIRS:
        for folder in sorted(glob.glob(pattern)):
            if all((Path(folder) / f"ulogd_{p}.so").is_file() for p in PLUGINS):
                return Path(folder)
    return None


def missing() -> str | None:
    """Why no ulogd2 log can be written here, or None."""
    if not firewall.tool("ulogd"):
        return "ulogd not installed (Debian: ulogd2)"
    if plugin_dir() is None:
        return "ulogd's JSON output plugin not installed (Debian: ulogd2-json)"
    return None


def config(group: int, json_file: Path, log_file: Path, plugins: Path) -> str:
    return CONFIG.format(log=log_file, json=json_file, group=group,
                         plugins="\n".join(f'plugin="{plugins / f"ulogd_{p}.so"}"' for p in PLUGINS))


@contextlib.contextmanager
def ulogd(ns: str, group: int, work_dir: Path) -> Iterator[Path]:
    """ulogd2 in the foreground inside namespace `ns`, logging NFLOG group `group` as JSON lines to the path it
    yields. On leaving, it waits until the lines stop coming, then stops the ulogd it started."""
    plugins = plugin_dir()
    if plugins is None or not firewall.tool("ulogd"):
        raise RuntimeError(missing() or "ulogd not found")
    work_dir.mkdir(parents=True, exist_ok=True)
    json_file, log_file, conf = (work_dir / "ulogd.json", work_dir / "ulogd.log", work_dir / "ulogd.conf")
    for stale in (json_file, log_file):
        stale.unlink(missing_ok=True)
    conf.write_text(config(group, json_file, log_file, plugins), encoding="utf-8")
    proc = subprocess.Popen([firewall.tool("ip") or "ip", "netns", "exec", ns, firewall.tool("ulogd") or "ulogd",
                             "-c", str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + START_TIMEOUT
        while READY not in (log_file.read_text(errors="replace") if log_file.is_file() else ""):
            if proc.poll() is not None or time.monotonic() > deadline:
                log = log_file.read_text(errors="replace") if log_file.is_file() else ""
                raise RuntimeError(f"ulogd did not start in {ns}: {(log + proc.stderr.read()).strip()[-500:]}")
            time.sleep(0.05)
        yield json_file
        _settle(json_file)
    finally:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)
        if proc.stderr:
            proc.stderr.close()


def _settle(json_file: Path) -> None:
    """Wait until the JSON log has not grown for SETTLE seconds (at most SETTLE_TIMEOUT)."""
    deadline = time.monotonic() + SETTLE_TIMEOUT
    size, since = -1, time.monotonic()
    while time.monotonic() < deadline:
        now = json_file.stat().st_size if json_file.is_file() else 0
        if now != size:
            size, since = now, time.monotonic()
        elif time.monotonic() - since >= SETTLE:
            return
        time.sleep(0.05)


def read(path: Path) -> list[dict]:
    """The JSON objects of a ulogd JSON log, one a line."""
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def firewall_log(kb: KnowledgeBase, out_dir: Path, work_dir: Path, target: str,
                 quiet: bool = True) -> FirewallLog:
    """Write the firewall log of an NFLOG-built out/ (its manifest names the group) for one target: the rules
    loaded in fresh namespaces, ulogd2 in the host one, every probe of the firewall proof's fires side sent
    (and, with `quiet`, its look-alikes from home and over loopback, which no rule may log)."""
    out_dir, work_dir = Path(out_dir), Path(work_dir)
    group = nflog_group(out_dir)
    cases = firewall.plan_cases(kb, firewall.expressed_patterns(out_dir, target))
    probes = [p for c in cases if not c.skipped for p in (*c.probes, *(c.quiet if quiet else ()))]
    with firewall.namespaces() as ns:
        firewall.load(target, ns["host"], out_dir)
        with ulogd(ns["host"], group, work_dir / target) as path:
            firewall.run_probes(ns, probes)
    return FirewallLog(path, cases)


def nflog_group(out_dir: Path) -> int:
    """The NFLOG group an out/ was built for, from its manifest; RuntimeError if it logs through LOG."""
    manifest = json.loads((Path(out_dir) / "manifest.json").read_text(encoding="utf-8"))
    log = manifest.get("firewall", {}).get("log", {})
    if log.get("target") != "nflog":
        raise RuntimeError(f"{out_dir} was not built with --firewall-log nflog: its firewall logs through the "
                           "kernel LOG target")
    return int(log["group"])
