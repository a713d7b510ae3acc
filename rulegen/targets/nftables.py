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


FAMILIES = ((4, "ip", "ipv4_addr"), (6, "ip6", "ipv6_addr"))


def _address(side: str, spec: dict[str, Any], sets: dict[str, dict]) -> dict[int, list[str] | None]:
    """Per address family, the matches for one side (None: no packet of that family can match).
    An IP list becomes one named set per family: an `ip` and an `ip6` match cannot share a rule."""
    key = "saddr" if side == "src" else "daddr"
    if spec.get("broadcast"):
        return {4: [f"fib {key} type broadcast"], 6: [f"fib {key} type broadcast"]}
    if "list" not in spec:
        return {4: [], 6: []}
    result: dict[int, list[str] | None] = {}
    for family, proto, kind in FAMILIES:
        items = spec[f"v{family}"]
        if not items:  # nothing of this family listed: a negated list excludes nothing, a list matches nothing
            result[family] = [f"meta nfproto ipv{family}"] if spec["negated"] else None
            continue
        name = f"{spec['list']}_v{family}"
        sets[name] = {"name": name, "type": kind, "elements": items}
        result[family] = [f"{proto} {key} {'!= ' if spec['negated'] else ''}@{name}"]
    return result


def _rules_for(context: dict[str, Any], sid: int, sets: dict[str, dict]) -> list[str]:
    src, dst = _address("src", context["src"], sets), _address("dst", context["dst"], sets)
    if "list" not in context["src"] and "list" not in context["dst"]:
        return _family_rules(context, sid, src[4] + dst[4])
    rules = []
    for family, _proto, _kind in FAMILIES:
        if src[family] is not None and dst[family] is not None:
            rules += _family_rules(context, sid, src[family] + dst[family])
    return rules


def _family_rules(context: dict[str, Any], sid: int, addresses: list[str]) -> list[str]:
    proto = context["transport"]
    parts = [f"meta l4proto {proto}", *addresses]
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
