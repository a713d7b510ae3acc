"""Issue 4, Suricata: every expressed pattern's sid alerts on a capture of its pattern; normal traffic stays quiet.

The captures are built with scapy from each pattern's typed fields (rulegen.prove.captures), so a
new pattern in the knowledge is a new test case here without new code. All captures are replayed
once per session, one `suricata -r` per capture, in parallel.
"""

from __future__ import annotations

import ipaddress

import pytest
from conftest import need
from scapy.layers.inet import IP, TCP, UDP
from scapy.utils import rdpcap

from rulegen.build import plan_all
from rulegen.knowledge import default_knowledge_dir, load_knowledge
from rulegen.prove import captures
from rulegen.prove import suricata as prove_suricata

SHIPPED = load_knowledge([default_knowledge_dir()])
EXPRESSED = [p.pattern.id for p in plan_all(SHIPPED)["suricata"] if p.expressed]

# Priority-4 (informational) alerts that the normal-traffic capture is expected to raise, by pattern id.
# None today: the informational patterns that look like normal traffic either stay out of Suricata
# (src-dns-reply, src-linux-nat-traffic, first-dynamic-port-traffic) or match only the first
# direction of a flow (src-ntp-reply: the server's reply travels to_client in the client's flow).
EXPECTED_PRIORITY_4: set[str] = set()

# Patterns whose rule fires above priority 4 on normal traffic because the knowledge is wrong, with why.
# Remove an entry when the knowledge is fixed (the strict xfail below then reminds you).
KNOWLEDGE_DEFECTS: dict[str, str] = {}


@pytest.fixture(scope="session")
def replays(built, tmp_path_factory) -> dict[str, prove_suricata.Replay]:
    need("suricata")
    kb = load_knowledge([built.parent / "knowledge"])
    return prove_suricata.run(kb, built, tmp_path_factory.mktemp("prove-suricata"))


@pytest.fixture(scope="session")
def sids(built) -> dict[str, int]:
    return prove_suricata.expressed(built)


def test_every_expressed_pattern_is_a_case(sids):
    assert set(EXPRESSED) == set(sids)


@pytest.mark.parametrize("pattern_id", EXPRESSED)
def test_pattern_sid_alerts_on_its_capture(replays, sids, pattern_id):
    replay = replays[pattern_id]
    assert replay.error is None, replay.error
    sid = sids[pattern_id]
    seen = sorted({(a.sid, a.pattern) for a in replay.alerts})
    assert replay.count(sid) >= 1, f"sid {sid} ({pattern_id}) did not alert on {replay.pcap.name}; alerts: {seen}"


def _normal_alerts(replays, loud: bool) -> dict[str, list]:
    normal = replays[prove_suricata.NORMAL]
    assert normal.error is None, normal.error
    found: dict[str, list] = {}
    for alert in normal.alerts:
        if (alert.priority < prove_suricata.LOWEST_PRIORITY) == loud:
            found.setdefault(alert.pattern, []).append(alert)
    return found


def test_normal_traffic_priority_4_alerts_are_the_expected_ones(replays):
    assert set(_normal_alerts(replays, loud=False)) == EXPECTED_PRIORITY_4


def test_normal_traffic_above_priority_4_only_known_knowledge_defects(replays):
    loud = _normal_alerts(replays, loud=True)
    unexpected = {pid: [(a.sid, a.priority, a.src, a.dst) for a in alerts]
                  for pid, alerts in loud.items() if pid not in KNOWLEDGE_DEFECTS}
    assert not unexpected


@pytest.mark.xfail(bool(KNOWLEDGE_DEFECTS), strict=True,
                   reason="; ".join(f"{k}: {v}" for k, v in KNOWLEDGE_DEFECTS.items()))
def test_normal_traffic_raises_nothing_above_priority_4(replays):
    assert not _normal_alerts(replays, loud=True)


def test_judge_gives_a_proof_per_expressed_pattern_and_normal_traffic(replays, built, sids):
    proofs = prove_suricata.judge(replays, built)
    assert [p.pattern for p in proofs] == [*sids, prove_suricata.NORMAL]
    assert all(p.target == "suricata" and p.skipped is None for p in proofs)
    unproven = [(p.pattern, p.detail) for p in proofs if not p.proven and p.pattern != prove_suricata.NORMAL]
    assert not unproven
    normal = proofs[-1]
    assert normal.proven == (not _normal_alerts(replays, loud=True)), normal.detail


