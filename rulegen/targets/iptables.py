"""iptables-restore files (IPv4 and IPv6) with rulegen's own chains and the jumps into them, and the IP
lists as ipsets (an `ipset restore` file) that the rules match with `-m set`."""

from __future__ import annotations

import hashlib
import ipaddress
from typing import Any

from rulegen.model import KnowledgeBase
from rulegen.targets import Artifact, Plan, Stamp, firewall

NAME = "iptables"
CHAINS = {"input": ("INPUT", "RULEGEN-INPUT"), "forward": ("FORWARD", "RULEGEN-FORWARD"),
          "output": ("OUTPUT", "RULEGEN-OUTPUT")}
HOOK_COMMENT = "rulegen hook"
FILES = {4: "iptables/rulegen.rules", 6: "iptables/rulegen6.rules"}
PLACEMENT = r"^-A \S+ "  # a rule's chain: RULEGEN-INPUT-UDP or -UDP-P2 as the port gates around it fall
IPSET_FILE = "iptables/rulegen.ipset"
IPSET_NAME_MAX = 31  # the kernel's limit for a set name
IPSET_SWAP_SUFFIX = "-new"  # the reload fills NAME-new, then swaps it with NAME
IPSET_MAXELEM = 65536  # ipset's default; larger lists raise it


plan = firewall.plan  # an IP list, negated or not, is an ipset: iptables expresses what both firewalls share


def home_set(family: int) -> str:
    return f"rg-{firewall.HOME}-{family}"


def ipset_name(list_id: str, family: int) -> str:
    """`rg-<list>-4` / `-6`, shortened with a hash of the list id so that NAME-new fits in 31 characters;
    a list called `home` gets the hashed form too, as rg-home-4 / -6 are the home network's."""
    room = IPSET_NAME_MAX - len(IPSET_SWAP_SUFFIX)
    name = f"rg-{list_id}-{family}"
    if len(name) <= room and list_id != firewall.HOME:
        return name
    digest = hashlib.sha256(list_id.encode()).hexdigest()[:6]
    return f"rg-{list_id[:room - len(digest) - 6]}-{digest}-{family}"


def _set_members(items: list[str]) -> list[str]:
    """Unique networks as hash:net takes them: it refuses a /0, which becomes its two halves."""
    members: list[str] = []
    for item in items:
        net = ipaddress.ip_network(item, strict=False)
        for part in (net.subnets(new_prefix=1) if net.prefixlen == 0 else [net]):
            text = str(part.network_address) if part.prefixlen == part.max_prefixlen else str(part)
            if text not in members:
                members.append(text)
    return members


def _ipset(name: str, family: int, items: list[str]) -> dict[str, Any]:
    return {"name": name, "temp": name + IPSET_SWAP_SUFFIX, "family": "inet" if family == 4 else "inet6",
            "maxelem": max(IPSET_MAXELEM, len(items) * 2), "members": _set_members(items)}


def _ipsets(plans: list[Plan], kb: KnowledgeBase) -> list[dict[str, Any]]:
    """The home sets rg-home-4 / rg-home-6 (always: every direction but `any` reads them), then one hash:net
    set per IP list and family that an expressed rule matches."""
    home = [_ipset(home_set(family), family, list(kb.home.by_family(family))) for family in (4, 6)]
    sets: dict[str, dict[str, Any]] = {}
    for p in plans:
        for side in ("src", "dst"):
            spec = p.context[side]
            if "list" not in spec:
                continue
            for family in (4, 6):
                if spec[f"v{family}"]:
                    ipset = _ipset(ipset_name(spec["list"], family), family, spec[f"v{family}"])
                    sets[ipset["name"]] = ipset
    return home + [sets[k] for k in sorted(sets)]


def _multiport_chunks(ranges: list[list[int]]) -> list[list[list[int]]]:
    """Split ports into groups multiport accepts: at most 15 ports, a range counting two."""
    chunks: list[list[list[int]]] = [[]]
    used = 0
    for low, high in ranges:
        cost = 1 if low == high else 2
        if used + cost > firewall.MULTIPORT_MAX:
            chunks.append([])
            used = 0
        chunks[-1].append([low, high])
        used += cost
    return [c for c in chunks if c]


def _port_text(ranges: list[list[int]]) -> str:
    return ",".join(str(lo) if lo == hi else f"{lo}:{hi}" for lo, hi in ranges)


