"""What iptables and nftables share: which patterns a packet filter carries, and in which hooks."""

from __future__ import annotations

import dataclasses
import ipaddress
import re
from typing import Any

from rulegen.model import Detect, Direction, KnowledgeBase, Net, Pattern, PortRange, Response
from rulegen.targets import Plan, Stamp, gap

HOOKS = {
    Direction.INBOUND: ("input", "forward"),
    Direction.OUTBOUND: ("output", "forward"),
    Direction.INTERNAL: ("input", "forward"),
    Direction.BROADCAST: ("input", "forward"),
    Direction.ANY: ("input", "forward", "output"),
}
LOG_RATE = "5/minute"
LOG_BURST = 10
MULTIPORT_MAX = 15  # ports per multiport rule; a range counts two
POLICIES = ("log", "drop", "reject")  # `rulegen build --policy`
HOOK_PLACES = ("insert", "append")  # `rulegen build --hook`
LOG_TARGETS = ("log", "nflog")  # `rulegen build --firewall-log`: the kernel LOG target, or NFLOG for ulogd2
NFLOG_GROUP = 1  # `rulegen build --nflog-group`: the netlink group ulogd2's NFLOG input listens on
NFLOG_GROUPS = range(0, 65536)
HOME = "home"  # the name of the home address set (ipsets rg-home-4/-6, nftables sets home4/home6)
INTERFACE = re.compile(r"[A-Za-z0-9_.:-]{1,15}")  # a Linux interface name (IFNAMSIZ - 1), no wildcards


@dataclasses.dataclass(frozen=True)
class Deploy:
    """Where the firewall targets hook in and where they log (`rulegen build --wan-if`, `--hook`,
    `--firewall-log`, `--nflog-group`); what a pattern matches and does stays the same.
    wan_if: the interfaces whose packets the hooks act on (empty: every interface but loopback).
    hook: insert puts the jumps (iptables) or base chains (nftables) before the site's own filter rules,
    append after them.
    log: `log` writes to the kernel log (syslog, journalctl -k); `nflog` hands the packet to netlink group
    `nflog_group`, for ulogd2 (its JSON output plugin, a database...), with the same prefix and rate limit."""

    wan_if: tuple[str, ...] = ()
    hook: str = "insert"
    log: str = "log"
    nflog_group: int = NFLOG_GROUP

    def __post_init__(self) -> None:
        if self.hook not in HOOK_PLACES:
            raise ValueError(f"hook must be one of {', '.join(HOOK_PLACES)}, not {self.hook!r}")
        if self.log not in LOG_TARGETS:
            raise ValueError(f"firewall log must be one of {', '.join(LOG_TARGETS)}, not {self.log!r}")
        if self.nflog_group not in NFLOG_GROUPS:
            raise ValueError(f"--nflog-group {self.nflog_group}: a netlink group is 0 to 65535")
        for name in self.wan_if:
            if not INTERFACE.fullmatch(name) or name == "lo":
                raise ValueError(f"--wan-if {name!r}: not an interface name (1-15 letters, digits or _.:-; "
                                 "not lo, whose traffic rulegen never matches)")

    def record(self) -> dict[str, Any]:
        """What manifest.json says about the hooks and the log."""
        log = {"target": "nflog", "group": self.nflog_group} if self.log == "nflog" else {"target": "log"}
        return {"wan_if": list(self.wan_if), "hook": self.hook, "log": log}


DEFAULT_DEPLOY = Deploy()


def with_policy(kb: KnowledgeBase, policy: str | None) -> KnowledgeBase:
    """The knowledge as the firewall targets see it under `--policy`: every response becomes the policy,
    except `alert`, which stays detection only (the knowledge says not to block or log it, e.g. the
    Conducent ad servers, whose adbot floods the link when blocked). None: the knowledge unchanged."""
    if policy is None:
        return kb
    response = Response(policy)
    entries = tuple(dataclasses.replace(entry, patterns=tuple(
        p if p.response is Response.ALERT else dataclasses.replace(p, response=response) for p in entry.patterns))
        for entry in kb.entries)
    return dataclasses.replace(kb, entries=entries)


def log_prefix(sid: int, action: str) -> str:
    """The kernel keeps 29 characters of a LOG prefix; this one is at most 24."""
    return f"rulegen:{sid}:{action} "


def comment(sid: int, pattern_id: str, title: str, limit: int = 255) -> str:
    """A comment both firewalls accept unquoted-safe: no quotes, backslashes or line breaks."""
    safe_title = re.sub(r"[^A-Za-z0-9 ._:/()+-]+", " ", title)
    text = " ".join(f"rulegen {sid} {pattern_id} {safe_title}".split())
    return text[:limit].rstrip()