def test_prove_without_suricata_skips_every_proof(built, tmp_path, monkeypatch):
    monkeypatch.setenv("RULEGEN_DISABLE_ENGINES", "suricata")
    monkeypatch.delenv("RULEGEN_REQUIRE_ENGINES", raising=False)
    proofs = prove_suricata.prove(SHIPPED, built, tmp_path)
    assert len(proofs) == len(EXPRESSED) + 1
    assert all(not p.proven and p.skipped for p in proofs)


def test_captures_are_deterministic_with_correct_checksums(replays, tmp_path):
    """Rebuilding a capture gives the same bytes; every IP/TCP/UDP checksum is what scapy recomputes."""
    for replay in replays.values():
        if replay.name == prove_suricata.NORMAL:
            again = captures.normal_traffic().write(tmp_path / replay.pcap.name)
        else:
            pattern = next(p for p in SHIPPED.patterns if p.id == replay.name)
            again = captures.write(pattern, SHIPPED, tmp_path / replay.pcap.name)
        assert again.read_bytes() == replay.pcap.read_bytes(), replay.name
    for pcap in (replays[prove_suricata.NORMAL].pcap, replays["dns-axfr"].pcap, replays["snmp-community-public"].pcap):
        for packet in rdpcap(str(pcap)):
            fresh = packet.copy()
            for layer in (IP, TCP, UDP):
                if layer in fresh:
                    del fresh[layer].chksum
            assert bytes(fresh) == bytes(packet), f"{pcap.name}: {packet.summary()}"


def test_capture_carries_the_protocol_messages(replays):
    """Spot checks of the hand-written builders against the facts the rules look for."""
    def payloads(name: str, layer) -> list[bytes]:  # noqa: ANN001
        return [bytes(p[layer].payload) for p in rdpcap(str(replays[name].pcap)) if layer in p and p[layer].payload]

    assert b"USER anonymous\r\n" in payloads("ftp-anonymous-login", TCP)
    axfr = payloads("dns-axfr", TCP)[0]
    assert int.from_bytes(axfr[:2], "big") == len(axfr) - 2 and axfr.endswith(b"\x00\x00\xfc\x00\x01")
    assert payloads("powwow-opng-handshake", TCP)[0].startswith(b"OPNG")
    assert payloads("tftp-passwd-read", UDP)[0].startswith(b"\x00\x01passwd\x00")
    assert payloads("tftp-write", UDP)[0].startswith(b"\x00\x02")
    assert b"\x04\x06public" in payloads("snmp-community-public", UDP)[0]
    assert payloads("dhcp-rogue-offer", UDP)[0][236:243] == b"\x63\x82\x53\x63\x35\x01\x02"
    assert payloads("sunrpc-portmap-call-udp", UDP)[0][4:16] == bytes.fromhex("0000000000000002000186a0")
    assert payloads("netbios-ns-nbstat", UDP)[0][13:50] == b"CK" + b"A" * 30 + b"\x00\x00\x21\x00\x01"
    shell = rdpcap(str(replays["pcserver-root-shell"].pcap))
    assert any(p[TCP].sport == 600 and b"uid=0(root)" in bytes(p[TCP].payload) for p in shell if TCP in p)


def test_captures_use_the_documented_addresses():
    by_id = {p.id: p for p in SHIPPED.patterns}
    assert captures.endpoints(by_id["ssh-probe"], SHIPPED) == (captures.EXTERNAL, captures.HOME)
    assert captures.endpoints(by_id["smtp-outbound-direct"], SHIPPED) == (captures.HOME, captures.EXTERNAL)
    assert captures.endpoints(by_id["echo-udp-broadcast"], SHIPPED)[1] == captures.BROADCAST
    conducent = str(ipaddress.ip_network(SHIPPED.ip_lists["conducent-adservers"].addresses[0]).network_address)
    assert captures.endpoints(by_id["conducent-adserver-traffic"], SHIPPED) == (captures.HOME, conducent)
    assert captures.server_port(by_id["dns-udp-source-port-bypass"]) != 53
    assert captures.server_port(by_id["squid-proxy-probe"]) == 3128
