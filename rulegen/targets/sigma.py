"""Sigma rules in SigmaHQ's conventions, with the log sources and field names of DESIGN.md."""

from __future__ import annotations

import ipaddress
import re
import textwrap
import uuid
from typing import Any

from rulegen.attack import techniques
from rulegen.model import LOOPBACK, Detect, KnowledgeBase, Match, Net, Pattern, PortRange
from rulegen.severity import SEVERITY
from rulegen.targets import Artifact, Plan, Stamp, gap, sanitize_line

NAME = "sigma"
FOLDER = "sigma"
# Fixed namespace: a pattern id always maps to the same Sigma rule id, on every machine.
NAMESPACE = uuid.UUID("6f1c3f0e-5d2a-5b7e-9a41-72756c656765")
# Text YAML reads back unchanged without quotes (SigmaHQ writes such values plain).
_PLAIN = re.compile(r"[A-Za-z][A-Za-z0-9 _.,/()@+-]*[A-Za-z0-9_.)/]|[A-Za-z]")
_RESERVED = {"true", "false", "yes", "no", "on", "off", "null", "y", "n"}
TITLE_MAX = 100  # sigmahq_title_length allows 110
ZEEK_FIELDS = {"snmp": ("snmp", "community"), "ftp": ("ftp", "user")}
# The request headers Zeek's http.log records (base/protocols/http/main.zeek), by lowercase header name.
ZEEK_HTTP_HEADERS = {"user-agent": "user_agent", "host": "host", "referer": "referrer"}
# SigmaHQ's conventions, as its validators (pySigma-validators-sigmahq) check them:
# - titles in title case: every all-lowercase word capitalised except these short ones (sigmahq_title_case);
TITLE_SMALL_WORDS = {"a", "an", "and", "as", "at", "by", "for", "from", "in", "new", "of", "on", "or", "over", "the",
                     "through", "to", "via", "with", "without"}
TITLE_ACRONYMS = {"dhcp", "dns", "ftp", "http", "icmp", "ip", "nfs", "rpc", "smb", "snmp", "ssh", "tcp", "udp"}
# - a technique tag comes with the tags of all its tactics (sigmahq_tags_techniques_without_tactics, attack_tags);
# - false positives start with a capital and never say "None" (sigmahq_falsepositives_capital and _banned_word):
#   the loader asks the knowledge for that (knowledge.FP_BANNED); the text is the author's, written as it is.
# The address fields of a log source's records: (source, destination). A DNS query record's destination is the
# name server that was asked, not the far end of the lookup, so direction is read from its source alone.
ADDRESS_FIELDS = {"firewall": ("src_ip", "dst_ip"), "dns": ("src_ip", "dst_ip"), "zeek": ("id.orig_h", "id.resp_h")}
DIRECTED_DST = {"firewall": True, "dns": False, "zeek": True}


def rule_uuid(pattern_id: str) -> str:
    return str(uuid.uuid5(NAMESPACE, pattern_id))


def correlation_uuid(pattern_id: str) -> str:
    return str(uuid.uuid5(NAMESPACE, f"correlation:{pattern_id}"))


def yaml_scalar(value: Any) -> str:
    """A YAML scalar that cannot break out of its line: ints plain, text single-quoted on one line."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    text = sanitize_line(str(value))
    if _PLAIN.fullmatch(text) and ": " not in text and " #" not in text and text.lower() not in _RESERVED:
        return text
    return "'" + text.replace("'", "''") + "'"


def _short(text: str, width: int = TITLE_MAX) -> str:
    """One line, cut at a word to fit SigmaHQ's title length, without the final dot it refuses."""
    return textwrap.shorten(sanitize_line(text).rstrip(" ."), width=width, placeholder=" [cut]")


def title_case(text: str) -> str:
    """SigmaHQ title case: the first letter of each lowercase word capitalised (protocol acronyms in capitals);
    short words, words with `.`, `/` or `_` (names, paths, fields) and numbers left alone."""
    words = []
    for word in text.split(" "):
        if word.islower() and word not in TITLE_SMALL_WORDS and not any(c in word for c in "./_") \
                and not word[0].isdigit():
            core = word.strip("()[],;:")
            if core in TITLE_ACRONYMS:
                start = word.index(core)
                word = word[:start] + core.upper() + word[start + len(core):]
            else:  # the first letter that has a capital form (a few lowercase letters, such as ª, have none)
                start = next((i for i, ch in enumerate(word) if ch.upper() != ch), None)
                if start is not None:
                    word = word[:start] + word[start].upper() + word[start + 1:]
        words.append(word)
    return " ".join(words)


