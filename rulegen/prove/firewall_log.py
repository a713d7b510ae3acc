"""The firewall's log as a log reader sees it: an out/'s iptables or nftables rules loaded into the firewall proof's
host namespace, the proof's probes sent from the peer (and, by choice, their look-alikes from home and over
loopback), and what the rules logged collected as the site's logging would write it.

- ulogd2 (`rulegen build --firewall-log nflog`): NFLOG hands each logged packet to a netlink socket of the namespace
  it was logged in, so ulogd2 runs inside the host namespace, with its NFLOG input on the rules' group and its JSON
  output plugin. The JSON lines carry the rule's prefix (`oob.prefix`, `rulegen:<sid>:<action> `), `src_ip`,
  `dest_ip`, `src_port`, `dest_port` and `ip.protocol` (a number: 6 TCP, 17 UDP) among ulogd's other keys.
- The kernel log (the default LOG target): the kernel writes a LOG line from a namespace other than the first only
  when the host sets `net.netfilter.nf_log_all_netns=1`. The lines of the namespace's own interface are read from
  /dev/kmsg and written as `journalctl -k -o short-iso` prints them; the text after `kernel:` is the kernel's own.
"""

from __future__ import annotations

import contextlib
import glob
import json
import os
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
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
ALL_NETNS = Path("/proc/sys/net/netfilter/nf_log_all_netns")
KMSG = "/dev/kmsg"
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
    """The log written (ulogd2's JSON lines, or kernel LOG lines), and what was sent to make it (the firewall
    proof's cases, with their probes)."""

    path: Path
    cases: list[firewall.Case]


def plugin_dir() -> Path | None:
    """The folder holding ulogd's NFLOG input and JSON output plugins (Debian: ulogd2 and ulogd2-json)."""
    for pattern in PLUGIN_DIRS:
        for folder in sorted(glob.glob(pattern)):
            if all((Path(folder) / f"ulogd_{p}.so").is_file() for p in PLUGINS):
                return Path(folder)
    return None


def ulogd_missing() -> str | None:
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
        raise RuntimeError(ulogd_missing() or "ulogd not found")
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


def read_json(path: Path) -> list[dict]:
    """The JSON objects of a ulogd JSON log, one a line."""
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def _probes(kb: KnowledgeBase, out_dir: Path, target: str, quiet: bool) -> tuple[list[firewall.Case], list]:
    """The firewall proof's cases for an out/, and the probes to send: each pattern's (and the allowed-traffic
    check's), and with `quiet` the look-alikes from home and over loopback, which no rule may log."""
    cases = firewall.plan_cases(kb, firewall.expressed_patterns(out_dir, target))
    return cases, [p for c in cases if not c.skipped for p in (*c.probes, *(c.quiet if quiet else ()))]


def ulogd_log(kb: KnowledgeBase, out_dir: Path, work_dir: Path, target: str, quiet: bool = True) -> FirewallLog:
    """ulogd2's JSON log of an NFLOG-built out/ (its manifest names the group) for one target: the rules loaded in
    fresh namespaces, ulogd2 in the host one, the probes sent."""
    out_dir, work_dir = Path(out_dir), Path(work_dir)
    group = nflog_group(out_dir)
    cases, probes = _probes(kb, out_dir, target, quiet)
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


def all_netns() -> bool:
    """Whether the kernel LOG target writes from every network namespace (the host's nf_log_all_netns)."""
    try:
        return ALL_NETNS.read_text().strip() == "1"
    except OSError:
        return False


@contextlib.contextmanager
def all_netns_on() -> Iterator[None]:
    """nf_log_all_netns=1 for the time of a block, then its old value again (a host-wide setting: for tests)."""
    old = ALL_NETNS.read_text().strip()
    ALL_NETNS.write_text("1\n")
    try:
        yield
    finally:
        ALL_NETNS.write_text(old + "\n")


def kernel_log(kb: KnowledgeBase, out_dir: Path, work_dir: Path, target: str, quiet: bool = True) -> FirewallLog:
    """The kernel LOG lines of a LOG-built out/ for one target, as `journalctl -k -o short-iso` prints them: the
    rules loaded in fresh namespaces, the probes sent, the kernel's lines for the host namespace's interface read
    from /dev/kmsg. Needs nf_log_all_netns=1 (RuntimeError otherwise)."""
    if not all_netns():
        raise RuntimeError("the kernel writes no LOG line from a network namespace: the host has "
                           "net.netfilter.nf_log_all_netns=0")
    out_dir, work_dir = Path(out_dir), Path(work_dir)
    cases, probes = _probes(kb, out_dir, target, quiet)
    fd = os.open(KMSG, os.O_RDONLY | os.O_NONBLOCK)
    try:
        os.lseek(fd, 0, os.SEEK_END)  # only what is logged from here on
        with firewall.namespaces() as ns:
            firewall.load(target, ns["host"], out_dir)
            firewall.run_probes(ns, probes)
            interface = firewall.veth_names()[0]
            records = _kmsg_records(fd)
    finally:
        os.close(fd)
    lines = [_short_iso(usec, text) for usec, text in records
             if f"IN={interface} " in text or f"OUT={interface} " in text]
    (work_dir / target).mkdir(parents=True, exist_ok=True)
    path = work_dir / target / "kern.log"
    path.write_text("".join(f"{line}\n" for line in lines), encoding="utf-8")
    return FirewallLog(path, cases)


def _kmsg_records(fd: int) -> list[tuple[int, str]]:
    """The /dev/kmsg records from the file position on: (microseconds since boot, message). A record is
    `priority,sequence,microseconds,flags;message` (Documentation/ABI/testing/dev-kmsg)."""
    records = []
    while True:
        try:
            raw = os.read(fd, 8192)
        except BlockingIOError:
            return records
        except BrokenPipeError:  # the ring buffer overwrote records since the last read; go on with the next
            continue
        head, _, text = raw.decode("utf-8", "replace").partition(";")
        records.append((int(head.split(",")[2]), text.split("\n", 1)[0]))


def _short_iso(usec: int, text: str) -> str:
    """A kernel message as `journalctl -k -o short-iso` prints it (the stamp in the local zone)."""
    wall = time.time() - time.clock_gettime(time.CLOCK_MONOTONIC) + usec / 1e6
    stamp = datetime.fromtimestamp(wall).astimezone().strftime("%Y-%m-%dT%H:%M:%S%z")
    return f"{stamp} {socket.gethostname()} kernel: {text}"
