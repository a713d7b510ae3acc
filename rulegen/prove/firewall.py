"""Prove the iptables and nftables output on live traffic between two network namespaces: each pattern
fires on its traffic, and stays quiet on the same traffic from home and over loopback.

For each target, two namespaces (`rg-host-<pid>` and `rg-peer-<pid>`) are joined by a veth pair. The host
(the firewalled end) has home addresses (10.231.0.1/24, fd00:231::1/64); the peer has an outside address
(documentation ranges 198.51.100.2, 2001:db8:231::2, with on-link routes both ways) and an inside one
(10.231.0.2, fd00:231::2) that plays a home client. What to send and what must happen comes from each
pattern's typed fields and the knowledge's home set:

- `transport`, `src_ports`, `dst_ports` / `dst_ports_except`: a TCP connect or a UDP datagram from a
  fixed source port to one or more representative destination ports (the ends of each range);
- `direction`: inbound, internal and broadcast probes go from the peer to the host (the input hook),
  outbound ones from the host to the peer (the output hook); `any` goes both ways. The addresses are the
  first pair (ENDS) the pattern takes in: from outside for inbound, from the inside address for internal,
  to the outside address for outbound;
- `dst_net: broadcast`: a datagram to the veth subnet's broadcast address 10.231.0.255 (IPv4 only);
- `src_net` / `dst_net` as an IP list: only the namespace addresses the list takes in (a test knowledge
  may list 10.231.0.2); none: the pattern is skipped;
- `response`, together with every other expressed pattern that matches the same packet: drop means
  no answer within TIMEOUT, reject means an immediate refusal (TCP RST / ICMP port unreachable) where a
  listener would otherwise answer (no answer to a broadcast: the kernel sends no ICMP error about one),
  log means the probe fares as without the firewall (the listener answers; port 0 stays refused).

A `fires` proof also reads the packet counters of the pattern's own rules (by the `rulegen <sid> <id>`
comment, in any chain of the hook: RULEGEN-INPUT-*, input_*): the LOG (or NFLOG) rule, and for drop/reject the
verdict rule, must have counted the probe. A `quiet` proof sends the look-alikes of the same probes: from
(or to) the peer's other address where the pattern does not take it in, and over loopback inside the host
(to 127.0.0.1 / ::1 and to the host's own address), keeping only those no expressed pattern matches. They
run in a session of their own: each must fare as without the firewall, and the pattern's rules must count 0.
Every session runs twice in fresh namespaces: without a firewall (the control: listeners answer, so a
difference later is the firewall's doing) and with the generated rules loaded into the host namespace.
The forward hook would need a third, routed namespace and is not exercised.

Traffic never leaves the namespaces. They are deleted again even when a probe fails.
This module is also the probe helper itself: `python -m rulegen.prove.firewall listen|probe`,
run inside a namespace with a JSON spec on stdin.
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import os
import re
import selectors
import shutil
import socket
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from rulegen.model import Detect, Direction, KnowledgeBase, Net, Pattern, PortRange, Response
from rulegen.prove import Proof
from rulegen.targets import firewall as fw

TARGETS = ("iptables", "nftables")
TIMEOUT = 1.0  # seconds a probe waits for an answer; a dropped probe takes this long
REFUSED_WITHIN = 0.5  # a reject must answer at once, well before TIMEOUT
LAST_LOOK = 0.01  # seconds a probe still waits for its answer when its thread ran only after its deadline
# host: the firewalled end (home). The peer has an outside address (documentation range) and an inside one
# (home) on the same link; loopback and the host's own address (which also goes over lo) stay in the host.
ADDR = {4: {"host": "10.231.0.1", "inside": "10.231.0.2", "outside": "198.51.100.2", "loopback": "127.0.0.1",
            "prefix": 24, "any": "0.0.0.0"},
        6: {"host": "fd00:231::1", "inside": "fd00:231::2", "outside": "2001:db8:231::2", "loopback": "::1",
            "prefix": 64, "any": "::"}}
OUTSIDE_NET = {4: "198.51.100.0/24", 6: "2001:db8:231::/64"}
BROADCAST_V4 = "10.231.0.255"  # the veth subnet's directed broadcast
ALLOWED = "allowed-traffic"  # pseudo pattern: a port no pattern covers, with a listener, must answer
FIRST_FREE_PORT = 8080  # where the search for an allowed port starts
FIRST_SOURCE_PORT = 40000  # probes without a fixed source port get their own from here on
MAX_PORTS = 6  # representative destination ports per pattern
CMD_TIMEOUT = 30  # seconds for any one ip / iptables / nft command
HELPER_TIMEOUT = 60  # seconds for one probe run inside a namespace
# the kernel limits the ICMP errors it sends: per destination (one a second) and, in Linux 6.x, per namespace
# (1000 a second in bursts of 50, at a random cost of 0-2 credits, and racy where two CPUs refill it at once:
# raising that limit still lost one reject in a few thousand). An empty rate mask exempts every ICMP type
# from both, in each proof namespace only
ICMP_UNLIMITED = "echo 0 > /proc/sys/net/ipv4/icmp_ratemask && echo > /proc/sys/net/ipv6/icmp/ratemask"
TOOLS = ("ip", "iptables-restore", "ip6tables-restore", "iptables-save", "ip6tables-save", "nft", "ipset")
HOOK_OF_CHAIN = re.compile(r"^(?:RULEGEN-(INPUT|FORWARD|OUTPUT)(?:-\S+)?|(input|forward|output)(?:_\w+)?)$")
# way -> (client namespace, listener namespace, hook); over loopback no hook of rulegen's sees the packet
LOG_KINDS = {"LOG": "log", "NFLOG": "log"}  # iptables' log targets: the kernel log, or ulogd2 (--firewall-log)
WAYS = {"in": ("peer", "host", "input"), "out": ("host", "peer", "output"), "lo": ("host", "host", "lo")}
# way -> the (source, destination) roles a probe can take, the first the pattern matches firing, the rest quiet
ENDS = {"in": (("outside", "host"), ("inside", "host")), "out": (("host", "outside"), ("host", "inside")),
        "lo": (("loopback", "loopback"), ("host", "host"))}


@dataclass(frozen=True)
class Probe:
    key: str
    pattern: str
    family: int
    transport: str
    way: str  # in: peer -> host (input hook); out: host -> peer (output hook); lo: host -> host over loopback
    sport: int
    dport: int
    src: str = ""  # the role of each end: outside, inside, host, loopback
    dst: str = ""
    broadcast: bool = False

    @property
    def hook(self) -> str:
        return WAYS[self.way][2]

    @property
    def src_addr(self) -> str:
        return ADDR[self.family][self.src]

    @property
    def dst_addr(self) -> str:
        return BROADCAST_V4 if self.broadcast else ADDR[self.family][self.dst]

    def label(self) -> str:
        return (f"v{self.family} {self.transport} {self.src}>{'broadcast' if self.broadcast else self.dst} "
                f"{self.sport}>{self.dport}")


@dataclass
class Case:
    """What one pattern's proofs send (or the allowed-traffic check's): `probes` must meet the pattern's
    verdict, `quiet` (the same probes from home, over loopback, ...) must pass as without the firewall."""

    pattern: str
    sid: int | None
    response: str
    probes: list[Probe]
    skipped: str | None = None
    quiet: list[Probe] = field(default_factory=list)


# --------------------------------------------------------------------------- what the knowledge says


def _in_ranges(port: int, ranges: tuple[PortRange, ...]) -> bool:
    return any(r.low <= port <= r.high for r in ranges)


def _in_nets(address: str, nets: tuple[str, ...]) -> bool:
    ip = ipaddress.ip_address(address)
    return any(ip.version == ipaddress.ip_network(n).version and ip in ipaddress.ip_network(n) for n in nets)


def _net_matches(net: Net, other: Net, address: str, broadcast: bool, kb: KnowledgeBase) -> bool:
    """Whether an address on one side meets the knowledge's word for that side (`other`: the other side).
    external: outside home; home: in home when the other side is home too (internal), else open."""
    if net.kind == "broadcast":
        return broadcast
    if net.kind == "list":
        items = kb.ip_lists[net.list_id].addresses
        if not items:
            return True  # an empty list constrains nothing (targets.firewall.addresses)
        return _in_nets(address, items) != net.negated
    if net.kind == "external":
        return not _in_nets(address, kb.home.addresses)
    if net.kind == "home" and other.kind == "home":
        return _in_nets(address, kb.home.addresses)
    return True


def matches(pattern: Pattern, kb: KnowledgeBase, transport: str, hook: str, sport: int, dport: int,
            src: str, dst: str, broadcast: bool = False, new: bool = True) -> bool:
    """Whether the knowledge says this packet is the pattern's (as a packet filter sees the pattern).
    Loopback (hook "lo") is no pattern's."""
    if pattern.transport != transport or hook not in fw.HOOKS[pattern.direction]:
        return False
    if pattern.detect is Detect.PROBE and not new:
        return False
    if not (_net_matches(pattern.src_net, pattern.dst_net, src, False, kb)
            and _net_matches(pattern.dst_net, pattern.src_net, dst, broadcast, kb)):
        return False
    if pattern.src_ports and not _in_ranges(sport, pattern.src_ports):
        return False
    if pattern.dst_ports and not _in_ranges(dport, pattern.dst_ports):
        return False
    return not (pattern.dst_ports_except and _in_ranges(dport, pattern.dst_ports_except))


