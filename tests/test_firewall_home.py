"""The firewall never cuts off home or loopback (issue 11): a site's own `response: drop` entry, a site's own
home network, `--wan-if`, `--hook append`, and install.sh with every jump form, in network namespaces.

The namespaces are those of rulegen.prove.firewall: the host (home address 10.231.0.1), and a peer with an
outside address (198.51.100.2) and an inside one (10.231.0.2); loopback probes stay inside the host.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
from pathlib import Path

import pytest
from conftest import ODD_ENTRY_HEAD, need, need_root, run_rulegen

from rulegen.prove import firewall

REDIS = 6379
SITE = ODD_ENTRY_HEAD.replace("id: odd\n", "id: site-redis\n").replace("[4444]", f"[{REDIS}]") + f"""\
      - id: site-redis-from-outside
        title: Redis reached from outside
        category: POLICY
        direction: inbound
        transport: tcp
        detect: probe
        dst_ports: [{REDIS}]
        severity: medium
        classtype: policy-violation
        response: drop
        false_positives: None; Redis serves home clients only.
"""
OTHER_HOME = "home:\n  title: The site's one public network\n  addresses: [203.0.113.0/24]\n"
SOURCES = ("outside", "inside", "loopback", "host")  # host: the host to its own address, over lo


def _tools() -> None:
    need_root()
    for tool in ("ip", "ipset", "iptables-restore", "ip6tables-restore", "nft"):
        need(tool)


def _build(tmp_path: Path, *args: str, home: str | None = None) -> Path:
    site = tmp_path / "site"
    site.mkdir(parents=True, exist_ok=True)
    (site / "redis.yaml").write_text(SITE)
    if home:
        (site / "home.yaml").write_text(home)
    out = tmp_path / "out"
    result = run_rulegen("build", "-k", "@shipped", "-k", str(site), "-o", str(out), "-t", "iptables,nftables", *args)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    return out


def _probes(family: int, port: int = REDIS) -> list[firewall.Probe]:
    """A TCP connect to `port` of the host from each source (sport unique per source)."""
    probes = []
    for i, src in enumerate(SOURCES):
        way, dst = ("lo", src) if src in ("loopback", "host") else ("in", "host")
        probes.append(firewall.Probe(f"{src}-v{family}", "t", family, "tcp", way, 42000 + 10 * family + i, port,
                                     src, dst))
    return probes


def _outcomes(ns: dict[str, str], family: int = 4, port: int = REDIS) -> dict[str, str]:
    results = firewall.run_probes(ns, _probes(family, port))
    return {key.split("-")[0]: result["outcome"] for key, result in results.items()}


def _in(ns: str, *cmd: str) -> str:
    result = subprocess.run(["ip", "netns", "exec", ns, *cmd], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, f"{' '.join(cmd)}: {result.stderr}"
    return result.stdout


def _load(target: str, ns: str, out: Path) -> None:
    if target == "iptables":
        _in(ns, "sh", str(out / "iptables" / "install.sh"))
    else:
        _in(ns, "nft", "-f", str(out / "nftables" / "rulegen.nft"))


@pytest.fixture(scope="module")
def site_out(tmp_path_factory) -> Path:
    return _build(tmp_path_factory.mktemp("site"))


@pytest.mark.parametrize("target", firewall.TARGETS)
@pytest.mark.parametrize("family", [4, 6])
def test_a_site_drop_blocks_outside_only(site_out, target, family):
    """The issue's case: a site entry drops Redis from outside; a home client and loopback (127.0.0.1 / ::1
    and the host's own address) still reach it, exactly as without the firewall."""
    _tools()
    with firewall.namespaces() as ns:
        assert _outcomes(ns, family) == dict.fromkeys(SOURCES, "answered")
        _load(target, ns["host"], site_out)
        assert _outcomes(ns, family) == {"outside": "timeout", "inside": "answered", "loopback": "answered",
                                         "host": "answered"}
        counted = [c for c in firewall.read_counters(target, ns["host"]) if " site-redis-from-outside " in c.comment]
        assert sum(c.packets or 0 for c in counted if c.kind == "drop") >= 1  # the outside probe, and only it


