"""An nftables table `inet rulegen` (IPv4 and IPv6) that replaces itself on every load."""

from __future__ import annotations

from typing import Any

from rulegen.model import KnowledgeBase, Pattern
from rulegen.targets import Artifact, Plan, Stamp, firewall

NAME = "nftables"
PATH = "nftables/rulegen.nft"
HOOKS = ("input", "forward", "output")
# the base chains' priority: before (insert) or after (append) the site's own `filter` chains on the same hook
PRIORITY = {"insert": "filter - 10", "append": "filter + 10"}


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
    The home network and an IP list are one named set per family: an `ip` and an `ip6` match cannot share
    a rule (in the inet table a rule with `ip saddr` matches IPv4 packets only)."""
    key = "saddr" if side == "src" else "daddr"
    if spec.get("broadcast"):
        return {4: [f"fib {key} type broadcast"], 6: None}  # IPv6 has no broadcast
    if firewall.HOME in spec:
        return {family: [f"{proto} {key} {'!= ' if spec['negated'] else ''}@{firewall.HOME}{family}"]
                for family, proto, _kind in FAMILIES}
    if "list" not in spec:
        return {4: [], 6: []}
    result: dict[int, list[str] | None] = {}
    for family, proto, kind in FAMILIES:
        items = spec[f"v{family}"]
        if not items:  # nothing of this family listed: a negated list excludes nothing, a list matches nothing
            result[family] = [] if spec["negated"] else None
            continue
        name = f"{spec['list']}_v{family}"
        sets[name] = {"name": name, "type": kind, "elements": items}
        result[family] = [f"{proto} {key} {'!= ' if spec['negated'] else ''}@{name}"]
    return result


def _family_match(context: dict[str, Any], sets: dict[str, dict], family: int) -> str | None:
    """The match of a pattern's rule in one family's chain (None: no packet of that family is the pattern's)."""
    src, dst = _address("src", context["src"], sets)[family], _address("dst", context["dst"], sets)[family]
    return None if src is None or dst is None else _match(context, src + dst)


def _match(context: dict[str, Any], addresses: list[str]) -> str:
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
    return " ".join(parts)


def _log(context: dict[str, Any], sid: int, match: str, comment: str) -> str:
    counter = "counter " if context.get("log_counter") else ""
    return (f'{match}limit rate {firewall.LOG_RATE} burst {firewall.LOG_BURST} packets '
            f'{counter}log prefix "{firewall.log_prefix(sid, context["action"])}" comment "{comment}"')


def _verdict(context: dict[str, Any], comment: str) -> str:
    proto = context["transport"]
    if context["action"] == "drop":
        return f'counter drop comment "{comment}"'
    verdict = "reject with tcp reset" if proto == "tcp" else "reject with icmpx type port-unreachable"
    return f'meta l4proto {proto} counter {verdict} comment "{comment}"'


def _pattern_rules(plans: list[Plan], stamps: dict[str, Stamp], sets: dict[str, dict], hook: str, family: int,
                   verdict_chains: dict[str, dict]) -> list[str]:
    """A log-only pattern: a log rule. A drop or reject pattern: a rule that jumps to its own chain
    <hook>_<sid> (verdict_chains, by pattern id: one for both families), which logs and then drops or
    rejects. Keyed by id, not name: the fingerprints render every pattern with the same neutral SID."""
    rules = []
    for p in plans:
        sid = stamps[p.pattern.id].sid
        comment = firewall.comment(sid, p.context["pattern_id"], p.context["title"], limit=128)
        match = _family_match(p.context, sets, family)
        if match is None:
            continue
        if p.context["action"] == "log":
            rules.append(_log(p.context, sid, match + " ", comment))
        else:
            own = f"{hook}_{sid}"
            rules.append(f'{match} jump {own} comment "{comment}"')
            verdict_chains[p.pattern.id] = {"name": own, "hook": None,
                                   "rules": [_log(p.context, sid, "", comment), _verdict(p.context, comment)]}
    return rules


def _skip(hook: str, deploy: firewall.Deploy) -> list[str]:
    """The base chain's first rule: return what the hook leaves alone. Loopback always; with --wan-if,
    every packet that neither enters nor leaves by one of those interfaces."""
    if not deploy.wan_if:
        return {"input": ['iifname "lo" return'], "output": ['oifname "lo" return'], "forward": []}[hook]
    wan = "{ " + ", ".join(f'"{name}"' for name in deploy.wan_if) + " }"
    return {"input": [f"iifname != {wan} return"], "output": [f"oifname != {wan} return"],
            "forward": [f"iifname != {wan} oifname != {wan} return"]}[hook]


def _hook_chains(hook: str, plans: list[Plan], stamps: dict[str, Stamp], sets: dict[str, dict],
                 deploy: firewall.Deploy) -> list[dict]:
    """A hook's chains: the base chain sends each family and protocol with one verdict map lookup to
    <hook>_v4_tcp / <hook>_v6_udp ..., so a packet meets only its own family's rules (a pattern with an
    address condition has one rule per family). There the rules keep rule_order; each run of patterns that
    name destination ports (firewall.port_runs) moves to <hook>_v<family>_<proto>_p<n>, entered by one rule
    matching the set of their ports. Regular chains come first: a jump needs its chain declared."""
    dispatch: list[str] = []
    chains: list[dict] = []
    verdict_chains: dict[str, dict] = {}
    for family, _proto, _kind in FAMILIES:
        for transport in sorted({p.context["transport"] for p in plans if hook in p.context["hooks"]}):
            name = f"{hook}_v{family}_{transport}"
            rules: list[str] = []
            gated_chains = []
            runs = firewall.port_runs([p for p in plans if hook in p.context["hooks"]
                                       and p.context["transport"] == transport])
            for run in ([p for p in run if _family_match(p.context, sets, family) is not None] for run in runs):
                if not run:
                    continue  # no pattern of this run has a rule in this family (IPv4 broadcasts)
                run_rules = _pattern_rules(run, stamps, sets, hook, family, verdict_chains)
                if run[0].context["dst_ports"] and len(run_rules) > 1:
                    gate = f"{name}_p{len(gated_chains) + 1}"
                    rules.append(f"{transport} dport {_ports(firewall.merged_ports(run))} jump {gate}")
                    gated_chains.append({"name": gate, "hook": None, "rules": run_rules})
                else:
                    rules += run_rules
            if rules:
                dispatch.append(f"ipv{family} . {transport} : jump {name}")
                chains += [*gated_chains, {"name": name, "hook": None, "rules": rules}]
    base = {"name": hook, "hook": hook, "rules": _skip(hook, deploy) + (
        [f"meta nfproto . meta l4proto vmap {{ {', '.join(dispatch)} }}"] if dispatch else [])}
    return [*verdict_chains.values(), *chains, base]


def render(plans: list[Plan], stamps: dict[str, Stamp], env: Any, kb: KnowledgeBase,
           deploy: firewall.Deploy = firewall.DEFAULT_DEPLOY) -> list[Artifact]:
    ordered = firewall.rule_order(plans, stamps)
    home = [{"name": f"{firewall.HOME}{family}", "type": kind, "elements": list(kb.home.by_family(family))}
            for family, _proto, kind in FAMILIES]
    sets: dict[str, dict] = {}
    chains = [chain for hook in HOOKS for chain in _hook_chains(hook, ordered, stamps, sets, deploy)]
    text = env.get_template("nftables/rulegen.nft.j2").render(
        chains=chains, sets=home + [sets[k] for k in sorted(sets)],
        priority=PRIORITY[deploy.hook])
    return [Artifact(PATH, text, [p.pattern.id for p in sorted(plans, key=lambda p: stamps[p.pattern.id].sid)])]