def _matching(probe: Probe, patterns: list[Pattern], kb: KnowledgeBase, reply: bool = False) -> list[Pattern]:
    """Patterns matching the probe's first packet, or (reply=True) the answer travelling back."""
    if reply:
        hook = {"in": "output", "out": "input", "lo": "lo"}[probe.way]
        return [p for p in patterns if matches(p, kb, probe.transport, hook, probe.dport, probe.sport,
                                               ADDR[probe.family][probe.dst], probe.src_addr, new=False)]
    return [p for p in patterns if matches(p, kb, probe.transport, probe.hook, probe.sport, probe.dport,
                                           probe.src_addr, probe.dst_addr, probe.broadcast)]


def expected(probe: Probe, patterns: list[Pattern], kb: KnowledgeBase) -> tuple[str, list[Pattern]]:
    """What must happen to the probe under all expressed patterns: answered, timeout, refused or blocked."""
    hits = _matching(probe, patterns, kb)
    verdicts = {p.response for p in hits if p.response in (Response.DROP, Response.REJECT)}
    if not verdicts:
        back = [p for p in _matching(probe, patterns, kb, reply=True) if p.response is Response.DROP]
        return ("timeout" if back else "answered"), hits + back
    if verdicts == {Response.DROP} or probe.broadcast:  # no ICMP error answers a broadcast: a reject is silent
        return "timeout", hits
    if verdicts == {Response.REJECT}:
        return "refused", hits
    return "blocked", hits