def attack_tags(tactic: str, technique: str) -> list[str]:
    """The pattern's tactic first, then the technique's other tactics (kill chain order), then the technique."""
    others = [t for t in techniques()[technique].tactics if t != tactic]
    return [f"attack.{t}" for t in (tactic, *others)] + [f"attack.{technique.lower()}"]


def literal_field(key: str, value: str, how: str = "equals") -> dict[str, Any]:
    """A field matching `value` exactly as written (`how`: equals, contains, startswith). Sigma reads `*` and `?`
    as wildcards; escaped (`\\*`) they trip SigmaHQ's escaped_wildcard check, so a value holding one (or a
    backslash) is written as an anchored regular expression instead (`|re`, which every backend converts)."""
    if not re.search(r"[*?\\]", value):
        return _field(key + {"equals": "", "contains": "|contains", "startswith": "|startswith"}[how], [value])
    body = re.escape(value)
    return _field(f"{key}|re", [{"equals": f"^{body}$", "contains": body, "startswith": f"^{body}"}[how]])


def _field(key: str, values: list[Any]) -> dict[str, Any]:
    return {"key": key, "value_list": [yaml_scalar(v) for v in values]}


def _port_selections(side: str, ranges: tuple[PortRange, ...]) -> list[dict[str, Any]]:
    selections = []
    singles = [r.low for r in ranges if r.is_single]
    if singles:
        selections.append({"name": f"selection_{side}_port", "fields": [_field(f"{side}_port", singles)]})
    for index, r in enumerate(r for r in ranges if not r.is_single):
        selections.append({"name": f"selection_{side}_range_{index + 1}",
                           "fields": [_field(f"{side}_port|gte", [r.low]), _field(f"{side}_port|lte", [r.high])]})
    return selections


def _overlaps(networks: tuple[str, ...] | list[str], others: tuple[str, ...]) -> bool:
    nets = [ipaddress.ip_network(n, strict=False) for n in networks]
    return any(a.version == b.version and a.overlaps(b) for a in nets for b in map(ipaddress.ip_network, others))


def local_ranges(kb: KnowledgeBase) -> list[str]:
    """What `external` excludes: the knowledge's home, and loopback, which is never outside even where a site's home
    leaves it out."""
    home = list(kb.home.addresses)
    return home + [n for n in LOOPBACK if not _overlaps(home, (n,))]


def _net_fields(net: Net, side: str, field: str, kb: KnowledgeBase, src: Net) -> tuple[list[dict], list[dict], bool]:
    """Selection fields and filters that an address side adds, and whether that side may still hold a loopback
    address; `src` is the flow's source side.

    Records carry no home/external flag: home reads as the knowledge's `home` ranges (kb.home) and external as any
    other address, loopback excepted (a filter). The destination of a flow from outside stays open: a perimeter
    firewall logs an inbound probe against the public address it arrived on."""
    if net.kind == "external":
        return [], [{"name": f"filter_main_{side}_local", "fields": [_field(f"{field}|cidr", local_ranges(kb))]}], False
    if net.kind == "home" and (side == "src" or src.kind == "home"):
        home = list(kb.home.addresses)
        return [_field(f"{field}|cidr", home)], [], _overlaps(home, LOOPBACK)
    if net.kind == "broadcast":
        return [_field(f"{field}|endswith", [".255"])], [], True  # 127.x.y.255 is a loopback address too
    if net.kind == "list":
        addresses = list(kb.ip_lists[net.list_id].addresses)
        if not addresses:
            return [], [], True
        if net.negated:
            name = f"filter_main_{net.list_id.replace('-', '_')}"
            return [], [{"name": name, "fields": [_field(f"{field}|cidr", addresses)]}], True
        return [_field(f"{field}|cidr", addresses)], [], _overlaps(addresses, LOOPBACK)
    return [], [], True


def _address_detection(pattern: Pattern, kb: KnowledgeBase, source: str) -> tuple[list[dict], list[dict]]:
    """The address selection fields and filters of a pattern in a log source's records. Loopback traffic (both ends
    in LOOPBACK) is never matched: where neither side already excludes it, `filter_main_loopback` does."""
    fields: list[dict] = []
    filters: list[dict] = []
    may_be_loopback = []
    src_field, dst_field = ADDRESS_FIELDS[source]
    sides = [(pattern.src_net, "src", src_field)]
    if DIRECTED_DST[source]:
        sides.append((pattern.dst_net, "dst", dst_field))
    for net, side, field in sides:
        side_fields, side_filters, loopback = _net_fields(net, side, field, kb, pattern.src_net)
        fields += side_fields
        filters += side_filters
        may_be_loopback.append(loopback)
    if all(may_be_loopback):
        filters.append({"name": "filter_main_loopback",
                        "fields": [_field(f"{f}|cidr", list(LOOPBACK)) for f in (src_field, dst_field)]})
    return fields, filters