def addresses(net: Net, kb: KnowledgeBase, other: Net) -> dict[str, Any]:
    """The address side for a filter (`other`: the flow's other side): broadcast, a list (maybe negated) split
    by family, the home set, or nothing. `external` is "not in home"; `home` is "in home" only when the other
    side is home too (internal): the destination of an inbound probe stays open, as a host with a public
    address receives probes on it, and so does the source of an outbound one."""
    if net.kind == "external":
        return {HOME: True, "negated": True}
    if net.kind == "home" and other.kind == "home":
        return {HOME: True, "negated": False}
    if net.kind == "broadcast":
        return {"broadcast": True}
    if net.kind == "list":
        items = kb.ip_lists[net.list_id].addresses
        v4 = [a for a in items if ipaddress.ip_network(a).version == 4]
        v6 = [a for a in items if ipaddress.ip_network(a).version == 6]
        if not items:
            return {}
        return {"list": net.list_id.replace("-", "_"), "v4": v4, "v6": v6, "negated": net.negated}
    return {}


def port_list(ranges: tuple[PortRange, ...]) -> list[list[int]]:
    return [[r.low, r.high] for r in ranges]


def specificity(context: dict[str, Any]) -> int:
    """How many of a rule's match fields are fixed: source ports, destination ports, source and destination
    addresses. The home set does not count: it is the direction every pattern has, not a narrower choice."""
    return sum(bool(field) for field in (context["src_ports"], context["dst_ports"] or context["dst_ports_except"],
                                         *(side for side in (context["src"], context["dst"]) if HOME not in side)))


def rule_order(plans: list[Plan], stamps: dict[str, Stamp]) -> list[Plan]:
    """The order of the rules in a chain: the most specific first, then by SID.

    A packet stops at the first DROP or REJECT that matches it, so a broad rule placed first would shadow
    a narrower pattern for good: the LOG of `echo-squid-source-ping` (UDP 3130 -> 7) would never see a
    packet behind `echo-udp-probe` (UDP -> 7, drop), nor `hack-a-tack-31790-to-31789` behind
    `hack-a-tack-inbound-probe` (UDP -> 31789, drop). Narrow first, every pattern's own rules count
    the traffic they describe, and the broad rule still drops it when the narrow one only logs.
    Among equally specific rules, those that name destination ports come first, so that they form one
    run behind one port gate (port_runs); the SID orders the rest.
    """
    return sorted(plans, key=lambda p: (-specificity(p.context or {}), not (p.context or {}).get("dst_ports"),
                                        stamps[p.pattern.id].sid))


def port_runs(plans: list[Plan]) -> list[list[Plan]]:
    """A protocol chain's plans (in rule_order) cut into runs: consecutive plans that all name destination
    ports, and single plans that do not. A run of the first kind can sit in a chain of its own behind a gate
    on those ports: a packet to any other port passes one gate rule instead of every rule of the run, and
    the order of the rules (so what each pattern counts) is unchanged."""
    runs: list[list[Plan]] = []
    for p in plans:
        if p.context["dst_ports"] and runs and runs[-1][-1].context["dst_ports"]:
            runs[-1].append(p)
        else:
            runs.append([p])
    return runs


def merged_ports(plans: list[Plan]) -> list[list[int]]:
    """The destination ports of the plans as few sorted, disjoint ranges as possible."""
    merged: list[list[int]] = []
    for low, high in sorted(r for p in plans for r in p.context["dst_ports"]):
        if merged and low <= merged[-1][1] + 1:
            merged[-1][1] = max(merged[-1][1], high)
        else:
            merged.append([low, high])
    return merged


# Why a payload match has no packet-filter form. The filters see one packet at a time, without the stream
# reassembly or protocol parsing the match kinds need.
MATCH_GAPS = {
    "content": "a content match reads the reassembled TCP stream or a whole UDP payload; a packet filter sees one "
               "packet at a time, so a message split across segments would pass",
    "http": "an http match needs the HTTP request parsed across the segments of a TCP session; a packet filter "
            "parses no HTTP",
    "ntp": "the NTP mode and request are bits of the UDP payload that iptables -m u32 or nftables @th expressions "
           "could read, but rulegen's packet-filter targets generate no payload expressions",
}


def plan(pattern: Pattern, kb: KnowledgeBase) -> Plan:
    if pattern.response.value == "alert":
        return gap(pattern, "response is alert: the knowledge asks for detection only, nothing to block or log")
    if pattern.match is not None:
        why = MATCH_GAPS.get(pattern.match.kind)
        return gap(pattern, f"needs application data (a {pattern.match.kind} match) that a packet filter does not "
                            f"inspect{': ' + why if why else ''}")
    if pattern.sweep is not None:
        return gap(pattern, "a sweep counts many ports or hosts per source; the snippet acts on single packets")
    src, dst = addresses(pattern.src_net, kb, pattern.dst_net), addresses(pattern.dst_net, kb, pattern.src_net)
    context = {
        "pattern_id": pattern.id,
        "title": pattern.title,
        "transport": pattern.transport,
        "hooks": list(HOOKS[pattern.direction]),
        "src_ports": port_list(pattern.src_ports),
        "dst_ports": port_list(pattern.dst_ports),
        "dst_ports_except": port_list(pattern.dst_ports_except),
        "src": src,
        "dst": dst,
        "new_only": pattern.detect is Detect.PROBE,
        "action": pattern.response.value,
    }
    return Plan(pattern, context=context)