def _port_args(side: str, ranges: list[list[int]], negate: bool = False) -> list[str]:
    """Alternative argument strings for one side's ports (one per multiport chunk)."""
    if not ranges:
        return [""]
    bang = "! " if negate else ""
    if len(ranges) == 1 and not negate:
        return [f"--{side}port {_port_text(ranges)}"]
    return [f"-m multiport {bang}--{side}ports {_port_text(chunk)}" for chunk in _multiport_chunks(ranges)]


def _address_args(side: str, spec: dict[str, Any], family: int) -> str | None:
    """Arguments for one address side, '' for none, or None when the family cannot carry the rule."""
    if spec.get("broadcast"):
        if family == 6:
            return None
        return f"-m addrtype --{side}-type BROADCAST"
    if firewall.HOME in spec:
        return f"-m set {'! ' if spec['negated'] else ''}--match-set {home_set(family)} {side}"
    if "list" in spec:
        if not spec[f"v{family}"]:
            return "" if spec["negated"] else None
        return f"-m set {'! ' if spec['negated'] else ''}--match-set {ipset_name(spec['list'], family)} {side}"
    return ""


def _matches(context: dict[str, Any], family: int) -> list[str]:
    """The match arguments of a pattern's rules in one family (one per multiport chunk; none: no rule)."""
    src = _address_args("src", context["src"], family)
    dst = _address_args("dst", context["dst"], family)
    if src is None or dst is None:
        return []
    matches = []
    for sport in _port_args("s", context["src_ports"]):
        dports = (_port_args("d", context["dst_ports_except"], negate=True) if context["dst_ports_except"]
                  else _port_args("d", context["dst_ports"]))
        for dport in dports:
            parts = [f"-p {context['transport']}", src, dst, sport, dport]
            if context["new_only"]:
                parts.append("-m conntrack --ctstate NEW")
            matches.append(" ".join(p for p in parts if p))
    return matches


def _log(context: dict[str, Any], sid: int, match: str, comment: str) -> str:
    return (f"{match} -m limit --limit {firewall.LOG_RATE} --limit-burst {firewall.LOG_BURST} "
            f'-m comment --comment "{comment}" -j LOG --log-prefix "{firewall.log_prefix(sid, context["action"])}"')


def _verdict(context: dict[str, Any], family: int, comment: str) -> str:
    if context["action"] == "drop":
        return f'-p {context["transport"]} -m comment --comment "{comment}" -j DROP'
    with_ = ("tcp-reset" if context["transport"] == "tcp"
             else ("icmp-port-unreachable" if family == 4 else "icmp6-port-unreachable"))
    return f'-p {context["transport"]} -m comment --comment "{comment}" -j REJECT --reject-with {with_}'


def _pattern_rules(plans: list[Plan], stamps: dict[str, Stamp], family: int, base: str,
                   verdict_chains: list[dict[str, Any]]) -> list[str]:
    """A log-only pattern: one LOG rule per match. A drop or reject pattern: one rule per match that jumps
    to its own chain <base>-<SID> (appended to verdict_chains), which logs and then drops or rejects."""
    rules = []
    for p in plans:
        sid = stamps[p.pattern.id].sid
        comment = firewall.comment(sid, p.context["pattern_id"], p.context["title"])
        matches = _matches(p.context, family)
        if p.context["action"] == "log":
            rules += [_log(p.context, sid, match, comment) for match in matches]
        elif matches:
            own = f"{base}-{sid}"
            rules += [f'{match} -m comment --comment "{comment}" -j {own}' for match in matches]
            verdict_chains.append({"name": own, "rules": [_log(p.context, sid, f"-p {p.context['transport']}",
                                                               comment), _verdict(p.context, family, comment)]})
    return rules