def _representatives(ranges: tuple[PortRange, ...]) -> list[int]:
    ports: list[int] = []
    for r in ranges:
        for port in (r.low, r.high):
            if port not in ports:
                ports.append(port)
    return ports[:MAX_PORTS]


def _ways(pattern: Pattern) -> list[str]:
    if pattern.direction is Direction.OUTBOUND:
        return ["out"]
    if pattern.direction is Direction.ANY:
        return ["in", "out"]
    return ["in"]


class _Ports:
    """Source ports for probes: unique per probe, and outside every pattern's source ports."""

    def __init__(self, patterns: list[Pattern]):
        self.taken = [r for p in patterns for r in (*p.src_ports, *p.dst_ports)]
        self.next = FIRST_SOURCE_PORT

    def take(self) -> int:
        while any(r.low <= self.next <= r.high for r in self.taken):
            self.next += 1
        self.next += 1
        return self.next - 1


def _free_dport(pattern: Pattern | None, transport: str, family: int, ends: tuple[str, str], way: str, sport: int,
                patterns: list[Pattern], kb: KnowledgeBase, start: int) -> int | None:
    """A destination port that `pattern` matches (None: that no pattern matches) and no other pattern does."""
    for port in range(start, 65536):
        probe = Probe("", "", family, transport, way, sport, port, *ends)
        hits = {h.id for h in _matching(probe, patterns, kb) + _matching(probe, patterns, kb, reply=True)}
        if hits == ({pattern.id} if pattern else set()):
            return port
    return None


def _quiet(probe: Probe, patterns: list[Pattern], kb: KnowledgeBase) -> list[Probe]:
    """The look-alikes of a firing probe: the same ports from (or to) the peer's other address when the
    pattern does not take that address in, and over loopback (to 127.0.0.1 / ::1 and to the host's own
    address). Only those no expressed pattern matches: each must pass as without the firewall."""
    pattern = next(p for p in patterns if p.id == probe.pattern)
    looks = [replace(probe, src=src, dst=dst) for src, dst in ENDS[probe.way] if (src, dst) != (probe.src, probe.dst)]
    looks = [q for q in looks if not _matching(q, [pattern], kb)]
    looks += [replace(probe, way="lo", src=src, dst=dst, broadcast=False) for src, dst in ENDS["lo"]]
    return [replace(q, key=f"{q.pattern}|quiet|v{q.family}|{q.way}|{q.src}>{q.dst}|{q.transport}|{q.sport}>{q.dport}")
            for q in looks if not (_matching(q, patterns, kb) or _matching(q, patterns, kb, reply=True))]


def plan_cases(kb: KnowledgeBase, expressed: dict[str, int]) -> list[Case]:
    """One Case per expressed pattern (id -> sid), in knowledge order, plus the allowed-traffic check.
    A firing probe goes between the first pair of addresses (ENDS) the pattern takes in: from outside for
    inbound, from the peer's home address for internal, to the outside address for outbound."""
    patterns = [p for p in kb.patterns if p.id in expressed]
    ports = _Ports(patterns)
    cases = []
    for pattern in patterns:
        case = Case(pattern.id, expressed[pattern.id], pattern.response.value, [])
        cases.append(case)
        if pattern.src_net.kind == "broadcast":
            case.skipped = "a broadcast source address cannot be sent from a socket"
            continue
        broadcast = pattern.dst_net.kind == "broadcast"
        families = [4] if broadcast else [4, 6]
        sports = _representatives(pattern.src_ports)
        for way in _ways(pattern):
            for family in families:
                ends = next(((src, dst) for src, dst in ENDS[way]
                             if _net_matches(pattern.src_net, pattern.dst_net, ADDR[family][src], False, kb)
                             and _net_matches(pattern.dst_net, pattern.src_net,
                                              BROADCAST_V4 if broadcast else ADDR[family][dst], broadcast, kb)), None)
                if ends is None:
                    continue  # no namespace address is the pattern's (an IP list elsewhere, a home without them)
                dports: list[int | None] = list(_representatives(pattern.dst_ports)) if pattern.dst_ports else [None]
                for i, dport in enumerate(dports):
                    sport = sports[i % len(sports)] if sports else ports.take()
                    if dport is None:
                        dport = _free_dport(pattern, pattern.transport, family, ends, way, sport, patterns, kb, 20000)
                        if dport is None:
                            case.skipped = "no destination port matches this pattern alone"
                            break
                    key = f"{pattern.id}|v{family}|{way}|{pattern.transport}|{sport}>{dport}"
                    case.probes.append(Probe(key, pattern.id, family, pattern.transport, way, sport, dport,
                                             *ends, broadcast=broadcast))
        if not case.probes and not case.skipped:
            case.skipped = ("no address of the proof's namespaces is one the pattern matches (an IP list, or a "
                            "home network that takes them all in)")
        case.quiet = list({q.key: q for probe in case.probes for q in _quiet(probe, patterns, kb)}.values())
    allowed = Case(ALLOWED, None, "accept", [])
    for transport, way in (("tcp", "in"), ("udp", "in"), ("tcp", "out"), ("udp", "out")):
        for family in (4, 6):
            sport = ports.take()
            dport = _free_dport(None, transport, family, ENDS[way][0], way, sport, patterns, kb, FIRST_FREE_PORT)
            if dport is not None:
                allowed.probes.append(Probe(f"{ALLOWED}|v{family}|{way}|{transport}|{sport}>{dport}", ALLOWED,
                                            family, transport, way, sport, dport, *ENDS[way][0]))
    cases.append(allowed)
    return cases


