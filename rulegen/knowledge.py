"""Load the YAML knowledge base strictly into the typed model, with `file:line` on every error."""

from __future__ import annotations

import dataclasses
import difflib
import ipaddress
import re
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import yaml

from rulegen.attack import tactics, techniques
from rulegen.errors import KnowledgeError, Problem
from rulegen.model import (
    CATEGORIES,
    NTP_REQUESTS,
    TRANSPORTS,
    Attack,
    ContentMatch,
    Correction,
    Detect,
    Direction,
    Entry,
    Home,
    IpList,
    KnowledgeBase,
    Location,
    Match,
    Net,
    Override,
    Pack,
    Pattern,
    PortClass,
    PortRange,
    Response,
    Samples,
    Severity,
    Sweep,
    site_pack,
)
from rulegen.targets import sanitize_line
from rulegen.targets.suricata import CLASSTYPES, SID_RANGE
from rulegen.yamlguard import excessive_nesting, explain

MAX_FILE_BYTES = 5 * 1024 * 1024
SLUG = re.compile(r"^[a-z0-9][a-z0-9-]{0,62}$")
TECHNIQUE = re.compile(r"^T\d{4}(\.\d{3})?$")
CVE = re.compile(r"^CVE-\d{4}-\d{4,}$")
URL = re.compile(r"^https?://[^\s\"'<>]+$")
ATTACK_URL = re.compile(r"^https?://attack\.mitre\.org(?:/versions/[^/]+)?(?:/(?P<kind>[a-z-]+))?"
                        r"(?:/(?P<id>[A-Za-z]+\d+))?(?:/(?P<sub>\d{3}))?", re.IGNORECASE)
# A backslash and a letter or x.. that a double-quoted YAML string would have made a control character.
LITERAL_ESCAPE = re.compile(r"\\(?:[abefnrtv0]|x[0-9a-fA-F]{2})")
FILE_KEYS = ("home", "port_classes", "ip_lists", "entries", "overrides")
DNS_QTYPES = ("AXFR", "IXFR", "ANY")
MATCH_KINDS = ("content", "dns", "snmp", "ftp", "tftp", "dhcp", "login", "rpc", "netbios", "shell", "smtp", "http",
               "ntp")
# The keys of each match kind but content (a list of CONTENT_KEYS items): (allowed, required).
MATCH_KEYS = {
    "dns": (("query", "qtype"), ()), "snmp": (("community",), ("community",)),
    "ftp": (("user",), ("user",)), "tftp": (("opcode", "filename"), ("opcode",)),
    "dhcp": (("message_type",), ("message_type",)), "login": (("users",), ("users",)),
    "rpc": (("program",), ("program",)), "netbios": (("query",), ("query",)),
    "shell": (("response",), ("response",)), "smtp": (("reply", "rcpt"), ()),
    "http": (("method", "uri", "uri_match", "header"), ()), "ntp": (("mode", "request"), ("mode",)),
}
CONTENT_KEYS = ("text", "hex", "offset", "depth", "nocase", "distance", "within")
# The keys of the smaller mappings: (allowed, required). The JSON Schema (rulegen/schema.py) is written from
# these tables and the ones above and below, so a key added here is a key editors complete.
OBJECT_KEYS = {
    "home": (("title", "addresses"), ("addresses",)),
    "port class": (("id", "ports", "title", "description"), ("id", "ports", "title", "description")),
    "ip list": (("id", "title", "addresses"), ("id", "title", "addresses")),
    "override": (("pattern", "severity", "response", "disabled", "reason"), ("pattern", "reason")),
    "correction": (("seed", "fixed", "note"), ("seed", "fixed", "note")),
    "sweep": (("distinct", "count", "seconds"), ("distinct", "count", "seconds")),
    "attack": (("tactic", "technique"), ("tactic", "technique")),
    "pack": (("id", "title", "author", "msg_prefix", "sids"), ("id", "title", "author", "sids")),  # pack.yaml
}
TABLES = ("destination", "source")
FLOWS = ("to_server", "to_client")
SWEEP_DISTINCT = ("dst_port", "dst_ip")
TFTP_OPCODES = ("read", "write")
DHCP_MESSAGE_TYPES = ("discover", "offer", "request", "decline", "ack", "nak", "release", "inform")
NETBIOS_QUERIES = ("nbstat",)
# Transport each match kind can use: the knowledge may not ask for what the protocol cannot carry.
MATCH_TRANSPORTS = {
    "content": TRANSPORTS, "dns": TRANSPORTS, "snmp": ("udp",), "ftp": ("tcp",), "tftp": ("udp",),
    "dhcp": ("udp",), "login": ("tcp",), "rpc": TRANSPORTS, "netbios": ("udp",), "shell": ("tcp",),
    "smtp": ("tcp",), "http": ("tcp",), "ntp": ("udp",),
}
# What an smtp match can name: the server's answer (travels to the client) or the client's request.
SMTP_REPLIES = ("relay-denied",)
SMTP_RCPTS = ("relay-route",)
HTTP_URI_MATCHES = ("contains", "startswith", "equals")
TARGET_NAMES = ("suricata", "sigma", "iptables", "nftables")
# A pack is a folder with a pack.yaml; a pack tree (rulegen's knowledge/) is a folder of packs beside a
# common.yaml that every build of one of its packs reads (home, port classes).
PACK_FILE = "pack.yaml"
COMMON_FILE = "common.yaml"
SIDS = re.compile(r"^\s*(\d+)\s*-\s*(\d+)\s*$")


# --------------------------------------------------------------------------- YAML with lines

class _Map(dict):
    line: int
    key_lines: dict[str, int]


class _Seq(list):
    line: int
    item_lines: list[int]


class _LineLoader(getattr(yaml, "CSafeLoader", yaml.SafeLoader)):
    """A safe loader (libyaml's parser where PyYAML has it) that remembers the line of every mapping, key
    and list item, and refuses aliases."""

    def construct_object(self, node, deep=False):  # noqa: ANN001
        # The parser hands an alias over as the very node it names: a node seen twice is an alias.
        if node in self.constructed_objects or node in self.recursive_objects:
            raise yaml.MarkedYAMLError(None, None, "YAML aliases are not allowed in knowledge files",
                                       node.start_mark)
        return super().construct_object(node, deep)

    def construct_mapping(self, node, deep=False):  # noqa: ANN001
        result = _Map()
        result.line = node.start_mark.line + 1
        result.key_lines = {}
        for key_node, value_node in node.value:
            key = self.construct_object(key_node, deep=True)
            if not isinstance(key, str):
                raise yaml.MarkedYAMLError(None, None, f"mapping keys must be strings, not {key!r}",
                                           key_node.start_mark)
            if key in result:
                raise yaml.MarkedYAMLError(None, None, f"duplicate key {key!r}", key_node.start_mark)
            result[key] = self.construct_object(value_node, deep=True)
            result.key_lines[key] = key_node.start_mark.line + 1
        return result

    def construct_sequence(self, node, deep=False):  # noqa: ANN001
        result = _Seq(self.construct_object(child, deep=True) for child in node.value)
        result.line = node.start_mark.line + 1
        result.item_lines = [child.start_mark.line + 1 for child in node.value]
        return result