def test_a_site_home_replaces_the_shipped_one(tmp_path):
    """A site home of 203.0.113.0/24 only: 10.231.0.2 is outside now (and every IPv6 address), so the inside
    peer is dropped too; loopback is still never matched."""
    out = _build(tmp_path, home=OTHER_HOME)
    ipset = (out / "iptables" / "rulegen.ipset").read_text()
    assert re.findall(r"^add rg-home-4-new (\S+)$", ipset, re.M) == ["203.0.113.0/24"]
    assert not re.findall(r"^add rg-home-6-new ", ipset, re.M)
    nft = (out / "nftables" / "rulegen.nft").read_text()
    assert "elements = { 203.0.113.0/24 }" in nft and "10.0.0.0/8" not in nft
    _tools()
    for target in firewall.TARGETS:
        for family in (4, 6):
            with firewall.namespaces() as ns:
                _load(target, ns["host"], out)
                assert _outcomes(ns, family) == {"outside": "timeout", "inside": "timeout", "loopback": "answered",
                                                 "host": "answered"}, (target, family)


def test_wan_if_leaves_other_interfaces_alone(tmp_path):
    """--wan-if: the hooks act on those interfaces only. Built for another interface, the outside probe on
    the veth passes; built for the veth itself, it is dropped (and home and loopback still pass)."""
    _tools()
    veth = f"rgh-{os.getpid()}"  # the host end of the proof's veth pair
    for wan, outside in (("eth9", "answered"), (veth, "timeout")):
        out = _build(tmp_path / wan, "--wan-if", wan, "--wan-if", "wan0")
        manifest = json.loads((out / "manifest.json").read_text())
        assert manifest["firewall"] == {"policy": None, "wan_if": [wan, "wan0"], "hook": "insert"}
        rules = (out / "iptables" / "rulegen.rules").read_text()
        assert f'-I INPUT -i {wan} -m comment --comment "rulegen hook" -j RULEGEN-INPUT' in rules
        assert f"-A RULEGEN-FORWARD-WAN -o {wan} -g RULEGEN-FORWARD" in rules and "! -i lo" not in rules
        assert f'iifname != {{ "{wan}", "wan0" }} return' in (out / "nftables" / "rulegen.nft").read_text()
        for target in firewall.TARGETS:
            with firewall.namespaces() as ns:
                _load(target, ns["host"], out)
                assert _outcomes(ns) == {"outside": outside, "inside": "answered", "loopback": "answered",
                                         "host": "answered"}, (wan, target)


def test_hook_append_comes_after_the_site_rules(tmp_path):
    """--hook append: iptables appends the jumps (a site ACCEPT before them wins); nftables' base chains take
    priority filter + 10, and there a site's accept in its own chain does not stop rulegen's drop."""
    _tools()
    appended, inserted = _build(tmp_path / "a", "--hook", "append"), _build(tmp_path / "i")
    assert json.loads((appended / "manifest.json").read_text())["firewall"]["hook"] == "append"
    assert "priority filter + 10;" in (appended / "nftables" / "rulegen.nft").read_text()
    assert "priority filter - 10;" in (inserted / "nftables" / "rulegen.nft").read_text()
    accept = ("-A", "INPUT", "-p", "tcp", "--dport", str(REDIS), "-j", "ACCEPT")
    for out, outside in ((appended, "answered"), (inserted, "timeout")):
        with firewall.namespaces() as ns:
            host = ns["host"]
            _in(host, "iptables", *accept)
            _in(host, "sh", str(out / "iptables" / "install.sh"))
            chain = [ln for ln in _in(host, "iptables-save", "-t", "filter").splitlines() if ln.startswith("-A INPUT")]
            hook = next(i for i, ln in enumerate(chain) if '"rulegen hook"' in ln)
            assert hook == (len(chain) - 1 if out is appended else 0), chain
            assert _outcomes(ns)["outside"] == outside
    with firewall.namespaces() as ns:
        host = ns["host"]
        _in(host, "nft", "add table inet site; add chain inet site input "
                         "{ type filter hook input priority filter; policy accept; }; "
                         f"add rule inet site input tcp dport {REDIS} accept")
        _in(host, "nft", "-f", str(appended / "nftables" / "rulegen.nft"))
        assert "priority filter + 10;" in _in(host, "nft", "list", "chain", "inet", "rulegen", "input")
        assert _outcomes(ns) == {"outside": "timeout", "inside": "answered", "loopback": "answered",
                                 "host": "answered"}