# --------------------------------------------------------------------------- namespaces and engines


def _run(*cmd: str, check: bool = True, timeout: float = CMD_TIMEOUT, **kw: Any) -> subprocess.CompletedProcess:
    """Run a command (its tools looked up in sbin too); raise RuntimeError when it fails and check is set."""
    args = [tool(c) or c if c in TOOLS else c for c in cmd]
    result = subprocess.run(args, capture_output=True, text=True, timeout=timeout, **kw)
    if check and result.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} exited {result.returncode}: {result.stderr.strip()}")
    return result


def tool(name: str) -> str | None:
    return shutil.which(name) or next((p for p in (f"/usr/sbin/{name}", f"/sbin/{name}") if os.path.exists(p)),
                                      None)


def namespace_names(pid: int | None = None) -> tuple[str, str]:
    pid = os.getpid() if pid is None else pid
    return f"rg-host-{pid}", f"rg-peer-{pid}"


def veth_names(pid: int | None = None) -> tuple[str, str]:
    """The interface names of the host and peer ends of the veth pair (kernel LOG lines name them)."""
    pid = os.getpid() if pid is None else pid
    return f"rgh-{pid}", f"rgp-{pid}"


def _delete_namespaces() -> None:
    existing = _run("ip", "netns", "list", check=False).stdout
    for name in namespace_names():
        if re.search(rf"^{re.escape(name)}\b", existing, re.M):
            _run("ip", "netns", "del", name, check=False)


@contextlib.contextmanager
def namespaces() -> Iterator[dict[str, str]]:
    """Fresh rg-host-<pid> / rg-peer-<pid> joined by a veth pair; always deleted again. The host has its home
    address; the peer an inside (home) and an outside address on the same link."""
    host, peer = namespace_names()
    _delete_namespaces()  # left over from an earlier run of this same process
    try:
        _run("ip", "netns", "add", host)
        _run("ip", "netns", "add", peer)
        ends = dict(zip(("host", "peer"), veth_names(), strict=True))
        _run("ip", "link", "add", ends["host"], "netns", host, "type", "veth",
             "peer", "name", ends["peer"], "netns", peer)
        for role, ns in (("host", host), ("peer", peer)):
            dev = ends[role]
            _run("ip", "-n", ns, "link", "set", "lo", "up")
            own = ["host"] if role == "host" else ["inside", "outside"]
            for name in own:
                for family in (4, 6):
                    prefix = ADDR[family]["prefix"]
                    extra = ["brd", "+"] if family == 4 else ["nodad"]
                    _run("ip", "-n", ns, "addr", "add", f"{ADDR[family][name]}/{prefix}", *extra, "dev", dev)
            # every UDP reject's port unreachable must come back: lift the kernel's ICMP error limits
            _run("ip", "netns", "exec", ns, "sh", "-c", ICMP_UNLIMITED)
            _run("ip", "-n", ns, "link", "set", dev, "up")
            if role == "host":  # the outside network is on the same link: routes both ways
                for family in (4, 6):
                    _run("ip", "-n", ns, f"-{family}", "route", "add", OUTSIDE_NET[family], "dev", dev)
        # fixed neighbour entries both ways: no address resolution races the first probes of a fresh namespace
        macs = {role: json.loads(_run("ip", "-n", ns, "-j", "link", "show", "dev", ends[role]).stdout)[0]["address"]
                for role, ns in (("host", host), ("peer", peer))}
        for role, ns, other, names in (("host", host, "peer", ("inside", "outside")),
                                       ("peer", peer, "host", ("host",))):
            for name in names:
                for family in (4, 6):
                    _run("ip", "-n", ns, "neigh", "replace", ADDR[family][name], "lladdr", macs[other],
                         "dev", ends[role], "nud", "permanent")
        yield {"host": host, "peer": peer}
    finally:
        _delete_namespaces()


def load(target: str, ns: str, out_dir: Path) -> None:
    """Load an out/'s iptables (with its ipsets) or nftables rules into namespace `ns`."""
    if target == "iptables":
        ipsets = out_dir / "iptables" / "rulegen.ipset"
        if ipsets.is_file():  # the sets the rules match must exist first
            _run("ip", "netns", "exec", ns, "ipset", "restore", "-file", str(ipsets))
        _run("ip", "netns", "exec", ns, "iptables-restore", "--noflush", str(out_dir / "iptables" / "rulegen.rules"))
        _run("ip", "netns", "exec", ns, "ip6tables-restore", "--noflush",
             str(out_dir / "iptables" / "rulegen6.rules"))
    else:
        _run("ip", "netns", "exec", ns, "nft", "-f", str(out_dir / "nftables" / "rulegen.nft"))