_LineLoader.add_constructor("tag:yaml.org,2002:map", _LineLoader.construct_mapping)
_LineLoader.add_constructor("tag:yaml.org,2002:seq", _LineLoader.construct_sequence)


class _Invalid(Exception):
    """One problem at a line; collected by the loader, never shown as a traceback."""

    def __init__(self, line: int, message: str):
        super().__init__(message)
        self.line = line
        self.message = message


def default_knowledge_dir() -> Path:
    """The knowledge shipped with the package (wheel) or the checkout's `knowledge/` (editable)."""
    here = Path(__file__).resolve().parent
    for candidate in (here / "_data" / "knowledge", here.parent / "knowledge"):
        if candidate.is_dir():
            return candidate
    return here.parent / "knowledge"


def is_pack_tree(folder: Path) -> bool:
    """A folder of packs with their common.yaml, like rulegen's own knowledge/."""
    return (folder / COMMON_FILE).is_file() and bool(pack_folders(folder))


def is_pack(folder: Path) -> bool:
    return (folder / PACK_FILE).is_file()


def pack_folders(tree: Path) -> list[Path]:
    """The packs of a folder: its subfolders with a pack.yaml, in name order."""
    return [child for child in _subfolders(tree) if is_pack(child)]


def _subfolders(folder: Path) -> list[Path]:
    try:
        return sorted(child for child in folder.iterdir() if child.is_dir())
    except OSError:
        return []


def folder_of(root: Path) -> Path:
    """A knowledge root's folder: itself, or the folder of a single file."""
    return root if root.is_dir() else root.parent


def knowledge_files(root: Path) -> list[Path]:
    """The knowledge files under a root: every *.yaml (a pack.yaml among them declares its folder's pack)."""
    if not root.exists():
        raise KnowledgeError([Problem(str(root), 0, None, "knowledge folder does not exist")])
    if root.is_file():
        return [root]
    files: list[Path] = []
    seen: set[Path] = set()

    def walk(folder: Path, depth: int) -> None:
        real = folder.resolve()
        if real in seen or depth > 16:
            raise KnowledgeError([Problem(str(folder), 0, None, "symlink loop in the knowledge folder")])
        seen.add(real)
        for child in sorted(folder.iterdir()):
            if child.is_dir():
                walk(child, depth + 1)
            elif child.suffix in (".yaml", ".yml"):
                files.append(child)

    try:
        walk(root, 0)
    except OSError as exc:
        raise KnowledgeError([Problem(str(root), 0, None, f"cannot read knowledge folder: {exc.strerror}")]) from None
    if not files:
        raise KnowledgeError([Problem(str(root), 0, None, "no knowledge files (*.yaml) found")])
    return files


def _read_yaml(path: Path) -> Any:
    try:
        size = path.stat().st_size
        if size > MAX_FILE_BYTES:
            raise _Invalid(1, f"file is {size} bytes; knowledge files are limited to {MAX_FILE_BYTES}")
        raw = path.read_bytes()
    except OSError as exc:
        raise _Invalid(0, f"cannot read file: {exc.strerror}") from None
    if b"\x00" in raw:
        raise _Invalid(1, "binary file (contains NUL bytes), not YAML")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise _Invalid(line, "not valid UTF-8") from None
    deep = excessive_nesting(text)
    if deep is not None:
        raise _Invalid(deep, "YAML nesting too deep")
    try:
        return yaml.load(text, Loader=_LineLoader)  # noqa: S506 - _LineLoader is a SafeLoader
    except yaml.MarkedYAMLError as exc:
        line, _, message = explain(exc)
        raise _Invalid(line, message) from None
    except yaml.YAMLError as exc:
        raise _Invalid(1, f"YAML error: {exc}") from None
    except RecursionError:
        raise _Invalid(1, "YAML nesting too deep") from None


# --------------------------------------------------------------------------- field checks

class _Fields:
    """Typed access to one YAML mapping that reports unknown, missing and mistyped keys by line."""

    def __init__(self, data: Any, line: int, what: str, allowed: Iterable[str], required: Iterable[str]):
        if not isinstance(data, dict):
            raise _Invalid(line, f"{what} must be a mapping, not {_type_name(data)}")
        self.data = data
        self.line = getattr(data, "line", line)
        self.key_lines = getattr(data, "key_lines", {})
        allowed = tuple(allowed)
        for key in data:
            if key not in allowed:
                raise _Invalid(self.line_of(key), f"unknown key {key!r} in {what}{did_you_mean(key, allowed)} "
                                                  f"(allowed: {', '.join(allowed)})")
        for key in required:
            if key not in data:
                raise _Invalid(self.line, f"{what} is missing the required key {key!r}")

    def line_of(self, key: str) -> int:
        return self.key_lines.get(key, self.line)

    def has(self, key: str) -> bool:
        return key in self.data

    def get(self, key: str, kind: type | tuple[type, ...], default: Any = None) -> Any:
        if key not in self.data:
            return default
        value = self.data[key]
        if isinstance(value, bool) and kind is not bool and bool not in _as_tuple(kind):
            raise _Invalid(self.line_of(key), f"{key!r} must be {_kind_name(kind)}, not a boolean")
        if not isinstance(value, kind):
            raise _Invalid(self.line_of(key), f"{key!r} must be {_kind_name(kind)}, not {_type_name(value)}")
        return value

    def text(self, key: str, max_len: int = 4000, min_len: int = 1) -> str:
        value = self.get(key, str)
        if value is None:
            raise _Invalid(self.line, f"missing {key!r}")
        if not value.strip():
            raise _Invalid(self.line_of(key), f"{key!r} must not be empty")
        if len(sanitize_line(value)) < min_len:  # what the outputs will carry: printable text, one line
            raise _Invalid(self.line_of(key), f"{key!r} must be at least {min_len} printable characters")
        if len(value) > max_len:
            raise _Invalid(self.line_of(key), f"{key!r} is longer than {max_len} characters")
        return value.strip()

    def slug(self, key: str) -> str:
        value = self.text(key)
        if not SLUG.match(value):
            raise _Invalid(self.line_of(key), f"{key!r} must be a slug (a-z, 0-9, '-'), not {value!r}")
        return value

    def choice(self, key: str, choices: Iterable[str], default: str | None = None) -> str:
        choices = tuple(choices)
        value = self.get(key, str, default)
        if value not in choices:
            raise _Invalid(self.line_of(key), f"{key!r} must be one of {', '.join(choices)}, not {value!r}"
                                              f"{did_you_mean(value, choices)}")
        return value

    def items(self, key: str, required: bool = False) -> list[tuple[Any, int]]:
        value = self.get(key, list, None)
        if value is None:
            if required:
                raise _Invalid(self.line, f"missing {key!r}")
            return []
        lines = getattr(value, "item_lines", [self.line_of(key)] * len(value))
        return list(zip(value, lines, strict=True))

    def int_in(self, key: str, low: int, high: int, default: int | None = None) -> int | None:
        value = self.get(key, int, default)
        if value is not None and not low <= value <= high:
            raise _Invalid(self.line_of(key), f"{key!r} must be between {low} and {high}, not {value}")
        return value


def did_you_mean(value: Any, choices: Iterable[str]) -> str:
    """`: did you mean 'x'?` for the choice closest to a misspelt value (case aside), else nothing."""
    if not isinstance(value, str):
        return ""
    by_case = {c.casefold(): c for c in choices}
    close = difflib.get_close_matches(value.casefold(), list(by_case), n=1, cutoff=0.6)
    return f": did you mean {by_case[close[0]]!r}?" if close else ""


