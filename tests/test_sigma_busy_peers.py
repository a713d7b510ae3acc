"""Issue 11, as a stranger: firewall log rows written by hand (not by rulegen's row builder), of peers that are busy
but ordinary, run through every built Sigma firewall rule and correlation with pySigma's sqlite backend. Nothing
above informational may fire on them.

The rows are connection records as a stateful firewall logs them (one per connection, in the opener's direction),
with the field names of shared/DESIGN.md. Home is 10.20.0.0/16 here, a private range, so inside the shipped home.
"""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime, timedelta

import pytest
import yaml

START = datetime(2026, 3, 2, 9, 30, tzinfo=UTC)
LEVELS = ("informational", "low", "medium", "high", "critical")


def _row(second: float, src: str, sport: int, dst: str, dport: int, proto: str = "tcp", action: str = "allow"):
    stamp = (START + timedelta(seconds=second)).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    return {"timestamp": stamp, "src_ip": src, "src_port": sport, "dst_ip": dst, "dst_port": dport,
            "protocol": proto, "action": action}


# A mail provider's outbound relay delivers a dozen messages to our MX within seconds.
MAIL = [_row(2 * i, "209.85.220.41", 41822 + 7 * i, "10.20.1.25", 25) for i in range(12)]
# A search engine's crawler fetches 25 pages from our web server, over plain HTTP and TLS.
CRAWL = [_row(0.8 * i, "66.249.66.1", 52000 + i, "10.20.1.80", 443 if i % 3 else 80) for i in range(25)]
# A hosted CI runner opens 12 SSH sessions to our git server while it fetches submodules.
CI = [_row(1.5 * i, "140.82.112.3", 38000 + 11 * i, "10.20.1.22", 22) for i in range(12)]
# A neighbour on the LAN: a DHCP request, NetBIOS datagrams and Dropbox LAN sync announcements, all broadcast.
NEIGHBOUR = [_row(0, "0.0.0.0", 68, "255.255.255.255", 67, "udp"),
             *[_row(10 * i, "10.20.3.17", 138, "10.20.255.255", 138, "udp") for i in range(3)],
             *[_row(30 * i, "10.20.3.17", 17500, "255.255.255.255", 17500, "udp") for i in range(2)],
             *[_row(30 * i, "10.20.3.17", 17500, "10.20.255.255", 17500, "udp") for i in range(2)]]
PEERS = {"mail delivery": MAIL, "crawler": CRAWL, "ci runner": CI, "neighbour broadcast": NEIGHBOUR}


def _logs(rows: list[dict]) -> sqlite3.Connection:
    """The table the sqlite backend queries: `logs`, text compared case-insensitively, ports as numbers."""
    db = sqlite3.connect(":memory:")
    db.execute("CREATE TABLE logs (timestamp TEXT, src_ip TEXT COLLATE NOCASE, src_port INTEGER, "
               "dst_ip TEXT COLLATE NOCASE, dst_port INTEGER, protocol TEXT COLLATE NOCASE, "
               "action TEXT COLLATE NOCASE)")
    db.executemany("INSERT INTO logs VALUES (:timestamp, :src_ip, :src_port, :dst_ip, :dst_port, :protocol, :action)",
                   rows)
    return db


@pytest.fixture(scope="module")
def firewall_queries(built) -> list[tuple[str, str, str]]:
    """(file, level, SQL) of every firewall rule that is a detection of its own, and of every correlation rule."""
    from sigma.backends.sqlite import sqliteBackend
    from sigma.collection import SigmaCollection
    from sigma.correlations import SigmaCorrelationRule

    paths = sorted((built / "sigma").rglob("*.yml"))
    docs = {p: yaml.safe_load(p.read_text()) for p in paths}
    firewall = {p for p, d in docs.items() if (d.get("logsource") or {}).get("category") == "firewall"}
    correlations = {p for p, d in docs.items() if "correlation" in d}
    collection = SigmaCollection.load_ruleset(sorted(firewall | correlations))
    backend = sqliteBackend()
    queries = []  # a correlation converts after the rules it counts
    for rule in sorted(collection.rules, key=lambda r: isinstance(r, SigmaCorrelationRule)):
        correlation = isinstance(rule, SigmaCorrelationRule)
        sql = backend.convert_correlation_rule(rule) if correlation else backend.convert_rule(rule)
        queries += [(rule.source.path.name, rule.level.name.lower(), q) for q in sql]
    assert len({name for name, _, _ in queries}) >= 60, "the build has its firewall rules and correlations"
    return queries


def _fired(queries: list[tuple[str, str, str]], rows: list[dict]) -> dict[str, str]:
    db = _logs(rows)
    return {name: level for name, level, sql in queries if db.execute(sql).fetchall()}


def test_the_rules_do_see_these_rows(firewall_queries):
    """Not vacuous: the same kind of hand-written rows do raise the sweeps and probes they describe."""
    scan = [_row(0.5 * i, "198.51.100.9", 40000 + i, f"10.20.1.{10 + i}", 22) for i in range(15)]
    fired = _fired(firewall_queries, scan)
    assert "correlation_ssh_known_hosts_sweep.yml" in fired, fired
    telnet = _fired(firewall_queries, [_row(0, "198.51.100.9", 40001, "10.20.1.23", 23)])
    assert "net_firewall_telnet_probe.yml" in telnet, telnet


@pytest.mark.parametrize("peer", PEERS)
def test_a_busy_ordinary_peer_raises_nothing_above_informational(firewall_queries, peer):
    fired = _fired(firewall_queries, PEERS[peer])
    loud = {name: level for name, level in fired.items() if LEVELS.index(level) > 0}
    assert not loud, f"{peer}: {loud}"


@pytest.mark.parametrize("peer", PEERS)
def test_a_busy_ordinary_peer_over_loopback_raises_nothing(firewall_queries, peer):
    """The same rows with both ends on loopback (a local relay, a local crawler): no rule at all."""
    rows = [{**r, "src_ip": "127.0.0.1", "dst_ip": "127.255.255.255" if r["dst_ip"].endswith(".255") else "127.0.0.1"}
            for r in PEERS[peer]]
    assert _fired(firewall_queries, rows) == {}