@dataclass
class Counted:
    family: str  # "4" / "6" (iptables) or "inet" (nftables)
    hook: str
    comment: str
    kind: str  # log | drop | reject | other
    packets: int | None  # None: the rule has no counter


def read_counters(target: str, ns: str) -> list[Counted]:
    rules = []
    if target == "iptables":
        for family, save in (("4", "iptables-save"), ("6", "ip6tables-save")):
            text = _run("ip", "netns", "exec", ns, save, "-c", "-t", "filter").stdout
            for line in text.splitlines():
                m = re.match(r"^\[(\d+):\d+\] -A (\S+) (.*)$", line)
                hook = HOOK_OF_CHAIN.match(m.group(2)) if m else None
                if not m or not hook or not hook.group(1):
                    continue
                comment = re.search(r'--comment (?:"([^"]*)"|(\S+))', m.group(3))
                verdict = re.search(r" -j (\S+)", m.group(3))
                kind = LOG_KINDS.get(verdict.group(1), verdict.group(1).lower()) if verdict else "other"
                rules.append(Counted(family, hook.group(1).lower(), (comment.group(1) or comment.group(2))
                                     if comment else "", kind if kind in ("log", "drop", "reject") else "other",
                                     int(m.group(1))))
    else:
        data = json.loads(_run("ip", "netns", "exec", ns, "nft", "-j", "list", "table", "inet", "rulegen").stdout)
        for item in data.get("nftables", []):
            rule = item.get("rule")
            if not rule:
                continue
            kinds = [k for e in rule.get("expr", []) for k in e if k in ("log", "drop", "reject")]
            counters = [e["counter"]["packets"] for e in rule.get("expr", []) if "counter" in e]
            hook = HOOK_OF_CHAIN.match(rule["chain"])
            if not hook or not hook.group(2):
                continue
            rules.append(Counted("inet", hook.group(2), rule.get("comment", ""), kinds[-1] if kinds else "other",
                                 counters[0] if counters else None))
    return rules


# --------------------------------------------------------------------------- running probes


def _helper(ns: str, mode: str) -> list[str]:
    return [tool("ip") or "ip", "netns", "exec", ns, sys.executable, "-m", "rulegen.prove.firewall", mode]


def _helper_env() -> dict[str, str]:
    root = str(Path(__file__).resolve().parent.parent.parent)
    path = os.environ.get("PYTHONPATH")
    return {**os.environ, "PYTHONPATH": root + (os.pathsep + path if path else "")}


@contextlib.contextmanager
def _listener(ns: str, probes: list[Probe]) -> Iterator[None]:
    """Listeners on the probes' ports in `ns`; UDP ones also on each probed address, so that an echo leaves
    from the address the datagram came to (the peer has two on one link)."""
    ports = {(p.transport, p.family, p.dport) for p in probes if p.dport}
    spec = sorted({*((*port, "") for port in ports),  # "": every address (a broadcast reaches only these)
                   *((p.transport, p.family, p.dport, p.dst_addr) for p in probes
                     if p.dport and p.transport == "udp" and not p.broadcast)})
    proc = subprocess.Popen(_helper(ns, "listen"), stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=_helper_env())
    try:
        assert proc.stdin and proc.stdout
        proc.stdin.write(json.dumps(spec) + "\n")
        proc.stdin.flush()
        with selectors.DefaultSelector() as sel:
            sel.register(proc.stdout, selectors.EVENT_READ)
            ready = sel.select(timeout=HELPER_TIMEOUT) and proc.stdout.readline().strip() == "ready"
        if not ready:
            proc.kill()
            raise RuntimeError(f"listener in {ns} did not start: {proc.communicate(timeout=10)[1].strip()}")
        yield
    finally:
        if proc.poll() is None:
            with contextlib.suppress(OSError):
                proc.stdin.close()  # the listener ends at end of input
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)
        for stream in (proc.stdin, proc.stdout, proc.stderr):
            if stream:
                with contextlib.suppress(OSError):
                    stream.close()


def run_probes(ns: dict[str, str], probes: list[Probe]) -> dict[str, dict]:
    """Run every probe (inbound ones, then outbound ones, then those over loopback); results by probe key."""
    results: dict[str, dict] = {}
    for way, (client, server, _hook) in WAYS.items():
        batch = [p for p in probes if p.way == way]
        if not batch:
            continue
        spec = [{**asdict(p), "src_addr": p.src_addr, "dst_addr": p.dst_addr} for p in batch]
        with _listener(ns[server], batch):
            out = _run(*_helper(ns[client], "probe"), input=json.dumps(spec), env=_helper_env(),
                       timeout=HELPER_TIMEOUT)
        results.update(json.loads(out.stdout))
    return results


def _session(target: str, probes: list[Probe], out_dir: Path) -> tuple[dict, dict, list[Counted]]:
    """The probes without a firewall, then with the rules loaded (fresh namespaces each), and the counters."""
    with namespaces() as ns:
        control = run_probes(ns, probes)
    with namespaces() as ns:
        load(target, ns["host"], out_dir)
        firewalled = run_probes(ns, probes)
        counted = read_counters(target, ns["host"])
    return control, firewalled, counted


