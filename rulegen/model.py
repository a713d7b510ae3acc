"""The typed, frozen model of the knowledge base. Targets read only these objects."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from functools import cached_property

from rulegen.errors import Problem


class Direction(StrEnum):
    INBOUND = "inbound"
    OUTBOUND = "outbound"
    INTERNAL = "internal"
    BROADCAST = "broadcast"
    ANY = "any"


class Detect(StrEnum):
    PROBE = "probe"
    TRAFFIC = "traffic"
    PAYLOAD = "payload"
    SWEEP = "sweep"


class Severity(StrEnum):
    INFORMATIONAL = "informational"
    LOW = "low"
    MEDIUM = "medium"
    HIGH = "high"
    CRITICAL = "critical"


class Response(StrEnum):
    ALERT = "alert"
    LOG = "log"
    DROP = "drop"
    REJECT = "reject"


CATEGORIES = ("SCAN", "DOS", "MALWARE", "POLICY", "INFO", "EXPLOIT", "ADWARE")
TRANSPORTS = ("tcp", "udp")
# Named NTP requests: name -> (mode, request codes). Mode 7 (ntpd's private "implementation" requests) carries its
# request code in byte 3; monlist is MON_GETLIST_1 (42), or the older MON_GETLIST (20). Mode 6 (control messages,
# RFC 1305 appendix B) carries its opcode in the low 5 bits of byte 1; readvar (ntpq `rv`) is opcode 2.
NTP_REQUESTS = {"monlist": (7, (42, 20)), "readvar": (6, (2,))}


@dataclass(frozen=True, order=True)
class PortRange:
    low: int
    high: int

    @property
    def is_single(self) -> bool:
        return self.low == self.high

    def __str__(self) -> str:
        return str(self.low) if self.is_single else f"{self.low}-{self.high}"


@dataclass(frozen=True)
class Net:
    """One side of a flow: `home`, `external`, `any`, `broadcast`, or an IP list (maybe negated)."""

    kind: str  # home | external | any | broadcast | list
    list_id: str | None = None
    negated: bool = False

    def __str__(self) -> str:
        if self.kind != "list":
            return self.kind
        return f"{'not-' if self.negated else ''}list:{self.list_id}"


@dataclass(frozen=True)
class Location:
    """Where a knowledge object was defined, for error messages and the manifest."""

    file: str
    line: int


@dataclass(frozen=True)
class ContentMatch:
    """One content item: absolute (`offset`/`depth` from the start of the payload) or relative to the end of the
    previous item's match (`distance`/`within`); an item with neither follows the previous one anywhere."""

    data: bytes
    offset: int | None = None
    depth: int | None = None
    nocase: bool = False
    distance: int | None = None
    within: int | None = None


@dataclass(frozen=True)
class Match:
    """Exactly one kind of application fact; `kind` names it, the other fields hold its values."""

    kind: str  # content | dns | snmp | ftp | tftp | dhcp | login | rpc | netbios | shell | smtp | http | ntp
    contents: tuple[ContentMatch, ...] = ()
    dns_query: str | None = None
    dns_qtype: str | None = None
    snmp_community: str | None = None
    ftp_user: str | None = None
    tftp_opcode: str | None = None
    tftp_filename: str | None = None
    dhcp_message_type: str | None = None
    login_users: tuple[str, ...] = ()
    rpc_program: int | None = None
    netbios_query: str | None = None
    shell_response: str | None = None
    smtp_reply: str | None = None  # relay-denied: the server's 55x refusal to relay a RCPT TO (to the client)
    smtp_rcpt: str | None = None  # relay-route: a RCPT TO whose address routes through the server
    http_method: str | None = None  # an HTTP request's method (uppercase token)
    http_uri: str | None = None  # the request target, compared as `http_uri_match` says
    http_uri_match: str = "contains"  # contains | startswith | equals
    http_header: str | None = None  # a request header's name ...
    http_header_value: str | None = None  # ... and a substring of its value (None: the header is present)
    ntp_mode: int | None = None  # NTP mode 0-7 (the low 3 bits of the first byte)
    ntp_request: str | None = None  # a mode 6 or mode 7 request by name (NTP_REQUESTS)


@dataclass(frozen=True)
class Samples:
    """Real application messages for the proofs: `fires` must raise the pattern's rule, `quiet` (ordinary use of
    the protocol, sent the same way) must not. One item is one message: a tcp payload in the pattern's direction
    (the capture adds the handshake) or one udp datagram's payload."""

    fires: tuple[bytes, ...] = ()
    quiet: tuple[bytes, ...] = ()


@dataclass(frozen=True)
class Sweep:
    distinct: str  # dst_port | dst_ip
    count: int
    seconds: int


@dataclass(frozen=True)
class Attack:
    tactic: str
    technique: str


@dataclass(frozen=True)
class Override:
    """A site's change to one pattern of another knowledge folder: severity, response, or switched off."""

    pattern_id: str
    severity: Severity | None
    response: Response | None
    disabled: bool
    reason: str
    location: Location

    def __str__(self) -> str:
        changes = [f"{k} {v}" for k, v in (("severity", self.severity), ("response", self.response)) if v]
        what = "disabled" if self.disabled else ", ".join(changes)
        return f"{what} by {self.location.file}:{self.location.line} ({self.reason})"