def _as_tuple(kind: type | tuple[type, ...]) -> tuple[type, ...]:
    return kind if isinstance(kind, tuple) else (kind,)


def _kind_name(kind: type | tuple[type, ...]) -> str:
    names = {str: "a string", int: "an integer", list: "a list", dict: "a mapping", bool: "true or false"}
    return " or ".join(names.get(k, k.__name__) for k in _as_tuple(kind))


def _type_name(value: Any) -> str:
    if value is None:
        return "empty"
    return {str: "a string", int: "an integer", float: "a number", bool: "a boolean", list: "a list",
            _Seq: "a list", dict: "a mapping", _Map: "a mapping"}.get(type(value), type(value).__name__)


def parse_port_spec(value: Any, line: int) -> PortRange:
    if isinstance(value, bool):
        raise _Invalid(line, f"port must be an integer or 'low-high' range, not {value!r}")
    if isinstance(value, int):
        low = high = value
    elif isinstance(value, str) and re.fullmatch(r"\s*-?\d+\s*-\s*-?\d+\s*", value):
        low_text, high_text = re.fullmatch(r"\s*(-?\d+)\s*-\s*(-?\d+)\s*", value).groups()
        low, high = int(low_text), int(high_text)
        if low >= high:
            raise _Invalid(line, f"port range {value!r} is empty or inverted (low must be below high)")
    elif isinstance(value, str) and value.strip().isdigit():
        low = high = int(value)
    else:
        raise _Invalid(line, f"port must be an integer or 'low-high' range, not {value!r}")
    for port in (low, high):
        if not 0 <= port <= 65535:
            raise _Invalid(line, f"port {port} is outside 0-65535")
    return PortRange(low, high)


def _ports(fields: _Fields, key: str, required: bool = False) -> tuple[PortRange, ...]:
    items = fields.items(key, required)
    if fields.has(key) and not items:
        raise _Invalid(fields.line_of(key), f"{key!r} must not be an empty list (leave it out for any port)")
    ranges = [parse_port_spec(value, line) for value, line in items]
    return tuple(sorted(set(ranges)))


def _strings(fields: _Fields, key: str, check: Callable[[str], bool] | None = None,
             what: str = "value") -> tuple[str, ...]:
    out = []
    for value, line in fields.items(key):
        if not isinstance(value, str) or not value.strip():
            raise _Invalid(line, f"each item of {key!r} must be a non-empty string, not {value!r}")
        if check and not check(value):
            raise _Invalid(line, f"{value!r} in {key!r} is not a valid {what}")
        out.append(value.strip())
    return tuple(out)


def is_shipped(file: str) -> bool:
    """Whether a knowledge file is one of rulegen's own (under default_knowledge_dir()), not a site's."""
    return Path(file).resolve().is_relative_to(default_knowledge_dir().resolve())


def _bilingual(fields: _Fields, key: str, file: str) -> tuple[str, str]:
    """English and Chinese; the Chinese only required of the shipped knowledge (a site writes for itself)."""
    zh_required = is_shipped(file)
    inner = _Fields(fields.data.get(key), fields.line_of(key), key, ("en", "zh"), ("en", "zh")[:1 + zh_required])
    # an English sentence at least: the Sigma description is built from it (SigmaHQ refuses brief ones)
    en = inner.text("en", max_len=8000, min_len=20)
    return en, inner.text("zh", max_len=8000) if zh_required or inner.has("zh") else ""


def _attack_link(value: str) -> str | None:
    """Why an ATT&CK page cannot be a reference, and what to write instead; None for any other URL. (The Sigma
    and Suricata ATT&CK tags come from a pattern's `attack`; a link among the references fails SigmaHQ's tag
    checks far from the knowledge.)"""
    m = ATTACK_URL.match(value)
    if not m:
        return None
    kind, ident, sub = (m.group("kind") or "").lower(), (m.group("id") or "").upper(), m.group("sub")
    if kind == "techniques" and ident.startswith("T"):
        technique = f"{ident}.{sub}" if sub else ident
        known = techniques().get(technique)
        tactic = known.tactics[0] if known else "TACTIC"
        hint = (f"put the technique under the pattern's `attack: {{tactic: {tactic}, technique: {technique}}}`"
                + (f" (or another of its tactics: {', '.join(known.tactics[1:])})" if known and known.tactics[1:]
                   else "" if known else f" ({technique} is not in the shipped ATT&CK Enterprise data)"))
    else:
        hint = "name the ATT&CK technique under the pattern's `attack: {tactic, technique}`"
    return (f"{value} is a MITRE ATT&CK page, not a reference: {hint}, and leave the URL out of 'references' "
            "(the Sigma tags and Suricata metadata are written from `attack`)")


# --------------------------------------------------------------------------- objects

def _net(value: str, line: int, deferred: list) -> Net:
    if value in ("home", "external", "any", "broadcast"):
        return Net(value)
    m = re.fullmatch(r"(not-)?list:([a-z0-9][a-z0-9-]*)", value)
    if not m:
        raise _Invalid(line, f"network must be home, external, any, broadcast, list:ID or not-list:ID, not {value!r}"
                             f"{did_you_mean(value, ('home', 'external', 'any', 'broadcast'))}")
    deferred.append((m.group(2), line))
    return Net("list", m.group(2), negated=bool(m.group(1)))


DEFAULT_NETS = {
    Direction.INBOUND: ("external", "home"),
    Direction.OUTBOUND: ("home", "external"),
    Direction.INTERNAL: ("home", "home"),
    Direction.BROADCAST: ("any", "broadcast"),
    Direction.ANY: ("any", "any"),
}


def _bytes(f: _Fields, what: str) -> bytes:
    """The bytes of a `text` or `hex` item (a content item or a sample)."""
    if f.has("text") == f.has("hex"):
        raise _Invalid(f.line, f"a {what} needs exactly one of 'text' or 'hex'")
    if f.has("text"):
        data = f.get("text", str).encode("utf-8")
    else:
        hex_text = f.get("hex", str)
        if not re.fullmatch(r"\s*([0-9a-fA-F]{2}\s*)+", hex_text):
            raise _Invalid(f.line_of("hex"), f"'hex' must be pairs of hex digits, not {hex_text!r}")
        data = bytes.fromhex(hex_text)
    if not data:
        raise _Invalid(f.line, f"{what} must not be empty")
    return data


def _content(item: Any, line: int, first: bool) -> ContentMatch:
    f = _Fields(item, line, "content item", CONTENT_KEYS, ())
    data = _bytes(f, "content item")
    absolute = [k for k in ("offset", "depth") if f.has(k)]
    relative = [k for k in ("distance", "within") if f.has(k)]
    if absolute and relative:
        raise _Invalid(f.line_of(relative[0]), f"a content item is either absolute ({'/'.join(absolute)}) or "
                                               f"relative to the previous item ({'/'.join(relative)}), not both")
    if relative and first:
        raise _Invalid(f.line_of(relative[0]), f"'{relative[0]}' counts from the previous item's match: the first "
                                               "content item has none (use offset/depth)")
    depth = f.int_in("depth", 1, 65535)
    if depth is not None and depth < len(data):
        raise _Invalid(f.line_of("depth"), f"depth {depth} is shorter than the content ({len(data)} bytes)")
    distance = f.int_in("distance", 0, 65535)
    within = f.int_in("within", 1, 65535)
    # Suricata counts `within` from `distance` bytes past the previous match (measured on 7.0.10), so the window
    # must hold the item itself, as the engine requires ("within argument less than the content length")
    if within is not None and within < len(data):
        raise _Invalid(f.line_of("within"), f"within {within} is shorter than the content ({len(data)} bytes): it "
                                            f"could never match (use at least {len(data)})")
    return ContentMatch(data, f.int_in("offset", 0, 65535), depth, bool(f.get("nocase", bool, False)),
                        distance, within)


