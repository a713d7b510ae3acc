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
BROADCAST = [pid for pid in EXPRESSED if next(p for p in SHIPPED.patterns if p.id == pid).dst_net.kind == "broadcast"]

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
        elif replay.name.endswith(prove_suricata.UNICAST):
            pattern = next(p for p in SHIPPED.patterns if p.id == replay.name.removesuffix(prove_suricata.UNICAST))
            again = captures.unicast_lookalike(pattern, SHIPPED).write(tmp_path / replay.pcap.name)
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


@pytest.mark.parametrize("pattern_id", BROADCAST)
def test_broadcast_rule_alerts_on_directed_and_limited_broadcasts_not_on_unicast(replays, sids, pattern_id):
    """Issue 13: a neighbour's directed broadcast (192.168.1.255) alerts as the limited one does; the same
    datagrams to one host (the port's unicast use) do not."""
    packets = rdpcap(str(replays[pattern_id].pcap))
    assert {p[IP].dst for p in packets} == set(captures.BROADCASTS)
    assert {p.dst for p in packets} == {"ff:ff:ff:ff:ff:ff"}
    sid = sids[pattern_id]
    alerted = {a.dst.rsplit(":", 1)[0] for a in replays[pattern_id].alerts if a.sid == sid}
    assert alerted == set(captures.BROADCASTS)
    unicast = replays[pattern_id + prove_suricata.UNICAST]
    assert unicast.error is None and unicast.alerts == [], unicast.alerts


def test_judge_fails_a_broadcast_rule_that_sees_only_the_limited_broadcast(replays, built, sids, tmp_path):
    """The proof is not vacuous: the old rule form (destination 255.255.255.255) misses the directed broadcast."""
    rules = (built / "suricata" / "rulegen.rules").read_text()
    line = next(r for r in rules.splitlines() if f"sid:{sids['rwho-broadcast']};" in r)
    old = line.replace("-> any 513", "-> 255.255.255.255 513").replace('ipv4.hdr; content:"|ff|"; offset:19; depth:1; ',
                                                                       "")
    assert old != line
    (tmp_path / "old.rules").write_text(old + "\n")
    config = prove_suricata.write_config(tmp_path)
    replay = prove_suricata.replay_one(need("suricata"), config, tmp_path / "old.rules",
                                       replays["rwho-broadcast"].pcap, tmp_path / "logs")
    replay.expect_dsts = captures.BROADCASTS
    proofs = prove_suricata.judge({"rwho-broadcast": replay, prove_suricata.NORMAL: replays[prove_suricata.NORMAL]},
                                  built)
    [proof] = [p for p in proofs if p.pattern == "rwho-broadcast"]
    assert replay.count(sids["rwho-broadcast"]) == 1
    assert not proof.proven and "missed 192.168.1.255" in proof.detail


def _smtp_session(wire, client: str, port: int, rcpt: bytes, answer: bytes) -> None:  # noqa: ANN001
    wire.tcp(client, captures.HOME, port, 25).conversation([
        (False, b"220 mx.example.net ESMTP\r\n"), (True, b"HELO client.example.com\r\n"),
        (False, b"250 mx.example.net\r\n"), (True, b"MAIL FROM:<someone@example.com>\r\n"),
        (False, b"250 OK\r\n"), (True, b"RCPT TO:" + rcpt + b"\r\n"), (False, answer),
        (True, b"QUIT\r\n"), (False, b"221 closing\r\n")])


# Relay refusals as other mail servers word them (not the Postfix text of rulegen's own capture), and answers
# that must not read as one.
RELAY_REFUSALS = {
    "sendmail": b"550 5.7.1 <x@example.org>... Relaying denied\r\n",
    "exchange": b"550 5.7.1 Unable to relay\r\n",
    "exim": b"550 relay not permitted\r\n",
    "multiline": b"554-5.7.1 This server does not\r\n554 5.7.1 relay for you\r\n",
}
NOT_REFUSALS = {
    "spam reject": b"550 5.7.1 Message rejected as spam\r\n",
    "unknown user": b"550 5.1.1 User unknown\r\n",
    "accepted": b"250 2.1.5 Recipient ok (will relay for you)\r\n",
}
RELAY_ROUTES = {"source route": b"<@mx.example.net:x@example.org>", "percent": b"<x%example.org@mx.example.net>",
                "bang": b"<example.org!x@mx.example.net>", "quoted": b'<"x@example.org"@mx.example.net>'}
NOT_ROUTES = {"plain": b"<bob@example.net>", "dsn": b"<bob@example.net> NOTIFY=FAILURE ORCPT=rfc822;bob@example.net",
              "null": b"<>"}


@pytest.mark.parametrize("pattern_id, sessions, expect", [
    ("smtp-relay-denied", {k: (b"<x@example.org>", v) for k, v in RELAY_REFUSALS.items()}, True),
    ("smtp-relay-denied", {k: (b"<x@example.org>", v) for k, v in NOT_REFUSALS.items()}, False),
    ("smtp-relay-route-rcpt", {k: (v, b"250 OK\r\n") for k, v in RELAY_ROUTES.items()}, True),
    ("smtp-relay-route-rcpt", {k: (v, b"250 OK\r\n") for k, v in NOT_ROUTES.items()}, False),
])
def test_smtp_relay_rules_on_sessions_written_apart_from_the_rules(built, sids, tmp_path, pattern_id, sessions,
                                                                    expect):
    """Issue 13: one session per wording, each from its own outside client: every relay refusal (or route) alerts
    once, and none of the look-alikes does."""
    need("suricata")
    wire = captures.Wire()
    clients = {}
    for index, (name, (rcpt, answer)) in enumerate(sessions.items()):
        clients[f"198.51.100.{index + 10}"] = name
        _smtp_session(wire, f"198.51.100.{index + 10}", 50000 + index, rcpt, answer)
    pcap = wire.write(tmp_path / "smtp.pcap")
    replay = prove_suricata.replay_one(need("suricata"), prove_suricata.write_config(tmp_path),
                                       built / "suricata" / "rulegen.rules", pcap, tmp_path / "logs")
    assert replay.error is None, replay.error
    sid = sids[pattern_id]
    hit = {clients[ip] for a in replay.alerts if a.sid == sid for ip in clients if ip in (a.src.split(":")[0],
                                                                                          a.dst.split(":")[0])}
    assert hit == (set(sessions) if expect else set()), replay.alerts