@dataclass(frozen=True)
class Pattern:
    id: str
    entry_id: str
    title: str
    category: str
    direction: Direction
    transport: str
    src_ports: tuple[PortRange, ...]
    dst_ports: tuple[PortRange, ...]
    dst_ports_except: tuple[PortRange, ...]
    src_net: Net
    dst_net: Net
    detect: Detect
    flow: str
    match: Match | None
    sweep: Sweep | None
    severity: Severity
    classtype: str
    attack: Attack | None
    cves: tuple[str, ...]
    response: Response
    false_positives: str
    not_expressed: tuple[tuple[str, str], ...]
    location: Location
    override: Override | None = None
    samples: Samples = Samples()

    def declared_gap(self, target: str) -> str | None:
        return dict(self.not_expressed).get(target)


@dataclass(frozen=True)
class Correction:
    seed: str
    fixed: str
    note: str


@dataclass(frozen=True)
class Entry:
    id: str
    table: str  # destination | source
    ports: tuple[PortRange, ...]
    protocols: tuple[str, ...]
    service: str
    title: str
    description_en: str
    description_zh: str
    references: tuple[str, ...]
    corrections: tuple[Correction, ...]
    tags: tuple[str, ...]
    patterns: tuple[Pattern, ...]
    port_class: str
    location: Location
    pack: str  # the id of the pack it comes from (a site folder without pack.yaml: the folder's name)


# The SIDs of a site's own patterns when its folder has no pack.yaml saying otherwise.
SITE_SIDS = (1200000, 1999999)
SITE_MSG_PREFIX = "RULEGEN"


@dataclass(frozen=True)
class Pack:
    """Where entries come from: a pack (a folder with pack.yaml) or a site folder without one. Its author signs
    the Sigma rules, its msg prefix opens the Suricata msg, and its own new patterns take SIDs in its range."""

    id: str
    title: str
    author: str
    msg_prefix: str
    sids: tuple[int, int]
    folder: str  # the pack's folder: its lock is rulegen.lock there
    location: Location | None = None  # its pack.yaml; None for a site folder without one

    @property
    def where(self) -> str:
        return f"{self.location.file}:{self.location.line}" if self.location else f"site folder {self.folder}"


def site_pack(folder: str, name: str) -> Pack:
    """The pack of a site folder that has no pack.yaml: named after the folder, neutral author, site SIDs."""
    return Pack(name, f"site knowledge ({name})", f"rulegen site knowledge ({name})", SITE_MSG_PREFIX, SITE_SIDS,
                folder)


@dataclass(frozen=True)
class PortClass:
    id: str
    ports: PortRange
    title: str
    description_en: str
    description_zh: str
    location: Location


@dataclass(frozen=True)
class IpList:
    id: str
    title: str
    addresses: tuple[str, ...]
    location: Location


# Loopback is never "home" or "outside" for a pattern: no pattern matches it (DESIGN.md, "Home and outside").
LOOPBACK = ("127.0.0.0/8", "::1/128")
# The home network when the knowledge defines none: private, loopback, link-local and ULA ranges.
DEFAULT_HOME = ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "127.0.0.0/8", "169.254.0.0/16",
                "::1/128", "fe80::/10", "fc00::/7")


@dataclass(frozen=True)
class Home:
    """The one `home` network set every target reads: `inbound` is outside -> home, `outbound` home -> outside,
    `internal` home -> home; outside is every address not in it. A site's folder replaces the shipped one."""

    addresses: tuple[str, ...] = DEFAULT_HOME
    location: Location | None = None  # None: the built-in default

    def by_family(self, family: int) -> tuple[str, ...]:
        return tuple(a for a in self.addresses if (":" in a) == (family == 6))


@dataclass(frozen=True)
class KnowledgeBase:
    port_classes: tuple[PortClass, ...]
    ip_lists: dict[str, IpList]
    entries: tuple[Entry, ...]
    disabled: tuple[Pattern, ...] = ()  # switched off by an override: out of every target, kept in the lock
    home: Home = Home()
    packs: tuple[Pack, ...] = ()  # every pack the knowledge was read from, in the order given

    def pack(self, pack_id: str) -> Pack:
        """The pack of an entry (`entry.pack`)."""
        return next(p for p in self.packs if p.id == pack_id)

    def pack_of(self, pattern: Pattern) -> Pack:
        return self.pack(self.entry(pattern.entry_id).pack)
    warnings: tuple[Problem, ...] = ()  # found while loading (a text that looks escaped but is not): not errors

    @cached_property
    def patterns(self) -> tuple[Pattern, ...]:
        return tuple(p for e in self.entries for p in e.patterns)

    @cached_property
    def _entries_by_id(self) -> dict[str, Entry]:
        return {e.id: e for e in self.entries}

    def entry(self, entry_id: str) -> Entry:
        return self._entries_by_id[entry_id]