def _hook_chains(hook: str, plans: list[Plan], stamps: dict[str, Stamp], family: int) -> list[dict[str, Any]]:
    """A hook's chains, so that a packet is compared with as few rules as possible while every pattern keeps
    its own counters: RULEGEN-<HOOK> sends each protocol to RULEGEN-<HOOK>-TCP / -UDP (a UDP packet never
    meets a TCP rule). There the rules keep rule_order (most specific first); each run of patterns that
    name destination ports (firewall.port_runs) moves to RULEGEN-<HOOK>-<PROTO>-P<n>, entered by one
    multiport rule per 15 of their ports, when that is fewer rules than the run has."""
    base = CHAINS[hook][1]
    dispatch: list[str] = []
    chains: list[dict[str, Any]] = []
    verdict_chains: list[dict[str, Any]] = []
    for transport in sorted({p.context["transport"] for p in plans if hook in p.context["hooks"]}):
        name = f"{base}-{transport.upper()}"
        rules: list[str] = []
        gated_chains = []
        runs = firewall.port_runs([p for p in plans if hook in p.context["hooks"]
                                   and p.context["transport"] == transport])
        for run in runs:
            run_rules = _pattern_rules(run, stamps, family, base, verdict_chains)
            gate = f"{name}-P{len(gated_chains) + 1}"
            entries = ([f"-p {transport} {ports} -j {gate}"
                        for ports in _port_args("d", firewall.merged_ports(run))] if run[0].context["dst_ports"]
                       else [])
            if entries and len(run_rules) > len(entries):
                rules += entries
                gated_chains.append({"name": gate, "rules": run_rules})
            else:
                rules += run_rules
        if rules:
            dispatch.append(f"-p {transport} -j {name}")
            chains += [{"name": name, "rules": rules}, *gated_chains]
    return [{"name": base, "rules": dispatch}, *chains, *verdict_chains]


def _hooks(deploy: firewall.Deploy) -> tuple[list[dict[str, str]], list[dict[str, Any]]]:
    """The jumps from INPUT, FORWARD and OUTPUT into rulegen's chains (builtin, match, chain), and the chain
    RULEGEN-FORWARD-WAN they need when the hooks act on some interfaces only. Loopback is never matched:
    without --wan-if the INPUT and OUTPUT jumps skip lo (a forwarded packet never crosses it). A forwarded
    packet goes to rulegen's chain when it enters or leaves by a WAN interface, and once only: the -WAN chain
    goes (-g) to RULEGEN-FORWARD, so that its return ends the -WAN chain too."""
    if not deploy.wan_if:
        return [{"builtin": "INPUT", "match": "! -i lo ", "chain": "RULEGEN-INPUT"},
                {"builtin": "FORWARD", "match": "", "chain": "RULEGEN-FORWARD"},
                {"builtin": "OUTPUT", "match": "! -o lo ", "chain": "RULEGEN-OUTPUT"}], []
    wan = {"name": "RULEGEN-FORWARD-WAN", "rules": [f"-{way} {name} -g RULEGEN-FORWARD"
                                                     for name in deploy.wan_if for way in ("i", "o")]}
    return ([{"builtin": "INPUT", "match": f"-i {name} ", "chain": "RULEGEN-INPUT"} for name in deploy.wan_if]
            + [{"builtin": "FORWARD", "match": "", "chain": wan["name"]}]
            + [{"builtin": "OUTPUT", "match": f"-o {name} ", "chain": "RULEGEN-OUTPUT"} for name in deploy.wan_if],
            [wan])


def render(plans: list[Plan], stamps: dict[str, Stamp], env: Any, kb: KnowledgeBase,
           deploy: firewall.Deploy = firewall.DEFAULT_DEPLOY) -> list[Artifact]:
    ordered = firewall.rule_order(plans, stamps)
    ids = [p.pattern.id for p in sorted(plans, key=lambda p: stamps[p.pattern.id].sid)]
    by_id = {p.pattern.id: p for p in plans}
    hooks, wan_chains = _hooks(deploy)
    artifacts = []
    for family, path in FILES.items():
        chains = [chain for hook in CHAINS for chain in _hook_chains(hook, ordered, stamps, family)] + wan_chains
        text = env.get_template("iptables/rulegen.rules.j2").render(
            chains=chains, hooks=hooks, family=family, hook_comment=HOOK_COMMENT,
            hook_verb="-I" if deploy.hook == "insert" else "-A")
        artifacts.append(Artifact(path, text, ids, placement=PLACEMENT))
    sets = _ipsets(ordered, kb)
    in_sets = [pid for pid in ids if any(key in by_id[pid].context[side] for side in ("src", "dst")
                                             for key in ("list", firewall.HOME))]
    artifacts.append(Artifact(IPSET_FILE, env.get_template("iptables/rulegen.ipset.j2").render(sets=sets), in_sets))
    script = env.get_template("iptables/install.sh.j2").render(hook_comment=HOOK_COMMENT, sets=sets)
    artifacts.append(Artifact("iptables/install.sh", script, ids))
    return artifacts
