"""The proofs take their home and outside addresses from the knowledge's home set (rulegen.prove.addresses): a site
whose home holds neither 192.168.0.0/16 nor fd00::/8, or holds the documentation ranges the shipped home leaves
outside, gets Suricata captures that its rules (HOME_NET = that home) read as each pattern means, and every proof
holds. IPv6 hosts come from home's IPv6 networks; a home without one has no IPv6 home host."""

from __future__ import annotations

import ipaddress
from pathlib import Path

import pytest
from conftest import need, run_rulegen
from scapy.layers.inet6 import IPv6
from scapy.utils import rdpcap

from rulegen.knowledge import default_knowledge_dir, load_knowledge
from rulegen.model import DEFAULT_HOME, Home, KnowledgeBase
from rulegen.prove import addresses, captures
from rulegen.prove import suricata as prove_suricata

# Site homes: private and global IPv6 without 192.168 or fd00; and public ranges where the shipped home's outside
# addresses (203.0.113.5, 198.51.100.x, 2001:db8::5) sat.
SITE_HOMES = {
    "no-192.168-no-fd00": ("10.20.0.0/16", "2001:db8:77::/48"),
    "public-ranges": ("192.168.0.0/16", "203.0.113.0/24", "198.51.100.0/24", "2001:db8::/32"),
}
HOMES = {**SITE_HOMES, "shipped": DEFAULT_HOME, "one-/25-no-ipv6": ("172.20.5.0/25", "10.9.0.0/24", "127.0.0.0/8"),
         "loopback-first": ("127.0.0.0/8", "::1/128", "fe80::/10", "100.64.0.0/10", "2001:db8:5::/64")}

# A partner that reaches a site service over IPv6 only: the flow's home end must be an IPv6 home host.
PARTNER = "3fff:99::1"  # the first host of its list
PARTNERS = """ip_lists:
  - id: v6-partners
    title: A partner's IPv6 gateways
    addresses: ["3fff:99::/32"]  # documentation space (RFC 9637), outside every home here
entries:
  - id: partner-sync
    table: destination
    ports: [9494]
    protocols: [tcp]
    service: partner-sync
    title: Partner sync service
    description:
      en: A partner's gateways reach the sync service on tcp/9494, over IPv6 only.
    references: [https://wiki.example.com/partners#sync]
    tags: [site]
    patterns:
"""
PARTNER_PATTERN = """      - id: {id}
        title: {title}
        category: INFO
        direction: {direction}
        transport: tcp
        src_net: list:v6-partners
        dst_ports: [9494]
        detect: probe
        severity: informational
        classtype: misc-activity
        response: log
        false_positives: Every partner session is one; the line is an audit trail.
"""
TO_HOME, TO_ANY = "partner-sync-session", "partner-sync-anywhere"
PARTNERS += (PARTNER_PATTERN.format(id=TO_HOME, title="Partner sync session to a home server", direction="inbound")
             + PARTNER_PATTERN.format(id=TO_ANY, title="Partner gateway reaching tcp/9494 on any host",
                                      direction="any"))


def _in(address: str, nets: tuple[str, ...]) -> bool:
    ip = ipaddress.ip_address(address)
    return any(ip in ipaddress.ip_network(n) for n in nets if ipaddress.ip_network(n).version == ip.version)


def _site(folder: Path, home: tuple[str, ...], partners: bool = True) -> Path:
    folder.mkdir(parents=True)
    (folder / "home.yaml").write_text("home:\n  title: The site's networks\n  addresses:\n"
                                      + "".join(f"    - {a}\n" for a in home))
    if partners:
        (folder / "partners.yaml").write_text(PARTNERS)
    return folder


def _built(site: Path, out: Path) -> Path:
    result = run_rulegen("build", "-k", "@shipped", "-k", str(site), "-t", "suricata", "--no-validate",
                         "-o", str(out))
    assert result.returncode == 0, result.stderr
    return out


@pytest.mark.parametrize("name", HOMES)
def test_home_hosts_are_in_home_and_outside_hosts_out_of_it(name):
    home = HOMES[name]
    nets = addresses.addressing(KnowledgeBase((), {}, (), home=Home(home)))
    for host in (0, 10, 254, 255):
        assert _in(nets.home.format(host), home) and _in(nets.wide.format(host), home), (nets, host)
        for outside in (nets.outside, *nets.spare, nets.outside6):
            assert not _in(outside.format(host), home), (outside, host)
    has_v6 = any(ipaddress.ip_network(a).version == 6 and ipaddress.ip_network(a).prefixlen <= 64
                 and not ipaddress.ip_network(a).is_link_local for a in home)
    assert (nets.home6 is not None) == has_v6
    if has_v6:
        assert _in(nets.home6.format(10), home) and _in(nets.home6.format(40), home)