def _match(value: Any, line: int, transport: str) -> Match:
    if not isinstance(value, dict) or len(value) != 1:
        raise _Invalid(getattr(value, "line", line), f"'match' must hold exactly one of: {', '.join(MATCH_KINDS)}")
    kind = next(iter(value))
    if kind not in MATCH_KINDS:
        raise _Invalid(value.key_lines.get(kind, line), f"unknown match kind {kind!r}{did_you_mean(kind, MATCH_KINDS)} "
                                                        f"(allowed: {', '.join(MATCH_KINDS)})")
    body_line = value.key_lines.get(kind, line)
    if transport not in MATCH_TRANSPORTS[kind]:
        raise _Invalid(body_line, f"a {kind} match cannot use transport {transport} "
                                  f"(it needs {' or '.join(MATCH_TRANSPORTS[kind])})")
    body = value[kind]
    if kind == "content":
        if not isinstance(body, list) or not body:
            raise _Invalid(body_line, "'content' must be a non-empty list")
        lines = getattr(body, "item_lines", [body_line] * len(body))
        return Match("content", contents=tuple(_content(i, ln, n == 0)
                                               for n, (i, ln) in enumerate(zip(body, lines, strict=True))))
    allowed, required = MATCH_KEYS[kind]
    f = _Fields(body, body_line, f"{kind} match", allowed, required)
    if kind == "dns":
        if f.has("query") == f.has("qtype"):
            raise _Invalid(f.line, "a dns match needs exactly one of 'query' or 'qtype'")
        if f.has("qtype"):
            qtype = f.choice("qtype", DNS_QTYPES)
            if qtype in ("AXFR", "IXFR") and transport != "tcp":
                raise _Invalid(f.line_of("qtype"), f"{qtype} zone transfers run over tcp, not {transport}")
            return Match("dns", dns_qtype=qtype)
        query = f.text("query", max_len=253).lower().rstrip(".")
        if not re.fullmatch(r"[a-z0-9_-]+(\.[a-z0-9_-]+)*", query):
            raise _Invalid(f.line_of("query"), f"{query!r} is not a DNS name")
        return Match("dns", dns_query=query)
    if kind == "snmp":
        return Match("snmp", snmp_community=f.text("community", max_len=255))
    if kind == "ftp":
        return Match("ftp", ftp_user=_token(f, "user"))
    if kind == "tftp":
        filename = f.text("filename", max_len=255) if f.has("filename") else None
        return Match("tftp", tftp_opcode=f.choice("opcode", TFTP_OPCODES), tftp_filename=filename)
    if kind == "dhcp":
        return Match("dhcp", dhcp_message_type=f.choice("message_type", DHCP_MESSAGE_TYPES))
    if kind == "login":
        users = [(u, ln) for u, ln in f.items("users", required=True)]
        if not users:
            raise _Invalid(f.line_of("users"), "'users' must not be empty")
        for user, ln in users:
            if not isinstance(user, str) or not re.fullmatch(r"[A-Za-z0-9_.-]{1,32}", user):
                raise _Invalid(ln, f"login user {user!r} must be 1-32 letters, digits, '.', '_' or '-'")
        return Match("login", login_users=tuple(u for u, _ in users))
    if kind == "rpc":
        return Match("rpc", rpc_program=f.int_in("program", 0, 2**32 - 1))
    if kind == "netbios":
        return Match("netbios", netbios_query=f.choice("query", NETBIOS_QUERIES))
    if kind == "smtp":
        return _smtp(f)
    if kind == "http":
        return _http(f)
    if kind == "ntp":
        return _ntp(f)
    return Match("shell", shell_response=f.text("response", max_len=200))


def _smtp(f: _Fields) -> Match:
    """`smtp: {reply: relay-denied}` (the server refuses to relay a RCPT TO) or `smtp: {rcpt: relay-route}`
    (a RCPT TO whose address asks the server to pass the mail on: a source route, a % or ! path)."""
    if f.has("reply") == f.has("rcpt"):
        raise _Invalid(f.line, "an smtp match needs exactly one of 'reply' or 'rcpt'")
    if f.has("reply"):
        return Match("smtp", smtp_reply=f.choice("reply", SMTP_REPLIES))
    return Match("smtp", smtp_rcpt=f.choice("rcpt", SMTP_RCPTS))


def _http(f: _Fields) -> Match:
    """`http: {method, uri, uri_match, header: {name, value}}`: at least one of method, uri, header."""
    if not any(f.has(k) for k in ("method", "uri", "header")):
        raise _Invalid(f.line, "an http match needs at least one of 'method', 'uri' or 'header'")
    method = None
    if f.has("method"):
        method = f.text("method", max_len=20)
        if not re.fullmatch(r"[A-Z]+", method):
            raise _Invalid(f.line_of("method"), f"'method' must be an uppercase HTTP method such as GET or POST, "
                                                f"not {method!r}")
    uri = None
    if f.has("uri"):
        uri = f.get("uri", str)
        if not re.fullmatch(r"[\x21-\x7e]{1,1024}", uri):
            raise _Invalid(f.line_of("uri"), f"'uri' must be 1-1024 printable ASCII characters without spaces, "
                                             f"not {uri!r}")
    if f.has("uri_match") and uri is None:
        raise _Invalid(f.line_of("uri_match"), "'uri_match' says how to compare 'uri', which is missing")
    uri_match = f.choice("uri_match", HTTP_URI_MATCHES, "contains")
    name = value = None
    if f.has("header"):
        h = _Fields(f.data["header"], f.line_of("header"), "http header", ("name", "value"), ("name",))
        name = h.text("name", max_len=64)
        if not re.fullmatch(r"[A-Za-z0-9!#$%&'*+.^_`|~-]+", name):
            raise _Invalid(h.line_of("name"), f"header name {name!r} is not an HTTP token (letters, digits, '-'...)")
        if h.has("value"):
            value = h.get("value", str)
            if not re.fullmatch(r"[\x20-\x7e]{1,255}", value) or not value.strip():
                raise _Invalid(h.line_of("value"), f"header value must be 1-255 printable ASCII characters, "
                                                   f"not {value!r}")
    return Match("http", http_method=method, http_uri=uri, http_uri_match=uri_match, http_header=name,
                 http_header_value=value)


def _ntp(f: _Fields) -> Match:
    """`ntp: {mode: 0-7, request: NAME}`; a named request belongs to one mode (NTP_REQUESTS)."""
    mode = f.int_in("mode", 0, 7)
    request = None
    if f.has("request"):
        request = f.choice("request", tuple(NTP_REQUESTS))
        needed = NTP_REQUESTS[request][0]
        if mode != needed:
            raise _Invalid(f.line_of("request"), f"{request} is a mode {needed} request, not mode {mode}")
    return Match("ntp", ntp_mode=mode, ntp_request=request)


