"""The firewall output as an admin installs it (issue 5, part 3): IP lists as ipsets and nft sets, reload and
remove in network namespaces, and `--policy log|drop|reject`.

A small knowledge lists the proof's inside peer address 10.231.0.2 (not its IPv6 address), so a packet from a
listed source and one from an unlisted source travel between the namespaces of rulegen.prove.firewall.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from conftest import ODD_ENTRY_HEAD, copy_knowledge, need, need_root, run_rulegen

from rulegen.knowledge import load_knowledge
from rulegen.model import SITE_SIDS
from rulegen.prove import firewall
from rulegen.targets.firewall import with_policy
from rulegen.validate.firewall import builtin_ipset

LISTED, UNLISTED = "10.231.0.2", "fd00:231::2"  # the peer's inside addresses in the proof's namespaces
LIST_PORT, DROP_PORT, LOG_PORT = 4444, 4446, 4447

KNOWLEDGE = '''ip_lists:
  - id: lab-peers
    title: The proof's peer (IPv4 only) and a documentation network
    addresses: [10.231.0.2, 192.0.2.0/24, "2001:db8::/64"]
''' + ODD_ENTRY_HEAD + f'''      - id: odd-from-listed-peer
        title: Connection from a listed peer
        category: POLICY
        direction: inbound
        src_net: list:lab-peers
        transport: tcp
        detect: probe
        dst_ports: [{LIST_PORT}]
        severity: low
        classtype: policy-violation
        response: drop
        false_positives: Scanners.
      - id: odd-plain-drop
        title: Connection to a blocked port
        category: POLICY
        direction: inbound
        transport: tcp
        detect: probe
        dst_ports: [{DROP_PORT}]
        severity: low
        classtype: policy-violation
        response: drop
        false_positives: Scanners.
      - id: odd-logged
        title: Connection to a logged port
        category: POLICY
        direction: inbound
        transport: tcp
        detect: probe
        dst_ports: [{LOG_PORT}]
        severity: low
        classtype: policy-violation
        response: log
        false_positives: Scanners.
      - id: odd-alert-only
        title: Connection to an alert-only port
        category: POLICY
        direction: inbound
        transport: tcp
        detect: probe
        dst_ports: [4448]
        severity: low
        classtype: policy-violation
        response: alert
        false_positives: Scanners.
'''


def _build(tmp_path: Path, *args: str) -> Path:
    knowledge = tmp_path / "k"
    if not knowledge.exists():
        knowledge.mkdir()
        (knowledge / "odd.yaml").write_text(KNOWLEDGE)
    out = tmp_path / ("out" + "".join(args).replace("-", "_"))
    result = run_rulegen("build", "-k", str(knowledge), "-o", str(out), "-t", "iptables,nftables", *args)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    return out


def _in(ns: str, *cmd: str, check: bool = True) -> str:
    result = subprocess.run(["ip", "netns", "exec", ns, *cmd], capture_output=True, text=True, timeout=60)
    assert not check or result.returncode == 0, f"{' '.join(cmd)}: {result.stderr}"
    return result.stdout


def _state(ns: str) -> dict[str, str]:
    """What an iptables install may change, without the save tools' timestamps and the hash seed of a
    swapped-in set, whose seed also orders its members. (With the nf_tables backend, `nft list ruleset`
    keeps the empty built-in chains that iptables-restore registered; iptables-save shows them anyway.)"""
    def clean(text: str) -> str:
        return "\n".join(line for line in text.splitlines() if not line.startswith("#"))
    return {"iptables": clean(_in(ns, "iptables-save")), "ip6tables": clean(_in(ns, "ip6tables-save")),
            "ipset": "\n".join(sorted(re.sub(r" initval 0x[0-9a-f]+", "", _in(ns, "ipset", "save")).splitlines()))}


def _probe(ns: dict[str, str], family: int, transport: str, dport: int, src: str = "inside") -> str:
    """One probe from the peer (its inside or outside address) to the host, or over loopback (`loopback`,
    or `host`: the host to its own address); its outcome."""
    way, dst = ("lo", src) if src in ("loopback", "host") else ("in", "host")
    probe = firewall.Probe(f"t{family}{transport}{dport}{src}", "t", family, transport, way, 41000 + dport % 1000,
                           dport, src, dst)
    return firewall.run_probes(ns, [probe])[probe.key]["outcome"]


def _counted(target: str, ns: str, pattern: str, kind: str) -> int:
    return sum(c.packets or 0 for c in firewall.read_counters(target, ns)
               if f" {pattern} " in c.comment and c.kind == kind)


@pytest.fixture(scope="module")
def built_lists(tmp_path_factory) -> Path:
    return _build(tmp_path_factory.mktemp("lists"))


def _tools() -> None:
    need_root()
    for tool in ("ip", "ipset", "iptables-restore", "ip6tables-restore", "nft"):
        need(tool)


def test_ip_lists_become_an_ipset_file_and_set_matches(built_lists):
    ipset = (built_lists / "iptables" / "rulegen.ipset").read_text()
    assert "create rg-lab_peers-4 hash:net family inet maxelem 65536 -exist" in ipset
    assert re.findall(r"^add rg-lab_peers-4-new (\S+)$", ipset, re.M) == ["10.231.0.2", "192.0.2.0/24"]
    assert re.findall(r"^add rg-lab_peers-6-new (\S+)$", ipset, re.M) == ["2001:db8::/64"]
    assert all(len(name) <= 31 for name in re.findall(r"^create (\S+)", ipset, re.M))
    assert not builtin_ipset(built_lists / "iptables" / "rulegen.ipset", ipset)
    v4 = (built_lists / "iptables" / "rulegen.rules").read_text()
    assert "-m set --match-set rg-lab_peers-4 src --dport 4444" in v4 and "10.231.0.2" not in v4
    assert "ipset restore" in (built_lists / "iptables" / "install.sh").read_text()
    manifest = json.loads((built_lists / "manifest.json").read_text())
    assert "iptables/rulegen.ipset" in {a["path"] for a in manifest["artifacts"]}
    nft = (built_lists / "nftables" / "rulegen.nft").read_text()
    assert "ip saddr @lab_peers_v4" in nft and "ip6 saddr @lab_peers_v6" in nft


def test_iptables_ipset_install_reload_and_remove(built_lists):
    """A listed source is dropped, an unlisted one answers; a reload adds nothing twice; remove restores
    iptables-save, ip6tables-save and the ipsets exactly (beside a rule and a set of someone else's)."""
    _tools()
    script = str(built_lists / "iptables" / "install.sh")
    with firewall.namespaces() as ns:
        host = ns["host"]
        _in(host, "iptables", "-A", "INPUT", "-p", "tcp", "--dport", "9", "-j", "ACCEPT")
        _in(host, "ip6tables", "-A", "OUTPUT", "-p", "udp", "--dport", "9", "-j", "ACCEPT")
        _in(host, "ipset", "create", "someone-else", "hash:ip")
        before = _state(host)
        _in(host, "sh", script)
        once = _state(host)
        _in(host, "sh", script)
        assert _state(host) == once
        for family in ("iptables", "ip6tables"):
            assert once[family].count('"rulegen hook"') == 3
        assert len(re.findall(r"^create rg-", once["ipset"], re.M)) == 4  # home and lab-peers, per family
        assert re.findall(r"^add rg-lab_peers-4 (\S+)$", once["ipset"], re.M) == ["10.231.0.2", "192.0.2.0/24"]
        assert _probe(ns, 4, "tcp", LIST_PORT) == "timeout"
        assert _probe(ns, 6, "tcp", LIST_PORT) == "answered"
        assert _counted("iptables", host, "odd-from-listed-peer", "drop") >= 1
        _in(host, "sh", script, "remove")
        assert _state(host) == before


def test_iptables_reload_drops_the_chains_a_new_build_no_longer_declares(built_lists, tmp_path):
    """Reloading with a --policy log build (no drop patterns, so no RULEGEN-<HOOK>-<SID> chains) leaves
    exactly the chains that file declares."""
    _tools()
    logged = _build(built_lists.parent, "--policy", "log")
    with firewall.namespaces() as ns:
        host = ns["host"]
        _in(host, "sh", str(built_lists / "iptables" / "install.sh"))
        assert re.search(r"^:RULEGEN-INPUT-\d+ ", _in(host, "iptables-save"), re.M)
        _in(host, "sh", str(logged / "iptables" / "install.sh"))
        for family, name in (("iptables", "rulegen.rules"), ("ip6tables", "rulegen6.rules")):
            loaded = set(re.findall(r"^:(RULEGEN-\S+)", _in(host, f"{family}-save"), re.M))
            assert loaded == set(re.findall(r"^:(RULEGEN-\S+)", (logged / "iptables" / name).read_text(), re.M))
        _in(host, "sh", str(logged / "iptables" / "install.sh"), "remove")
        assert "RULEGEN" not in _in(host, "iptables-save") + _in(host, "ip6tables-save")


def test_nft_table_load_reload_and_delete(built_lists):
    _tools()
    path = str(built_lists / "nftables" / "rulegen.nft")
    with firewall.namespaces() as ns:
        host = ns["host"]
        _in(host, "nft", "add table inet someone_else; add chain inet someone_else c "
                         "{ type filter hook input priority 10; policy accept; }")
        before = _in(host, "nft", "list", "ruleset")
        _in(host, "nft", "-f", path)
        once = _in(host, "nft", "list", "table", "inet", "rulegen")
        _in(host, "nft", "-f", path)
        assert _in(host, "nft", "list", "table", "inet", "rulegen") == once
        assert _probe(ns, 4, "tcp", LIST_PORT) == "timeout"
        assert _probe(ns, 6, "tcp", LIST_PORT) == "answered"
        assert _counted("nftables", host, "odd-from-listed-peer", "drop") >= 1
        _in(host, "nft", "delete", "table", "inet", "rulegen")
        assert _in(host, "nft", "list", "ruleset") == before


def test_the_proof_covers_a_listed_source(built_lists, tmp_path):
    """rulegen's own proof sends from the listed peer address, and only in the family the list takes in."""
    _tools()
    kb = load_knowledge([built_lists.parent / "k"])
    proofs = {(p.target, p.pattern, p.side): p for p in firewall.prove(kb, built_lists, tmp_path)}
    for target in firewall.TARGETS:
        proof = proofs[(target, "odd-from-listed-peer", "fires")]
        assert proof.proven and not proof.skipped, proof.detail
        assert "v4 tcp inside>host" in proof.detail and "v6" not in proof.detail
        quiet = proofs[(target, "odd-from-listed-peer", "quiet")]  # the list, not the direction, says who
        assert quiet.proven and "outside>host" in quiet.detail, quiet.detail


def test_policy_log_turns_every_verdict_into_log(tmp_path):
    out = _build(tmp_path, "--policy", "log")
    v4 = (out / "iptables" / "rulegen.rules").read_text() + (out / "iptables" / "rulegen6.rules").read_text()
    nft = (out / "nftables" / "rulegen.nft").read_text()
    assert not re.search(r"-j (DROP|REJECT)", v4) and not re.search(r"counter (drop|reject)|jump \w+_\d", nft)
    assert f'rulegen:{SITE_SIDS[0] + 1}:log ' in v4 and "4448" not in v4 + nft  # site SIDs; alert-only stays out
    _tools()
    for target in firewall.TARGETS:
        with firewall.namespaces() as ns:
            firewall.load(target, ns["host"], out)
            assert _probe(ns, 4, "tcp", DROP_PORT, "outside") == "answered"
            assert _counted(target, ns["host"], "odd-plain-drop", "log") >= 1


@pytest.mark.parametrize("policy", ["log", "reject"])
def test_policy_is_proven_in_namespaces(tmp_path, policy):
    """The proof, told the policy, finds every pattern doing what the policy says (reject: refused at once)."""
    out = _build(tmp_path, "--policy", policy)
    _tools()
    kb = with_policy(load_knowledge([tmp_path / "k"]), policy)
    proofs = firewall.prove(kb, out, tmp_path / "work")
    assert proofs and all(p.proven for p in proofs), [p for p in proofs if not p.proven]
    if policy == "reject":
        v4 = (out / "iptables" / "rulegen.rules").read_text()
        assert "-j REJECT --reject-with tcp-reset" in v4 and "-j DROP" not in v4
        detail = next(p.detail for p in proofs if p.pattern == "odd-plain-drop" and p.target == "nftables")
        assert "refused in" in detail


def test_policy_leaves_the_lock_alone(tmp_path):
    """A deployment policy is not a rule change: --frozen passes, no rev moves (shipped knowledge)."""
    knowledge = copy_knowledge(tmp_path / "knowledge")
    lock = (knowledge / "article" / "rulegen.lock").read_text()
    result = run_rulegen("build", "--frozen", "--no-validate", "--policy", "reject", "-k", str(knowledge),
                         "-o", str(tmp_path / "out"))
    assert result.returncode == 0, result.stderr
    assert (knowledge / "article" / "rulegen.lock").read_text() == lock
    rules = (tmp_path / "out" / "iptables" / "rulegen.rules").read_text()
    assert "-j DROP" not in rules and "-j REJECT" in rules


def test_a_bad_policy_is_a_usage_error(tmp_path):
    result = run_rulegen("build", "--policy", "accept", "-o", str(tmp_path / "out"))
    assert result.returncode == 2 and "Invalid value for '--policy'" in result.stderr
    assert not (tmp_path / "out").exists()
    assert run_rulegen("selftest", "--policy", "block").returncode == 2


def test_a_broken_ipset_file_is_reported_by_line(tmp_path):
    path = tmp_path / "fw.ipset"
    path.write_text("create a hash:net family inet -exist\nadd a 10.0.0.0/33\nadd b 10.0.0.1\nadd a ::1\n")
    result = run_rulegen("validate", "--json", str(path))
    assert result.returncode == 1, result.stderr
    findings = json.loads(result.stdout)["files"][0]["findings"]
    assert {f["line"] for f in findings} == {2, 3, 4}
    if shutil.which("ipset") or Path("/usr/sbin/ipset").exists():
        need_root()
        assert any(f["engine"].startswith("ipset ") and f["line"] == 2 for f in findings)


@pytest.mark.parametrize("policy", ["log", "reject"])
def test_selftest_proves_the_shipped_knowledge_under_a_policy(policy):
    """`rulegen selftest --policy`: every pattern the firewalls express, on live traffic, answers as the
    policy says (UDP rejects included: the namespaces lift the kernel's ICMP error rate limit)."""
    _tools()
    result = run_rulegen("selftest", "-t", "iptables,nftables", "--policy", policy)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
    for target in firewall.TARGETS:
        assert re.search(rf"^{target}: fires: [1-9]\d* proven, 0 not proven, 0 skipped; "
                         rf"stays quiet: [1-9]\d* proven, 0 not proven, 0 skipped$", result.stdout, re.M)
    if policy == "log":
        assert "counted" in result.stdout and not re.search(r"(DROP|REJECT) counted", result.stdout)