def test_the_shipped_home_keeps_the_documented_addresses():
    hosts = captures.hosts(load_knowledge([default_knowledge_dir()]))
    assert (hosts.home, hosts.peer, hosts.client, hosts.server) == ("192.168.1.10", "192.168.1.20", "192.168.1.30",
                                                                    "192.168.1.40")
    assert (hosts.external, hosts.directed_broadcast, hosts.wide) == ("203.0.113.5", "192.168.1.255",
                                                                      ("10.0.1.10", "10.0.1.254"))
    assert (hosts.home6, hosts.external6, hosts.spare[0]) == ("fd00:1::10", "2001:db8::5", "198.51.100.7")


@pytest.mark.parametrize("name", SITE_HOMES)
def test_every_suricata_proof_holds_with_a_sites_home(name, tmp_path):
    """The bug this fixes: with captures at 192.168.1.x / 203.0.113.5 whatever the home, such a site failed every
    proof whose pattern names home or outside, and the normal-traffic proof."""
    need("suricata")
    site = _site(tmp_path / "site", SITE_HOMES[name])
    out = _built(site, tmp_path / "out")
    kb = load_knowledge([default_knowledge_dir(), site])
    work = tmp_path / "work"
    proofs = prove_suricata.prove(kb, out, work)
    failed = [(p.pattern, p.side, p.detail) for p in proofs if not p.proven]
    assert not failed and len(proofs) > 300, failed
    hosts = captures.hosts(kb)
    assert _in(hosts.home, kb.home.addresses) and not _in(hosts.external, kb.home.addresses)
    quiet = next(p for p in proofs if p.pattern == "ssh-probe" and p.side == "quiet")
    assert f"from a home client ({hosts.client} -> {hosts.home})" in quiet.detail
    # the partner's IPv6 flows: from the list to an IPv6 home host
    for pid in (TO_HOME, TO_ANY):
        ends = {(p[IPv6].src, p[IPv6].dst) for p in rdpcap(str(work / "captures" / f"{pid}.pcap")) if IPv6 in p}
        assert ends == {(PARTNER, hosts.home6), (hosts.home6, PARTNER)}
        assert _in(hosts.home6, kb.home.addresses)


def test_a_home_without_ipv6_has_no_ipv6_home_host(tmp_path):
    """With no IPv6 network in home, HOME_NET has no IPv6 address: a flow from an IPv6 list to home cannot be shown
    (the capture says why), and one to any host goes to an outside IPv6 host, where its rule alerts."""
    binary = need("suricata")
    site = _site(tmp_path / "site", ("10.20.0.0/16",))
    out = _built(site, tmp_path / "out")
    kb = load_knowledge([default_knowledge_dir(), site])
    patterns = {p.id: p for p in kb.patterns}
    with pytest.raises(ValueError, match="holds no IPv6 network"):  # suricata.run: "no capture: ...", not proven
        captures.write(patterns[TO_HOME], kb, tmp_path / "home.pcap")
    client, server = captures.endpoints(patterns[TO_ANY], kb)
    assert client == PARTNER and not _in(server, kb.home.addresses) and ":" in server
    sid = prove_suricata.expressed(out)[TO_ANY]
    config = prove_suricata.write_config(tmp_path, kb)
    rules = out / "suricata" / "rulegen.rules"
    fires = prove_suricata.replay_one(binary, config, rules, captures.write(patterns[TO_ANY], kb, tmp_path / "a.pcap"),
                                      tmp_path / "logs-a")
    assert fires.error is None and fires.count(sid) == 1, fires.alerts
    quiet_pcap, shown = captures.write_quiet(patterns[TO_ANY], kb, tmp_path / "q.pcap")
    quiet = prove_suricata.replay_one(binary, config, rules, quiet_pcap, tmp_path / "logs-q")
    assert quiet.error is None and quiet.count(sid) == 0 and shown == ["over loopback (::1 -> ::1)"], quiet.alerts