def _samples(value: Any, line: int, transport: str) -> Samples:
    """`samples: {fires: [...], quiet: [...]}`, each item a `text` or `hex` message."""
    f = _Fields(value, line, "samples", ("fires", "quiet"), ())
    if not f.data:
        raise _Invalid(f.line, "'samples' needs 'fires' and/or 'quiet'")
    limit = 65507 if transport == "udp" else 65535  # one datagram's payload; one message of a session
    lists = {}
    for key in ("fires", "quiet"):
        items = f.items(key)
        if f.has(key) and not items:
            raise _Invalid(f.line_of(key), f"'{key}' must not be an empty list (leave it out)")
        if len(items) > 20:
            raise _Invalid(f.line_of(key), f"'{key}' holds {len(items)} samples; at most 20")
        messages = []
        for item, ln in items:
            data = _bytes(_Fields(item, ln, "sample", ("text", "hex"), ()), "sample")
            if len(data) > limit:
                raise _Invalid(ln, f"a sample is {len(data)} bytes; one {transport} message holds at most {limit}")
            messages.append(data)
        lists[key] = tuple(messages)
    return Samples(**lists)


def _token(f: _Fields, key: str) -> str:
    value = f.text(key, max_len=64)
    if not re.fullmatch(r"[\x21-\x7e]+", value):
        raise _Invalid(f.line_of(key), f"{key!r} must be printable ASCII without spaces, not {value!r}")
    return value


PATTERN_KEYS = (
    "id", "title", "category", "direction", "transport", "src_ports", "dst_ports", "dst_ports_except",
    "src_net", "dst_net", "detect", "flow", "match", "sweep", "severity", "classtype", "attack", "cves",
    "response", "false_positives", "not_expressed", "samples",
)
PATTERN_REQUIRED = ("id", "title", "category", "direction", "transport", "detect", "severity", "classtype",
                    "response", "false_positives")


def _pattern(data: Any, line: int, entry_id: str, entry_protocols: tuple[str, ...], file: str,
             list_refs: list) -> Pattern:
    f = _Fields(data, line, "pattern", PATTERN_KEYS, PATTERN_REQUIRED)
    pid = f.slug("id")
    try:
        return _pattern_fields(f, pid, entry_id, entry_protocols, file, list_refs)
    except _Invalid as exc:
        raise _Invalid(exc.line, f"pattern {pid}: {exc.message}") from None


def _pattern_fields(f: _Fields, pid: str, entry_id: str, entry_protocols: tuple[str, ...], file: str,
                    list_refs: list) -> Pattern:
    transport = f.choice("transport", TRANSPORTS)
    if transport not in entry_protocols:
        raise _Invalid(f.line_of("transport"),
                       f"transport {transport} is not among the entry's protocols ({', '.join(entry_protocols)})")
    direction = Direction(f.choice("direction", [d.value for d in Direction]))
    detect = Detect(f.choice("detect", [d.value for d in Detect]))
    default_src, default_dst = DEFAULT_NETS[direction]
    src_net = _net(f.get("src_net", str, default_src), f.line_of("src_net"), list_refs)
    dst_net = _net(f.get("dst_net", str, default_dst), f.line_of("dst_net"), list_refs)
    if src_net.kind == "broadcast":
        raise _Invalid(f.line_of("src_net"), "a broadcast address cannot be a source")
    if dst_net.kind == "broadcast" and transport != "udp":
        raise _Invalid(f.line_of("transport"), "a broadcast destination takes udp: tcp connects to one host")
    dst_ports = _ports(f, "dst_ports")
    dst_except = _ports(f, "dst_ports_except")
    if dst_ports and dst_except:
        raise _Invalid(f.line_of("dst_ports_except"), "give either 'dst_ports' or 'dst_ports_except', not both")
    match = None
    if f.has("match"):
        match = _match(f.data["match"], f.line_of("match"), transport)
    if (detect is Detect.PAYLOAD) != (match is not None):
        raise _Invalid(f.line_of("detect"), "'match' is required when detect is payload, and only then")
    sweep = None
    if f.has("sweep"):
        s = _Fields(f.data["sweep"], f.line_of("sweep"), "sweep", *OBJECT_KEYS["sweep"])
        sweep = Sweep(s.choice("distinct", SWEEP_DISTINCT), s.int_in("count", 2, 100000),
                      s.int_in("seconds", 1, 86400))
    if (detect is Detect.SWEEP) != (sweep is not None):
        raise _Invalid(f.line_of("detect"), "'sweep' is required when detect is sweep, and only then")
    flow = f.choice("flow", FLOWS, "to_server")
    if match is not None and match.kind == "shell":
        flow = "to_client"
    if match is not None and match.kind == "smtp":
        needed = "to_client" if match.smtp_reply else "to_server"
        if f.has("flow") and flow != needed:
            what = "reply travels from the server to the client" if match.smtp_reply else \
                "RCPT TO travels from the client to the server"
            raise _Invalid(f.line_of("flow"), f"an smtp {what}: flow is {needed}")
        flow = needed
    if flow == "to_client" and dst_net.kind == "broadcast":
        raise _Invalid(f.line_of("flow"), "an answer (flow: to_client) cannot come from a broadcast address")
    category = f.choice("category", CATEGORIES)
    classtype = f.choice("classtype", sorted(CLASSTYPES))
    attack = None
    if f.has("attack"):
        a = _Fields(f.data["attack"], f.line_of("attack"), "attack", *OBJECT_KEYS["attack"])
        technique = a.text("technique")
        if not TECHNIQUE.match(technique):
            raise _Invalid(a.line_of("technique"), f"technique must look like T1046 or T1595.001, not {technique!r}")
        if technique not in techniques():
            raise _Invalid(a.line_of("technique"), f"technique {technique} is not in ATT&CK Enterprise "
                                                   "(v18.1; revoked and deprecated ones are refused)")
        tactic = a.choice("tactic", list(tactics()))
        if tactic not in techniques()[technique].tactics:
            raise _Invalid(a.line_of("tactic"), f"technique {technique} ({techniques()[technique].name}) belongs to "
                                                f"{', '.join(techniques()[technique].tactics)}, not {tactic}")
        attack = Attack(tactic, technique)
    not_expressed = ()
    if f.has("not_expressed"):
        ne = _Fields(f.data["not_expressed"], f.line_of("not_expressed"), "not_expressed",
                     (*TARGET_NAMES, "firewall"), ())
        # `firewall` is shorthand for both packet filters (iptables and nftables)
        reasons = {t: ne.text(t, max_len=500) for t in (*TARGET_NAMES, "firewall") if ne.has(t)}
        for packet_filter in ("iptables", "nftables"):
            if "firewall" in reasons:
                reasons.setdefault(packet_filter, reasons["firewall"])
        not_expressed = tuple((t, reasons[t]) for t in TARGET_NAMES if t in reasons)
    samples = Samples()
    if f.has("samples"):
        if detect is not Detect.PAYLOAD:
            raise _Invalid(f.line_of("samples"), "samples are application messages: only a payload pattern has them")
        samples = _samples(f.data["samples"], f.line_of("samples"), transport)
    severity = Severity(f.choice("severity", [s.value for s in Severity]))
    response = Response(f.choice("response", [r.value for r in Response]))
    return Pattern(
        id=pid, entry_id=entry_id, title=f.text("title", max_len=100), category=category,
        direction=direction, transport=transport, src_ports=_ports(f, "src_ports"), dst_ports=dst_ports,
        dst_ports_except=dst_except, src_net=src_net, dst_net=dst_net, detect=detect, flow=flow, match=match,
        sweep=sweep, severity=severity, classtype=classtype, attack=attack,
        cves=_strings(f, "cves", lambda v: bool(CVE.match(v)), "CVE id"), response=response,
        false_positives=_false_positives(f), not_expressed=not_expressed,
        location=Location(file, f.line), samples=samples,
    )


