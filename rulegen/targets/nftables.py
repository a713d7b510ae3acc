"""An nftables table `inet rulegen` (IPv4 and IPv6) that replaces itself on every load."""

from __future__ import annotations

from typing import Any

from rulegen.model import KnowledgeBase, Pattern
from rulegen.targets import Artifact, Plan, Stamp, firewall

NAME = "nftables"
PATH = "nftables/rulegen.nft"
HOOKS = ("input", "forward", "output")


def plan(pattern: Pattern, kb: KnowledgeBase) -> Plan:
    result = firewall.plan(pattern, kb)
    if not result.expressed:
        return result
    # LOG rules carry a counter, as every iptables rule does: without it nothing shows that a log-only
    # rule fired (a LOG in a network namespace other than the first writes nothing to the kernel log)
    return Plan(pattern, context={**(result.context or {}), "log_counter": True})


def _ports(ranges: list[list[int]]) -> str:
    items = [str(lo) if lo == hi else f"{lo}-{hi}" for lo, hi in ranges]
    return items[0] if len(items) == 1 else "{ " + ", ".join(items) + " }"


def _address(side: str, spec: dict[str, Any], sets: dict[str, dict]) -> list[str]:
    """Matches for one address side; named sets for IP lists (one per family)."""
    key = "saddr" if side == "src" else "daddr"
    if spec.get("broadcast"):
        return [f"fib {key} type broadcast"]
    if "list" not in spec:
        return []
    op = "!= " if spec["negated"] else ""
    matches = []
    for family, proto, kind in ((4, "ip", "ipv4_addr"), (6, "ip6", "ipv6_addr")):
        items = spec[f"v{family}"]
        if items:
            name = f"{spec['list']}_v{family}"
            sets[name] = {"name": name, "type": kind, "elements": items}
            matches.append(f"{proto} {key} {op}@{name}")
    return matches


def _rules_for(context: dict[str, Any], sid: int, sets: dict[str, dict]) -> list[str]:
    proto = context["transport"]
    parts = [f"meta l4proto {proto}"]
    parts += _address("src", context["src"], sets)
    parts += _address("dst", context["dst"], sets)
    if context["src_ports"]:
        parts.append(f"{proto} sport {_ports(context['src_ports'])}")
    if context["dst_ports"]:
        parts.append(f"{proto} dport {_ports(context['dst_ports'])}")
    if context["dst_ports_except"]:
        parts.append(f"{proto} dport != {_ports(context['dst_ports_except'])}")
    if context["new_only"]:
        parts.append("ct state new")
    match = " ".join(parts)
    action = context["action"]
    comment = firewall.comment(sid, context["pattern_id"], context["title"], limit=128)
    counter = "counter " if context.get("log_counter") else ""
    rules = [f'{match} limit rate {firewall.LOG_RATE} burst {firewall.LOG_BURST} packets '
             f'{counter}log prefix "{firewall.log_prefix(sid, action)}" comment "{comment}"']
    if action == "drop":
        rules.append(f'{match} counter drop comment "{comment}"')
    elif action == "reject":
        verdict = "reject with tcp reset" if proto == "tcp" else "reject with icmpx type port-unreachable"
        rules.append(f'{match} counter {verdict} comment "{comment}"')
    return rules


def render(plans: list[Plan], stamps: dict[str, Stamp], env: Any, kb: KnowledgeBase) -> list[Artifact]:
    ordered = firewall.rule_order(plans, stamps)
    sets: dict[str, dict] = {}
    chains = []
    for hook in HOOKS:
        rules = []
        for p in ordered:
            if hook in p.context["hooks"]:
                rules.extend(_rules_for(p.context, stamps[p.pattern.id].sid, sets))
        chains.append({"name": hook, "rules": rules})
    text = env.get_template("nftables/rulegen.nft.j2").render(
        chains=chains, sets=[sets[k] for k in sorted(sets)])
    return [Artifact(PATH, text, [p.pattern.id for p in sorted(plans, key=lambda p: stamps[p.pattern.id].sid)])]