# --------------------------------------------------------------------------- judging


def _own_rules(counted: list[Counted], case: Case, probe: Probe, target: str) -> list[Counted]:
    family = str(probe.family) if target == "iptables" else "inet"
    prefix = f"rulegen {case.sid} {case.pattern} "
    return [c for c in counted if c.family == family and c.hook == probe.hook and c.comment.startswith(prefix)]


def _judge(case: Case, target: str, patterns: list[Pattern], kb: KnowledgeBase, control: dict, firewalled: dict,
           counted: list[Counted]) -> Proof:
    notes, ok = [], bool(case.probes)
    for probe in case.probes:
        want, hits = expected(probe, patterns, kb)
        got, base = firewalled.get(probe.key, {"outcome": "missing"}), control.get(probe.key, {"outcome": "missing"})
        outcome = got["outcome"]
        good = {"answered": outcome == base["outcome"],
                "timeout": outcome == "timeout" or (probe.way == "out" and outcome == "eperm"),
                "refused": (outcome == "refused" and got.get("elapsed", TIMEOUT) < REFUSED_WITHIN)
                or (probe.way == "out" and outcome == "eperm"),  # the sender's own stack refused it
                "blocked": outcome in ("timeout", "refused", "eperm")}[want]
        # without the firewall something must answer, or a timeout proves nothing. Where nothing can listen
        # (port 0) the closed port's refusal is the baseline: a logged probe must meet it unchanged, and a
        # reject, which looks the same, is shown by the pattern's own REJECT counter (checked below)
        base_ok = base["outcome"] == "answered" or (want != "blocked" and base["outcome"] == "refused")
        note = f"{probe.label()}: {outcome}"
        if outcome == "refused":
            note += f" in {got.get('elapsed', 0):.3f}s"
        note += f" (want {want}; without firewall {base['outcome']})"
        others = [h.id for h in hits if h.id != case.pattern]
        if others:
            note += f", also matches {','.join(others)}"
        if case.sid is not None:
            own = _own_rules(counted, case, probe, target)
            # each of the pattern's probes through this chain sent at least one packet; the LOG rule's
            # rate limit lets at most its burst through (counters are per rule, so per family for
            # iptables and shared by IPv4 and IPv6 in the inet table)
            sharing = [q for q in case.probes if q.hook == probe.hook and
                       (target == "nftables" or q.family == probe.family)]
            need = len(sharing)
            logs = [c for c in own if c.kind == "log"]
            verdicts = [c for c in own if c.kind == case.response]
            if not logs:
                good = False
                note += ", no LOG rule of its own in this hook"
            elif any(c.packets is None for c in logs):
                good = False
                note += ", its LOG rule has no counter"
            else:
                count = sum(c.packets or 0 for c in logs)
                note += f", LOG counted {count}"
                good = good and count >= min(need, fw.LOG_BURST)
            if case.response in ("drop", "reject"):
                count = sum(c.packets or 0 for c in verdicts)
                note += f", {case.response.upper()} counted {count}"
                if not verdicts:
                    note += f" (no {case.response.upper()} rule of its own in this hook)"
                good = good and bool(verdicts) and count >= need
        if not (good and base_ok):
            note = "FAILED " + note
        ok = ok and good and base_ok
        notes.append(note)
    if not case.probes:
        notes.append("no probe could be derived")
    return Proof(case.pattern, target, ok, "; ".join(notes), side="quiet" if case.sid is None else "fires")


def _judge_quiet(case: Case, target: str, control: dict, firewalled: dict, counted: list[Counted]) -> Proof:
    """The look-alikes (no pattern's, by the knowledge) must pass as without the firewall, and the pattern's
    own rules, all of them, must have counted nothing in the session that sent only look-alikes."""
    failed = []
    for probe in case.quiet:
        got = firewalled.get(probe.key, {}).get("outcome", "missing")
        base = control.get(probe.key, {}).get("outcome", "missing")
        if got != base or base not in ("answered", "refused"):
            failed.append(f"FAILED {probe.label()}: {got} (without firewall {base})")
    prefix = f"rulegen {case.sid} {case.pattern} "
    own = [c for c in counted if c.comment.startswith(prefix)]  # its jumps, LOG and verdict rules, every hook
    count = sum(c.packets or 0 for c in own)
    if not any(c.kind != "other" and c.packets is not None for c in own):
        failed.append("FAILED no rule of its own found loaded")
    elif count:
        failed.append(f"FAILED its rules counted {count}")
    sent = ", ".join(sorted({f"{q.src}>{q.dst}" for q in case.quiet}))
    detail = f"{len(case.quiet)} look-alike(s) sent ({sent}): answered as without firewall, own rules counted 0"
    return Proof(case.pattern, target, not failed, "; ".join(failed) if failed else detail, side="quiet")


def expressed_patterns(out_dir: Path, target: str) -> dict[str, int]:
    """From an out/'s manifest: the patterns a target expresses, id -> SID."""
    manifest = json.loads((out_dir / "manifest.json").read_text(encoding="utf-8"))
    return {row["id"]: row["sid"] for row in manifest["patterns"]
            if row["coverage"].get(target, {}).get("expressed")}