# Words SigmaHQ's validators refuse in a false positive (sigmahq_falsepositives_banned_word); the Sigma rules
# carry the author's text as written, so the knowledge is asked for a text they accept.
FP_BANNED = ("none", "pentest", "penetration")


def false_positives_problem(text: str) -> str | None:
    """Why SigmaHQ's validators would refuse this false positive text, or None."""
    shown = sanitize_line(text)
    if shown[:1].upper() != shown[:1]:
        return ("'false_positives' must start with a capital letter (SigmaHQ's convention for the Sigma rules), "
                f"not {shown.split()[0]!r}")
    banned = next((w for w in shown.split(" ") if w.lower().strip() in FP_BANNED), None)
    if banned:
        return (f"'false_positives' uses the word {banned!r}, which SigmaHQ's validators refuse: name what could "
                "raise the rule, or start with 'Unlikely'")
    return None


def _false_positives(f: _Fields) -> str:
    text = f.text("false_positives", min_len=2)
    problem = false_positives_problem(text)
    if problem:
        raise _Invalid(f.line_of("false_positives"), problem)
    return text


def _port_class_of(ports: tuple[PortRange, ...], classes: list[PortClass]) -> str:
    first = ports[0].low
    for cls in classes:
        if cls.ports.low <= first <= cls.ports.high:
            return cls.id
    return "unclassified"


class _Collector:
    """Gathers problems across every file so one run reports all of them."""

    def __init__(self) -> None:
        self.problems: list[Problem] = []

    def run(self, file: str, entry: str | None, line: int, fn: Callable[[], Any]) -> Any:
        try:
            return fn()
        except _Invalid as exc:
            self.problems.append(Problem(file, exc.line or line, entry, exc.message))
            return None


class _Packs:
    """The pack of every knowledge file: the nearest folder with a pack.yaml between the file and its root,
    else the root's own folder (a site folder, a pack named after it). The files directly in a pack tree
    (common.yaml) belong to no pack."""

    def __init__(self, collector: _Collector):
        self.collector = collector
        self.by_folder: dict[Path, Pack] = {}

    def of(self, path: Path, root: Path) -> Pack | None:
        top = folder_of(Path(root)).resolve()
        folder = path.parent.resolve()
        while not is_pack(folder) and folder != top and folder.parent != folder:
            folder = folder.parent
        if is_pack(folder):
            return self._pack(folder)
        if is_pack_tree(top):
            return None
        if top not in self.by_folder:
            self.by_folder[top] = site_pack(str(top), top.name or str(top))
        return self.by_folder[top]

    def _pack(self, folder: Path) -> Pack:
        """The folder's pack; a broken pack.yaml is reported, and its files load under the folder's name."""
        if folder not in self.by_folder:
            file = str(folder / PACK_FILE)
            self.by_folder[folder] = self.collector.run(file, None, 1, lambda: read_pack(folder)) \
                or site_pack(str(folder), folder.name)
        return self.by_folder[folder]

    def check(self, used: set[str], entries: bool) -> tuple[Pack, ...]:
        """The packs read, each id once; two packs of one id, or SID ranges that overlap, are errors naming
        their pack.yaml (the shipped packs count too, so a site's range stays clear of every one of them).
        When no entry was found, every empty pack says so."""
        packs = [p for p in self.by_folder.values() if p.location or p.id in used]
        problems = self.collector.problems
        seen: dict[str, Pack] = {}
        for pack in packs:
            first = seen.setdefault(pack.id, pack)
            if first is not pack:
                problems.append(Problem(_pack_file(pack), _pack_line(pack), None,
                                        f"pack id {pack.id!r} is already used by {first.where}; give this folder a "
                                        f"pack.yaml with an id of its own"))
        declared = [p for p in shipped_packs() if p.id not in seen] + [p for p in packs if p.location]
        for index, pack in enumerate(declared):  # the later pack (a site's, after the shipped) is the one to change
            for first in declared[:index]:
                if pack.id != first.id and pack.sids[0] <= first.sids[1] and first.sids[0] <= pack.sids[1]:
                    problems.append(Problem(_pack_file(pack), _pack_line(pack), None,
                                            f"pack {pack.id}: SID range {_range(pack.sids)} overlaps pack {first.id}'s "
                                            f"{_range(first.sids)} ({first.where}); choose a range of its own"))
        if not entries:
            for pack in packs:
                if pack.location:
                    problems.append(Problem(_pack_file(pack), _pack_line(pack), None,
                                            f"pack {pack.id} has no entries yet: nothing to build from it alone "
                                            "(-k @shipped builds every shipped pack)"))
        return tuple(seen.values())


def _pack_file(pack: Pack) -> str:
    return pack.location.file if pack.location else pack.folder


def _pack_line(pack: Pack) -> int:
    return pack.location.line if pack.location else 0


def _range(sids: tuple[int, int]) -> str:
    return f"{sids[0]}-{sids[1]}"


def read_pack(folder: Path) -> Pack:
    """The pack.yaml of a folder: `pack: {id, title, author, msg_prefix, sids}`."""
    file = str(folder / PACK_FILE)
    top = _Fields(_read_yaml(folder / PACK_FILE), 1, "pack file", ("pack",), ("pack",))
    f = _Fields(top.data["pack"], top.line_of("pack"), "pack", *OBJECT_KEYS["pack"])
    prefix = f.text("msg_prefix", max_len=32) if f.has("msg_prefix") else "RULEGEN"
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]*", prefix):
        raise _Invalid(f.line_of("msg_prefix"), f"'msg_prefix' must be one word (letters, digits, '_.-'), "
                                                f"not {prefix!r}")
    sids = SIDS.match(f.get("sids", str) or "")
    low, high = (int(sids.group(1)), int(sids.group(2))) if sids else (0, 0)
    if not (sids and SID_RANGE[0] <= low < high <= SID_RANGE[1]):
        raise _Invalid(f.line_of("sids"), f"'sids' must be a range \"low-high\" inside the local SID range "
                                          f"{_range(SID_RANGE)}, not {f.data['sids']!r}")
    return Pack(f.slug("id"), f.text("title", max_len=200), f.text("author", max_len=200), prefix, (low, high),
                str(folder), Location(file, f.line))


def shipped_packs() -> list[Pack]:
    """The packs that come with rulegen (read for their SID ranges)."""
    packs = []
    for folder in pack_folders(default_knowledge_dir()):
        try:
            packs.append(read_pack(folder))
        except _Invalid:
            continue  # a broken shipped pack.yaml is reported when that pack is read
    return packs


