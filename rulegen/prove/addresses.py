"""The home and outside addresses the proofs use (Suricata captures, Sigma events), picked from the knowledge's
home set: a home host must be in `kb.home` (the HOME_NET of the replays, the `|cidr` filters of Sigma) and an
outside host out of it, whatever home a site defines (it may hold public ranges, or no IPv6 network at all).

Each network is a format string (`a.b.c.{}`, `x:y::{}`): host numbers go into the `{}`.
"""

from __future__ import annotations

import ipaddress
import itertools
from dataclasses import dataclass
from functools import cache

from rulegen.model import Home, KnowledgeBase

HOME_PREFERRED = ("192.168.1.0/24", "fd00:1::/64")  # where home holds them (the shipped home does)
OUTSIDE_CANDIDATES = {4: ("203.0.113.0/24", "198.51.100.0/24", "192.0.2.0/24"),  # documentation: RFC 5737
                      6: ("2001:db8::/64", "3fff::/64")}  # RFC 3849, RFC 9637
BLOCK = {4: 24, 6: 64}  # the prefix length of the networks picked
LIMITED_BROADCAST = "255.255.255.255"

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


@dataclass(frozen=True)
class Addressing:
    """Format strings of the networks the proofs take their addresses from."""

    home: str  # a /24 inside home
    outside: str  # a /24 outside home
    wide: str  # another /24 of a home network wider than /24 (the home /24 when home has none)
    home6: str | None  # a /64 inside home; None when home holds no IPv6 network of /64 or shorter
    outside6: str  # a /64 outside home
    spare: tuple[str, ...]  # further outside /24s, for an address a list must not hold

    @property
    def broadcasts(self) -> tuple[str, str]:
        """A directed broadcast of the home /24 and the limited broadcast."""
        return self.home.format(255), LIMITED_BROADCAST


def _pattern(net: Network) -> str:
    """`a.b.c.{}` of a /24, `x:y::{}` of a /64."""
    if net.version == 4:
        return str(net.network_address).rsplit(".", 1)[0] + ".{}"
    return str(net.network_address) + "{}"


def _home_networks(nets: list[Network], version: int) -> list[Network]:
    """Home's networks of one family that hold a whole block, loopback and link-local aside."""
    return [n for n in nets if n.version == version and n.prefixlen <= BLOCK[version]
            and not n.is_loopback and not n.is_link_local]


def _inside(nets: list[Network], version: int) -> Network | None:
    """The preferred block where home holds it, else the first block of home's first network of the family."""
    candidates = _home_networks(nets, version)
    preferred = ipaddress.ip_network(HOME_PREFERRED[version == 6])
    if any(preferred.subnet_of(n) for n in candidates):
        return preferred
    return next((next(n.subnets(new_prefix=BLOCK[version])) for n in candidates), None)


def _outside(nets: list[Network], version: int) -> list[Network]:
    """The candidate blocks home does not overlap (the first candidate if home overlaps them all: the proofs
    will say so)."""
    candidates = [ipaddress.ip_network(c) for c in OUTSIDE_CANDIDATES[version]]
    free = [c for c in candidates if not any(c.overlaps(n) for n in nets if n.version == version)]
    return free or candidates[:1]


def _wide(nets: list[Network], inside: Network) -> Network:
    """A /24 after the first of home's first IPv4 network wider than /24 (10.0.1.0/24 of 10.0.0.0/8), other than
    `inside`; `inside` itself when home has no wider network."""
    for net in _home_networks(nets, 4):
        if net.prefixlen < BLOCK[4]:
            blocks = itertools.islice(net.subnets(new_prefix=BLOCK[4]), 1, None)
            return next((b for b in blocks if b != inside), inside)
    return inside


@cache
def _addressing(home: Home) -> Addressing:
    """Home: 192.168.1.0/24 (fd00:1::/64) where home holds it, else the first /24 (/64) of home's first network
    of the family that holds one. Outside: the first documentation block that home does not overlap."""
    nets = [ipaddress.ip_network(a, strict=False) for a in home.addresses]
    inside = _inside(nets, 4) or ipaddress.ip_network(HOME_PREFERRED[0])  # no /24 in home: the proofs will say so
    inside6 = _inside(nets, 6)
    outside = _outside(nets, 4)
    return Addressing(_pattern(inside), _pattern(outside[0]), _pattern(_wide(nets, inside)),
                      _pattern(inside6) if inside6 else None, _pattern(_outside(nets, 6)[0]),
                      tuple(_pattern(n) for n in outside[1:]))


def addressing(kb: KnowledgeBase) -> Addressing:
    return _addressing(kb.home)