def _condition(selections: list[str], filters: list[dict]) -> str:
    return " and ".join(selections) + "".join(f" and not {f['name']}" for f in filters)


def _firewall_detection(pattern: Pattern, kb: KnowledgeBase) -> tuple[list[dict], str]:
    fields, filters = _address_detection(pattern, kb, "firewall")
    selections = [{"name": "selection", "fields": [_field("protocol", [pattern.transport]), *fields]}]
    condition = ["selection"]
    for side, ranges in (("src", pattern.src_ports), ("dst", pattern.dst_ports)):
        port_sel = _port_selections(side, ranges)
        selections += port_sel
        if len(port_sel) == 1:
            condition.append(port_sel[0]["name"])
        elif port_sel:
            condition.append(f"1 of selection_{side}_*")
    if pattern.dst_ports_except:
        singles = [r.low for r in pattern.dst_ports_except if r.is_single]
        filters.append({"name": "filter_main_dst_port", "fields": [_field("dst_port", singles)]})
    return selections + filters, _condition(condition, filters)


def _payload_detection(pattern: Pattern, kb: KnowledgeBase, source: str,
                       facts: list[dict]) -> tuple[list[dict], str]:
    """A DNS or Zeek rule: the application facts, and the pattern's direction on the record's address fields."""
    fields, filters = _address_detection(pattern, kb, source)
    return [{"name": "selection", "fields": [*facts, *fields]}, *filters], _condition(["selection"], filters)


def _logsource_and_detection(pattern: Pattern, kb: KnowledgeBase) -> tuple[str, dict, list[dict], str] | str:
    """(file prefix, logsource, selections, condition), or the reason there is no Sigma form."""
    match = pattern.match
    if match is None:
        if any(not r.is_single for r in pattern.dst_ports_except):
            return "a port range as an exception has no Sigma filter form here"
        selections, condition = _firewall_detection(pattern, kb)
        return "net_firewall", {"category": "firewall"}, selections, condition
    if match.kind == "dns":
        field = _field("query", [match.dns_query]) if match.dns_query else _field("record_type", [match.dns_qtype])
        selections, condition = _payload_detection(pattern, kb, "dns", [field])
        return "net_dns", {"category": "dns"}, selections, condition
    if match.kind == "dhcp":  # dhcp.log records a lease exchange, not a flow: no id.orig_h / id.resp_h
        selections = [{"name": "selection", "fields": [_field("msg_types", [(match.dhcp_message_type or "").upper()])]}]
        condition = "selection"
        if pattern.src_net.kind == "list" and pattern.src_net.negated:
            addresses = list(kb.ip_lists[pattern.src_net.list_id].addresses)
            if addresses:
                selections.append({"name": "filter_main_known_servers",
                                   "fields": [_field("server_addr|cidr", addresses)]})
                condition += " and not filter_main_known_servers"
        return "zeek_dhcp", {"product": "zeek", "service": "dhcp"}, selections, condition
    if match.kind in ZEEK_FIELDS:
        service, key = ZEEK_FIELDS[match.kind]
        value = {"snmp": match.snmp_community, "ftp": match.ftp_user}[match.kind]
        selections, condition = _payload_detection(pattern, kb, "zeek", [literal_field(key, value)])
        return f"zeek_{service}", {"product": "zeek", "service": service}, selections, condition
    if match.kind == "smtp":
        selections, condition = _payload_detection(pattern, kb, "zeek", _zeek_smtp(match))
        return "zeek_smtp", {"product": "zeek", "service": "smtp"}, selections, condition
    if match.kind == "http":
        facts = _zeek_http(match)
        if isinstance(facts, str):
            return facts
        selections, condition = _payload_detection(pattern, kb, "zeek", facts)
        return "zeek_http", {"product": "zeek", "service": "http"}, selections, condition
    if match.kind == "ntp":
        return NTP_GAP
    return (f"a {match.kind} match needs payload bytes, which firewall, DNS and Zeek logs "
            "(the log sources the Sigma output uses) do not record")


def _zeek_smtp(match: Match) -> list[dict[str, Any]]:
    """Zeek's smtp.log fields for an smtp match. `last_reply` is the last reply of the transaction as Zeek logs
    it: a relay refusal stays there when the client gives up after it, but a QUIT's `221` or a RSET's `250`
    overwrites it. `rcptto` holds the addresses Zeek extracts from RCPT TO: a `%` or `!` path survives, a source
    route `<@host:user@dom>` loses its route."""
    if match.smtp_reply == "relay-denied":
        return [_field("last_reply|startswith", ["55"]), _field("last_reply|contains", ["relay"])]
    return [_field("rcptto|contains", ["%", "!"])]