def load_knowledge(roots: Iterable[Path]) -> KnowledgeBase:
    """Load every knowledge file under the given roots; raise KnowledgeError with all problems found."""
    collector = _Collector()
    packs = _Packs(collector)
    pack_of_file: dict[str, Pack | None] = {}
    raw_classes: list[tuple[str, Any, int]] = []
    raw_lists: list[tuple[str, Any, int]] = []
    raw_entries: list[tuple[str, Any, int]] = []
    raw_overrides: list[tuple[str, Any, int]] = []
    raw_homes: list[tuple[int, str, Any, int]] = []  # (root index, file, value, line)
    files: list[tuple[int, Path]] = []
    for index, root in enumerate(roots):
        for file in knowledge_files(Path(root)):
            pack_of_file[str(file)] = packs.of(file, Path(root))
            if file.name != PACK_FILE:
                files.append((index, file))
    for root_index, path in files:
        name = str(path)
        data = collector.run(name, None, 1, lambda p=path: _read_yaml(p))
        if data is None:
            if not any(pr.file == name for pr in collector.problems):
                collector.problems.append(Problem(name, 1, None, "empty knowledge file"))
            continue

        def top(d=data) -> _Fields:
            return _Fields(d, 1, "knowledge file", FILE_KEYS, ())

        fields = collector.run(name, None, 1, top)
        if fields is None:
            continue
        loose = [key for key in ("entries", "overrides") if fields.has(key)] if pack_of_file[name] is None else []
        if loose:
            collector.problems.append(Problem(name, fields.line_of(loose[0]), None,
                                              f"{loose[0]} belong in a pack folder (one with a {PACK_FILE}), not "
                                              f"beside the packs in {COMMON_FILE}'s folder"))
            continue
        if fields.has("home"):
            raw_homes.append((root_index, name, fields.data["home"], fields.line_of("home")))
        for key, bucket in (("port_classes", raw_classes), ("ip_lists", raw_lists), ("entries", raw_entries),
                            ("overrides", raw_overrides)):
            items = collector.run(name, None, 1, lambda k=key, f=fields: f.items(k))
            for value, line in items or []:
                bucket.append((name, value, line))

    classes = [c for c in (collector.run(f, None, ln, lambda v=v, ln=ln, f=f: _port_class(v, ln, f))
                           for f, v, ln in raw_classes) if c]
    ip_lists: dict[str, IpList] = {}
    for file, value, line in raw_lists:
        ip_list = collector.run(file, None, line, lambda v=value, ln=line, f=file: _ip_list(v, ln, f))
        if ip_list:
            _unique(collector, ip_lists, ip_list.id, ip_list, file, ip_list.location.line, "ip list")
    entries: dict[str, Entry] = {}
    pattern_ids: dict[str, Pattern] = {}
    list_refs: list[tuple[str, str, int, str]] = []
    for file, value, line in raw_entries:
        entry_id = value.get("id") if isinstance(value, dict) and isinstance(value.get("id"), str) else None
        refs: list = []
        pack = pack_of_file[file].id
        entry = collector.run(file, entry_id, line,
                              lambda v=value, ln=line, f=file, r=refs, k=pack: _entry(v, ln, f, classes, r,
                                                                                      collector, k))
        list_refs.extend((file, entry_id, ln, ref) for ref, ln in refs)
        if entry is None:
            continue
        _unique(collector, entries, entry.id, entry, file, entry.location.line, "entry")
        for pattern in entry.patterns:
            _unique(collector, pattern_ids, pattern.id, pattern, file, pattern.location.line, "pattern", entry.id)
    titles: dict[str, Pattern] = {}
    for pattern in pattern_ids.values():  # msg texts and Sigma titles must tell patterns apart
        key = " ".join(pattern.title.casefold().split())
        first = titles.setdefault(key, pattern)
        if first is not pattern:
            collector.problems.append(Problem(
                pattern.location.file, pattern.location.line, pattern.entry_id,
                f"pattern {pattern.id}: title {pattern.title!r} is already used by pattern {first.id} "
                f"({first.location.file}:{first.location.line})"))
    for file, entry_id, line, ref in list_refs:
        if ref not in ip_lists:
            collector.problems.append(Problem(file, line, entry_id, f"unknown ip list {ref!r}"))
    for pattern in pattern_ids.values():
        for net in (pattern.src_net, pattern.dst_net):
            if net.kind == "list" and net.list_id in ip_lists and not ip_lists[net.list_id].addresses \
                    and not net.negated:
                collector.problems.append(Problem(pattern.location.file, pattern.location.line, pattern.entry_id,
                                                  f"pattern {pattern.id}: ip list {net.list_id!r} is empty"))
    _unique_classes(collector, classes)
    pack_list = packs.check({e.pack for e in entries.values()}, bool(raw_entries))
    home = _home(raw_homes, collector)
    overrides: dict[str, Override] = {}
    for file, value, line in raw_overrides:
        override = collector.run(file, None, line, lambda v=value, ln=line, f=file: _override(v, ln, f))
        if override is None:
            continue
        first = overrides.setdefault(override.pattern_id, override)
        if first is not override:
            collector.problems.append(Problem(
                file, override.location.line, None,
                f"pattern {override.pattern_id} is already overridden at {first.location.file}:{first.location.line}; "
                "merge the two overrides into one"))
        elif override.pattern_id not in pattern_ids:
            collector.problems.append(Problem(file, override.location.line, None,
                                              f"override of unknown pattern {override.pattern_id!r}"))
    if collector.problems:
        raise KnowledgeError(collector.problems)
    entries, disabled = _apply_overrides(entries, overrides)
    ordered = tuple(sorted(entries.values(), key=lambda e: (e.table != "destination", e.ports[0], e.id)))
    warnings = tuple(w for file, value, _ in raw_entries for w in _escape_warnings(file, value))
    return KnowledgeBase(tuple(sorted(classes, key=lambda c: c.ports)), dict(sorted(ip_lists.items())), ordered,
                         disabled, home, pack_list, warnings)


def _escape_warnings(file: str, value: Any, owner: str | None = None) -> list[Problem]:
    """A warning for every `text` (content item, sample, any text item) holding a backslash sequence that looks
    like an escape: in single quotes or a plain scalar YAML keeps `\\r` as two characters, so the rule would
    look for a backslash and an `r` and its proof would send the same, proving nothing about a real CR."""
    found: list[Problem] = []
    if isinstance(value, dict):
        owner = value["id"] if isinstance(value.get("id"), str) else owner
        text = value.get("text")
        if isinstance(text, str) and LITERAL_ESCAPE.search(text):
            sequences = ", ".join(dict.fromkeys(LITERAL_ESCAPE.findall(text)))
            found.append(Problem(file, getattr(value, "key_lines", {}).get("text", getattr(value, "line", 0)), owner,
                                 f"text {text!r} holds a literal backslash sequence ({sequences}), not a control "
                                 'character: YAML turns escapes into characters only inside double quotes; write '
                                 '"..." with double quotes (for example "QUIT\\r\\n"), or give the bytes as hex'))
        for item in value.values():
            found += _escape_warnings(file, item, owner)
    elif isinstance(value, list):
        for item in value:
            found += _escape_warnings(file, item, owner)
    return found