def _missing(target: str, out_dir: Path) -> str | None:
    if os.geteuid() != 0:
        return "needs root (creates network namespaces and loads firewall rules)"
    tools = ["ip"] + (["iptables-restore", "ip6tables-restore", "iptables-save", "ip6tables-save"]
                      if target == "iptables" else ["nft"])
    absent = [t for t in tools if not tool(t)]
    if absent:
        return f"{', '.join(absent)} not installed"
    files = ["iptables/rulegen.rules", "iptables/rulegen6.rules"] if target == "iptables" else ["nftables/rulegen.nft"]
    if not all((out_dir / f).is_file() for f in files):
        return f"{target} output not built in {out_dir}"
    return None


def prove(kb: KnowledgeBase, out_dir: Path, work_dir: Path, targets: tuple[str, ...] = TARGETS) -> list[Proof]:
    """Per expressed pattern and target a `fires` Proof and a `quiet` one, plus one `allowed-traffic` Proof
    (quiet) per target."""
    out_dir, work_dir = Path(out_dir), Path(work_dir)
    proofs: list[Proof] = []
    for target in targets:
        expressed = expressed_patterns(out_dir, target)
        cases = plan_cases(kb, expressed)
        patterns = [p for p in kb.patterns if p.id in expressed]
        proofs += [Proof(pid, target, False, "expressed in the manifest but not in the knowledge given")
                   for pid in sorted(set(expressed) - {p.id for p in patterns})]
        reason = _missing(target, out_dir)
        if reason:
            proofs += [Proof(c.pattern, target, False, "not run", skipped=reason, side=side)
                       for c in cases for side in (("fires", "quiet") if c.sid is not None else ("quiet",))]
            continue
        started = time.monotonic()
        try:
            fires = _session(target, [p for c in cases if not c.skipped for p in c.probes], out_dir)
            # the look-alikes in a session of their own, so that any count of a pattern's rules is theirs
            quiet = _session(target, [q for c in cases if not c.skipped for q in c.quiet], out_dir)
        except (RuntimeError, subprocess.SubprocessError, OSError, ValueError) as exc:
            proofs += [Proof(c.pattern, target, False, f"the proof run failed: {exc}", side=side)
                       for c in cases for side in (("fires", "quiet") if c.sid is not None else ("quiet",))]
            continue
        work_dir.mkdir(parents=True, exist_ok=True)
        (work_dir / f"firewall-{target}.json").write_text(json.dumps(
            {"seconds": round(time.monotonic() - started, 2),
             **{f"{name}_{part}": value for name, run in (("fires", fires), ("quiet", quiet))
                for part, value in (("control", run[0]), ("firewalled", run[1]),
                                    ("counters", [asdict(c) for c in run[2]]))}},
            indent=1, sort_keys=True), encoding="utf-8")
        for case in cases:
            if case.skipped:
                proofs += [Proof(case.pattern, target, False, "not run", skipped=case.skipped, side=side)
                           for side in ("fires", "quiet")]
                continue
            proofs.append(_judge(case, target, patterns, kb, *fires))
            if case.sid is not None:
                proofs.append(_judge_quiet(case, target, *quiet))
    return proofs


# --------------------------------------------------------------------------- the helper (inside a namespace)


def _payload(key: str) -> bytes:
    return f"rulegen-probe {key}".encode()


def _family(probe: dict) -> int:
    return socket.AF_INET if probe["family"] == 4 else socket.AF_INET6