# Zeek's base/protocols/ntp/main.zeek writes ntp.log only for `msg$mode <= 5`: mode 6 control and mode 7 private
# requests (monlist, readvar) never reach a log; standard modes are in ntp.log, which no pipeline of rulegen maps.
NTP_GAP = ("an NTP mode is in no log source the Sigma output uses: Zeek's ntp.log skips mode 6 and 7 messages "
           "(it logs only modes 0-5), and rulegen's pipelines do not map ntp.log")


def _zeek_http(match: Match) -> list[dict[str, Any]] | str:
    """Zeek's http.log fields of an http match (one record per request): method, uri (the request target as sent,
    query string included) and the request headers it logs; any other header is a gap."""
    facts = []
    if match.http_method:
        facts.append(_field("method", [match.http_method]))
    if match.http_uri:
        facts.append(literal_field("uri", match.http_uri, match.http_uri_match))
    if match.http_header:
        field = ZEEK_HTTP_HEADERS.get(match.http_header.lower())
        if field is None:
            return (f"Zeek's http.log records the request headers User-Agent, Host and Referer (user_agent, host, "
                    f"referrer), not {match.http_header}")
        value = match.http_header_value
        facts.append(literal_field(field, value, "contains") if value else _field(field, ["*"]))
    return facts


def _slug(pattern_id: str) -> str:
    return re.sub(r"[^a-z0-9]+", "_", pattern_id.lower())


def plan(pattern: Pattern, kb: KnowledgeBase) -> Plan:
    result = _logsource_and_detection(pattern, kb)
    if isinstance(result, str):
        return gap(pattern, result)
    prefix, logsource, selections, condition = result
    entry = kb.entry(pattern.entry_id)
    tags = []
    if pattern.attack:
        tags += attack_tags(pattern.attack.tactic, pattern.attack.technique)
    tags += [f"cve.{c.removeprefix('CVE-').lower()}" for c in pattern.cves]
    slug = _slug(pattern.id)
    context: dict[str, Any] = {
        "pattern_id": pattern.id,
        "file": f"{FOLDER}/{prefix}_{slug}.yml",
        "title": yaml_scalar(title_case(_short(pattern.title))),
        "description": yaml_scalar(f"{pattern.title}. {entry.description_en}"),
        "references": [yaml_scalar(u) for u in entry.references],
        "tags": [yaml_scalar(t) for t in tags],
        "logsource": [{"key": k, "value": yaml_scalar(v)} for k, v in logsource.items()],
        "selections": selections,
        "condition": condition,
        "falsepositives": [yaml_scalar(sanitize_line(pattern.false_positives))],
        "level": SEVERITY[pattern.severity].sigma_level,
        "name": None,
        "correlation": None,
    }
    if pattern.detect is Detect.SWEEP:
        rule_name = f"rulegen_{slug}"
        context["name"] = rule_name
        context["correlation"] = {
            "file": f"{FOLDER}/correlations/correlation_{slug}.yml",
            "title": yaml_scalar(title_case(
                f"{_short(pattern.title, 70)} (many {pattern.sweep.distinct} from one source)")),
            "description": yaml_scalar(
                f"One source reached at least {pattern.sweep.count} distinct values of {pattern.sweep.distinct} "
                f"within {pattern.sweep.seconds} seconds. {entry.description_en}"),
            "rule": rule_name,
            "timespan": f"{pattern.sweep.seconds}s",
            "field": pattern.sweep.distinct,
            "count": pattern.sweep.count,
        }
    return Plan(pattern, context=context)


def render(plans: list[Plan], stamps: dict[str, Stamp], env: Any, kb: KnowledgeBase) -> list[Artifact]:
    rule_template = env.get_template("sigma/rule.yml.j2")
    correlation_template = env.get_template("sigma/correlation.yml.j2")
    artifacts = []
    for p in plans:
        stamp = stamps[p.pattern.id]
        dates = {"date": stamp.created, "modified": stamp.updated if stamp.updated != stamp.created else None}
        author = yaml_scalar(kb.pack_of(p.pattern).author)  # the pack's (or site's) author signs its rules
        rule = {**p.context, "id": rule_uuid(p.pattern.id), "author": author, **dates}
        artifacts.append(Artifact(p.context["file"], rule_template.render(rule=rule), [p.pattern.id],
                                  per_pattern=True))
        correlation = p.context["correlation"]
        if correlation:
            corr = {**correlation, "id": correlation_uuid(p.pattern.id), "tags": p.context["tags"],
                    "references": p.context["references"], "falsepositives": p.context["falsepositives"],
                    "level": p.context["level"], "author": author, **dates}
            artifacts.append(Artifact(correlation["file"], correlation_template.render(rule=corr),
                                      [p.pattern.id], per_pattern=True))
    return sorted(artifacts, key=lambda a: a.path)