def test_install_removes_every_jump_form(tmp_path):
    """install.sh unhooks whatever jump carries the hook comment: an older rulegen's plain jump, the default
    form (! -i lo), and --wan-if / --hook append ones; a reload keeps one set of jumps; remove restores
    iptables-save and the ipsets exactly."""
    _tools()
    default, wan = _build(tmp_path / "d"), _build(tmp_path / "w", "--wan-if", "wan0", "--hook", "append")

    def state(host: str) -> str:
        """The tables without the save tools' timestamps, and the sets without the hash seed of a swapped-in
        set, which also orders its members."""
        text = _in(host, "iptables-save") + _in(host, "ip6tables-save")
        sets = sorted(re.sub(r" initval 0x[0-9a-f]+", "", _in(host, "ipset", "save")).splitlines())
        return "\n".join(ln for ln in [*text.splitlines(), *sets] if not ln.startswith("#"))

    def jumps(host: str) -> list[str]:
        return [ln for ln in _in(host, "iptables-save").splitlines() if '"rulegen hook"' in ln]

    with firewall.namespaces() as ns:
        host = ns["host"]
        for tool in ("iptables", "ip6tables"):  # a site rule of its own, which every step leaves alone
            _in(host, tool, "-A", "INPUT", "-p", "tcp", "--dport", "9", "-j", "ACCEPT")
        before = state(host)
        _in(host, "iptables", "-N", "RULEGEN-INPUT")
        _in(host, "iptables", "-I", "INPUT", "-m", "comment", "--comment", "rulegen hook", "-j", "RULEGEN-INPUT")
        _in(host, "sh", str(default / "iptables" / "install.sh"))
        _in(host, "sh", str(default / "iptables" / "install.sh"))
        assert sorted(jumps(host)) == sorted([
            '-A INPUT ! -i lo -m comment --comment "rulegen hook" -j RULEGEN-INPUT',
            '-A FORWARD -m comment --comment "rulegen hook" -j RULEGEN-FORWARD',
            '-A OUTPUT ! -o lo -m comment --comment "rulegen hook" -j RULEGEN-OUTPUT'])
        _in(host, "sh", str(wan / "iptables" / "install.sh"))
        once = state(host)
        _in(host, "sh", str(wan / "iptables" / "install.sh"))
        assert state(host) == once
        assert sorted(jumps(host)) == sorted([
            '-A INPUT -i wan0 -m comment --comment "rulegen hook" -j RULEGEN-INPUT',
            '-A FORWARD -m comment --comment "rulegen hook" -j RULEGEN-FORWARD-WAN',
            '-A OUTPUT -o wan0 -m comment --comment "rulegen hook" -j RULEGEN-OUTPUT'])
        assert _outcomes(ns)["outside"] == "answered"  # the veth is no WAN interface of this build
        _in(host, "sh", str(wan / "iptables" / "install.sh"), "remove")
        assert state(host) == before


def test_a_bad_wan_if_is_a_usage_error(tmp_path):
    for bad in ("lo", "eth0 -j ACCEPT", "a" * 16, ""):
        result = run_rulegen("build", "--wan-if", bad, "-o", str(tmp_path / "out"))
        assert result.returncode == 2 and "--wan-if" in result.stderr, result.stderr
        assert "Traceback" not in result.stderr
    assert run_rulegen("build", "--hook", "middle", "-o", str(tmp_path / "out")).returncode == 2
    assert not (tmp_path / "out").exists()


def test_an_ip_list_called_home_keeps_its_own_ipset(tmp_path):
    """The home sets are rg-home-4 / -6; an IP list whose id is `home` gets a set of its own (hashed name),
    so neither set replaces the other's members."""
    knowledge = tmp_path / "k"
    knowledge.mkdir()
    listed = SITE.replace("direction: inbound\n", "direction: inbound\n        src_net: list:home\n")
    (knowledge / "k.yaml").write_text("ip_lists:\n  - id: home\n    title: A list named home\n"
                                      "    addresses: [192.0.2.7]\n" + listed)
    out = tmp_path / "out"
    result = run_rulegen("build", "-k", str(knowledge), "-o", str(out), "-t", "iptables")
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    ipset = (out / "iptables" / "rulegen.ipset").read_text()
    created = re.findall(r"^create (\S+) ", ipset, re.M)
    assert len(created) == len(set(created)) and "rg-home-4" in created
    assert re.findall(r"^add rg-home-4-new (\S+)$", ipset, re.M)[0] == "10.0.0.0/8"
    [own] = [name for name in created if name.startswith("rg-home-") and name.endswith("-4")
             and name not in ("rg-home-4", "rg-home-4-new") and not name.endswith("-new")]
    assert re.findall(rf"^add {own}-new (\S+)$", ipset, re.M) == ["192.0.2.7"]
    assert f"--match-set {own} src" in (out / "iptables" / "rulegen.rules").read_text()