def _tcp(probe: dict) -> tuple[str, str]:
    with socket.socket(_family(probe), socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind((probe["src_addr"], probe["sport"]))
        s.settimeout(TIMEOUT)
        try:
            s.connect((probe["dst_addr"], probe["dport"]))
        except ConnectionRefusedError:
            return "refused", "RST"
        except TimeoutError:
            return "timeout", ""
        except PermissionError:
            return "eperm", "dropped on the way out"
        except OSError as exc:
            return "error", str(exc)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        return "answered", "connected"


def _waits(deadline: float) -> Iterator[float]:
    """The timeouts of a probe's reads up to its deadline: one read at least, for a thread that ran only after it."""
    yield max(deadline - time.monotonic(), LAST_LOOK)
    while (left := deadline - time.monotonic()) > 0:
        yield left


def _udp(probe: dict) -> tuple[str, str]:
    payload = _payload(probe["key"])
    with socket.socket(_family(probe), socket.SOCK_DGRAM) as s:
        if probe["way"] == "lo":  # the listener in the same namespace may hold this port (sport = dport)
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind((probe["src_addr"], probe["sport"]))
        deadline = time.monotonic() + TIMEOUT
        try:
            if probe["broadcast"]:
                s.setsockopt(socket.SOL_SOCKET, socket.SO_BROADCAST, 1)
                s.sendto(payload, (probe["dst_addr"], probe["dport"]))
            else:
                s.connect((probe["dst_addr"], probe["dport"]))
                s.send(payload)
            for wait in _waits(deadline):
                s.settimeout(wait)
                if s.recv(4096) == payload:
                    return "answered", "echoed"
        except ConnectionRefusedError:
            return "refused", "ICMP port unreachable"
        except TimeoutError:
            pass
        except PermissionError:
            return "eperm", "dropped on the way out"
        except OSError as exc:
            return "error", str(exc)
    return "timeout", ""


def _udp_raw(probe: dict) -> tuple[str, str]:
    """UDP to port 0, which sockets refuse to send: a raw datagram, and a raw ICMP socket for the answer."""
    v4 = probe["family"] == 4
    payload = _payload(probe["key"])
    header = struct.pack("!HHHH", probe["sport"], probe["dport"], 8 + len(payload), 0)
    with socket.socket(_family(probe), socket.SOCK_RAW, socket.IPPROTO_UDP) as snd, \
            socket.socket(_family(probe), socket.SOCK_RAW,
                          socket.IPPROTO_ICMP if v4 else socket.IPPROTO_ICMPV6) as rcv:
        if not v4:
            snd.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_CHECKSUM, 6)  # the kernel fills the UDP checksum
        snd.bind((probe["src_addr"], 0))
        deadline = time.monotonic() + TIMEOUT
        try:
            snd.sendto(header + payload, (probe["dst_addr"], 0))
            for wait in _waits(deadline):
                rcv.settimeout(wait)
                data = rcv.recv(4096)
                icmp = data[(data[0] & 0x0F) * 4:] if v4 else data
                if len(icmp) < 8 or (icmp[0], icmp[1]) != ((3, 3) if v4 else (1, 4)):
                    continue
                inner = icmp[8:]
                start = (inner[0] & 0x0F) * 4 if v4 else 40
                if len(inner) >= start + 4 and struct.unpack("!HH", inner[start:start + 4]) == \
                        (probe["sport"], probe["dport"]):
                    return "refused", "ICMP port unreachable"
        except TimeoutError:
            pass
        except PermissionError:
            return "eperm", "dropped on the way out"
        except OSError as exc:
            return "error", str(exc)
    return "timeout", ""


def _probe_one(probe: dict) -> dict:
    started = time.monotonic()
    if probe["transport"] == "tcp":
        outcome, detail = _tcp(probe)
    elif probe["dport"] == 0:
        outcome, detail = _udp_raw(probe)
    else:
        outcome, detail = _udp(probe)
    return {"outcome": outcome, "detail": detail, "elapsed": round(time.monotonic() - started, 4)}


def _probe_main(spec: list[dict]) -> dict[str, dict]:
    """Run all probes at once; probes that share a source endpoint run one after another."""
    # over loopback both ends share one namespace: a probe 31789 -> 31790 would receive the datagram of a probe
    # 31790 -> 31789. Probes whose ports connect (union-find over source and destination port) run in turn
    joined: dict[tuple, tuple] = {}

    def root(node: tuple) -> tuple:
        while joined.setdefault(node, node) != node:
            node = joined[node]
        return node

    for probe in spec:
        if probe["way"] == "lo":
            joined[root((probe["family"], probe["sport"]))] = root((probe["family"], probe["dport"]))
    groups: dict[tuple, list[dict]] = {}
    for probe in spec:
        key = (("lo", *root((probe["family"], probe["sport"]))) if probe["way"] == "lo"
               else (probe["family"], probe["transport"], probe["sport"]))
        groups.setdefault(key, []).append(probe)
    results: dict[str, dict] = {}
    lock = threading.Lock()

    def run(group: list[dict]) -> None:
        for probe in group:
            result = _probe_one(probe)
            with lock:
                results[probe["key"]] = result

    with ThreadPoolExecutor(max_workers=max(1, len(groups))) as pool:
        for future in [pool.submit(run, g) for g in groups.values()]:
            future.result()
    return results


def _listen_main(spec: list[list]) -> None:
    """TCP listeners that accept and close, UDP listeners that echo; until stdin closes (or 5 minutes).
    spec: [transport, family, port, address ("": every address)]."""
    sel = selectors.DefaultSelector()
    for transport, family, port, address in spec:
        fam = socket.AF_INET if family == 4 else socket.AF_INET6
        s = socket.socket(fam, socket.SOCK_STREAM if transport == "tcp" else socket.SOCK_DGRAM)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if family == 6:
            s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        s.bind((address or ADDR[family]["any"], port))
        if transport == "tcp":
            s.listen(64)
        s.setblocking(False)
        sel.register(s, selectors.EVENT_READ, transport)
    sel.register(sys.stdin, selectors.EVENT_READ, "stdin")
    print("ready", flush=True)
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        for key, _ in sel.select(timeout=1):
            sock = key.fileobj
            try:
                if key.data == "stdin":
                    if not sys.stdin.readline():
                        return
                elif key.data == "tcp":
                    conn, _addr = sock.accept()  # type: ignore[union-attr]
                    conn.close()
                else:
                    data, addr = sock.recvfrom(4096)  # type: ignore[union-attr]
                    sock.sendto(data, addr)  # type: ignore[union-attr]
            except (BlockingIOError, ConnectionError):
                continue


def _main(argv: list[str]) -> int:
    if argv == ["listen"]:
        _listen_main(json.loads(sys.stdin.readline()))
        return 0
    if argv == ["probe"]:
        print(json.dumps(_probe_main(json.load(sys.stdin))))
        return 0
    print("usage: python -m rulegen.prove.firewall listen|probe  (JSON spec on stdin)", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(_main(sys.argv[1:]))