def _home(raw: list[tuple[int, str, Any, int]], collector: _Collector) -> Home:
    """The home network set: the one of the last knowledge folder that defines it (a site's folder replaces
    the shipped set), else the built-in default. Two in one folder are an error naming both."""
    home = Home()
    first_in_root: dict[int, tuple[str, int]] = {}
    for root_index, file, value, line in raw:
        if root_index in first_in_root:
            where = first_in_root[root_index]
            collector.problems.append(Problem(file, line, None, f"home is already defined at {where[0]}:{where[1]}; "
                                                                "a knowledge folder defines it once"))
            continue
        first_in_root[root_index] = (file, line)
        parsed = collector.run(file, None, line, lambda v=value, ln=line, f=file: _home_set(v, ln, f))
        if parsed is not None:
            home = parsed
    return home


def _home_set(value: Any, line: int, file: str) -> Home:
    f = _Fields(value, line, "home", *OBJECT_KEYS["home"])
    if f.has("title"):
        f.text("title", max_len=200)
    addresses = _ip_list({"id": "home", "title": "home", "addresses": f.data["addresses"]}, f.line, file).addresses
    if not addresses:
        raise _Invalid(f.line_of("addresses"), "home needs at least one address or CIDR block")
    for address in addresses:
        if ipaddress.ip_network(address).prefixlen == 0:
            raise _Invalid(f.line_of("addresses"), f"home cannot be every address ({address}): nothing would "
                                                   "be outside")
    return Home(addresses, Location(file, f.line))


def _override(value: Any, line: int, file: str) -> Override:
    f = _Fields(value, line, "override", *OBJECT_KEYS["override"])
    severity = f.choice("severity", [s.value for s in Severity]) if f.has("severity") else None
    response = f.choice("response", [r.value for r in Response]) if f.has("response") else None
    disabled = f.get("disabled", bool, False)
    if disabled and (severity or response):
        raise _Invalid(f.line_of("disabled"), "a disabled pattern takes no severity or response")
    if not (disabled or severity or response):
        raise _Invalid(f.line, "an override needs 'severity', 'response' or 'disabled: true'")
    return Override(f.slug("pattern"), Severity(severity) if severity else None,
                    Response(response) if response else None, disabled, f.text("reason", max_len=500),
                    Location(file, f.line))


def _apply_overrides(entries: dict[str, Entry], overrides: dict[str, Override]) \
        -> tuple[dict[str, Entry], tuple[Pattern, ...]]:
    """Entries with the overrides applied, and the patterns switched off (kept apart so the lock keeps
    their SIDs: switching a pattern back on brings its SID back)."""
    disabled: list[Pattern] = []
    result: dict[str, Entry] = {}
    for entry_id, entry in entries.items():
        kept = []
        for pattern in entry.patterns:
            override = overrides.get(pattern.id)
            if override is None:
                kept.append(pattern)
            elif override.disabled:
                disabled.append(dataclasses.replace(pattern, override=override))
            else:
                kept.append(dataclasses.replace(pattern, severity=override.severity or pattern.severity,
                                                response=override.response or pattern.response,
                                                override=override))
        result[entry_id] = dataclasses.replace(entry, patterns=tuple(kept))
    return result, tuple(disabled)


def _unique(collector: _Collector, seen: dict, key: str, value: Any, file: str, line: int, what: str,
            entry: str | None = None) -> None:
    if key in seen:
        first = seen[key].location
        collector.problems.append(Problem(file, line, entry or key,
                                          f"duplicate {what} id {key!r} (first defined at {first.file}:{first.line})"))
    else:
        seen[key] = value


def _unique_classes(collector: _Collector, classes: list[PortClass]) -> None:
    seen: dict[str, PortClass] = {}
    for cls in classes:
        _unique(collector, seen, cls.id, cls, cls.location.file, cls.location.line, "port class")


def _port_class(value: Any, line: int, file: str) -> PortClass:
    f = _Fields(value, line, "port class", *OBJECT_KEYS["port class"])
    en, zh = _bilingual(f, "description", file)
    ports = parse_port_spec(f.data["ports"], f.line_of("ports"))
    return PortClass(f.slug("id"), ports, f.text("title", max_len=200), en, zh, Location(file, f.line))


def _ip_list(value: Any, line: int, file: str) -> IpList:
    f = _Fields(value, line, "ip list", *OBJECT_KEYS["ip list"])
    addresses = []
    for item, ln in f.items("addresses", required=True):
        try:
            addresses.append(str(ipaddress.ip_network(str(item), strict=False)) if isinstance(item, str) else None)
        except ValueError:
            addresses.append(None)
        if addresses[-1] is None:
            raise _Invalid(ln, f"{item!r} is not an IP address or CIDR block")
    return IpList(f.slug("id"), f.text("title", max_len=200), tuple(sorted(set(addresses))), Location(file, f.line))


ENTRY_KEYS = ("id", "table", "ports", "protocols", "service", "title", "description", "references",
              "corrections", "tags", "patterns")
ENTRY_REQUIRED = ("id", "table", "ports", "protocols", "service", "title", "description", "references",
                  "patterns")


def _entry(value: Any, line: int, file: str, classes: list[PortClass], list_refs: list,
           collector: _Collector, pack: str) -> Entry | None:
    f = _Fields(value, line, "entry", ENTRY_KEYS, ENTRY_REQUIRED)
    entry_id = f.slug("id")
    protocols = _strings(f, "protocols", lambda v: v in TRANSPORTS, "protocol (tcp or udp)")
    if not protocols:
        raise _Invalid(f.line_of("protocols"), "'protocols' must list tcp and/or udp")
    en, zh = _bilingual(f, "description", file)
    corrections = []
    for item, ln in f.items("corrections"):
        c = _Fields(item, ln, "correction", *OBJECT_KEYS["correction"])
        corrections.append(Correction(c.text("seed"), c.text("fixed"), c.text("note")))
    pattern_items = f.items("patterns", required=True)
    if not pattern_items:
        raise _Invalid(f.line_of("patterns"), "an entry needs at least one pattern")
    ports = _ports(f, "ports", required=True)
    for value, ln in f.items("references"):
        refused = _attack_link(value) if isinstance(value, str) else None
        if refused:
            raise _Invalid(ln, f"'references': {refused}")
    references = _strings(f, "references", lambda v: bool(URL.match(v)), "http(s) URL")
    if not references:
        raise _Invalid(f.line_of("references"), "'references' needs at least one URL")
    patterns = []
    failed = False
    for item, ln in pattern_items:
        pattern = collector.run(file, entry_id, ln,
                                lambda i=item, ln=ln: _pattern(i, ln, entry_id, protocols, file, list_refs))
        failed = failed or pattern is None
        if pattern:
            patterns.append(pattern)
    if failed:
        return None
    return Entry(
        id=entry_id, table=f.choice("table", TABLES), ports=ports,
        protocols=tuple(sorted(set(protocols))), service=f.text("service", max_len=100),
        title=f.text("title", max_len=200), description_en=en, description_zh=zh, references=references,
        corrections=tuple(corrections), tags=_strings(f, "tags", lambda v: bool(SLUG.match(v)), "tag slug"),
        patterns=tuple(patterns), port_class=_port_class_of(ports, classes), location=Location(file, f.line),
        pack=pack,
    )
