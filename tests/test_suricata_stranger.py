"""Issue 11, Suricata, with traffic a stranger writes: busy ordinary peers raise nothing above informational, and
the sweeps of many hosts still fire, at the count the knowledge gives.

The packets are written here with scapy, independently of rulegen.prove.captures, and replayed by the real
Suricata against the full out/suricata/rulegen.rules of a build of the shipped knowledge, with HOME_NET set to
the knowledge's home set (what the rules file's header says they assume).
"""

from __future__ import annotations

import json
import subprocess

import pytest
from conftest import need
from scapy.utils import wrpcap
from stranger import Capture

from rulegen.knowledge import default_knowledge_dir, load_knowledge
from rulegen.model import Detect
from rulegen.prove.suricata import EVE_OUTPUT
from rulegen.validate.suricata import minimal_config

SHIPPED = load_knowledge([default_knowledge_dir()])
HOST_SWEEPS = [p for p in SHIPPED.patterns if p.detect is Detect.SWEEP and p.sweep.distinct == "dst_ip"]
INFORMATIONAL = 4  # eve's alert.severity is the rule's priority; 4 is the lowest
START = 1_750_000_000.0

OUTSIDE_MX, OUTSIDE_CLIENT, OUTSIDE_RUNNER, SCANNER = "198.51.100.25", "198.51.100.7", "198.51.100.60", "198.51.100.99"
HOME_MX, HOME_WEB, HOME_GIT = "10.1.2.25", "10.1.2.80", "10.1.2.22"


@pytest.fixture(scope="session")
def replay(built, tmp_path_factory):
    """Replay a Capture against the built rules; returns eve's alerts as (sid, severity, src, dst) tuples."""
    binary = need("suricata")
    folder = tmp_path_factory.mktemp("stranger")
    config = folder / "suricata.yaml"
    config.write_text(minimal_config(SHIPPED.home.addresses) + EVE_OUTPUT)
    rules = built / "suricata" / "rulegen.rules"

    def run(capture: Capture, name: str) -> list[tuple[int, int, str, str]]:
        logs = folder / name
        logs.mkdir()
        pcap = logs / f"{name}.pcap"
        wrpcap(str(pcap), capture.packets)
        result = subprocess.run([binary, "-c", str(config), "-r", str(pcap), "-S", str(rules), "-l", str(logs),
                                 "-k", "none"], capture_output=True, text=True, timeout=300)
        assert result.returncode == 0, result.stderr[-2000:]
        events = [json.loads(line) for line in (logs / "eve.json").read_text().splitlines() if line.strip()]
        return [(e["alert"]["signature_id"], e["alert"]["severity"], e["src_ip"], e["dest_ip"])
                for e in events if e.get("event_type") == "alert"]

    return run


@pytest.fixture(scope="session")
def sids(manifest) -> dict[str, int]:
    return {p["id"]: p["sid"] for p in manifest["patterns"] if p["coverage"]["suricata"]["expressed"]}


def mail_deliveries() -> Capture:
    """A mail provider delivering a dozen messages to the home MX within seconds, each to a local recipient."""
    capture = Capture(START)
    for n in range(12):
        capture.session(OUTSIDE_MX, HOME_MX, 41000 + n, 25, [
            (False, b"220 mx.example.net ESMTP Postfix\r\n"),
            (True, b"EHLO out-17.mail.example.com\r\n"),
            (False, b"250-mx.example.net\r\n250-SIZE 52428800\r\n250-STARTTLS\r\n250 8BITMIME\r\n"),
            (True, b"MAIL FROM:<news@example.com> SIZE=2048\r\n"), (False, b"250 2.1.0 Ok\r\n"),
            (True, b"RCPT TO:<carol@example.net>\r\n"), (False, b"250 2.1.5 Ok\r\n"),
            (True, b"DATA\r\n"), (False, b"354 End data with <CR><LF>.<CR><LF>\r\n"),
            (True, b"From: news@example.com\r\nTo: carol@example.net\r\nSubject: issue %d\r\n\r\nHello.\r\n.\r\n" % n),
            (False, b"250 2.0.0 Ok: queued as 4F3A%02d\r\n" % n),
            (True, b"QUIT\r\n"), (False, b"221 2.0.0 Bye\r\n")])
        capture.now += 0.8
    return capture


def web_fetches() -> Capture:
    """A browser or crawler fetching 25 files from the home web server, one connection each."""
    capture = Capture(START)
    for n in range(25):
        body = b"x" * (200 + n)
        capture.session(OUTSIDE_CLIENT, HOME_WEB, 52000 + n, 80, [
            (True, b"GET /static/file%02d.css HTTP/1.1\r\nHost: www.example.net\r\nUser-Agent: Mozilla/5.0\r\n"
                   b"Accept: */*\r\n\r\n" % n),
            (False, b"HTTP/1.1 200 OK\r\nContent-Type: text/css\r\nContent-Length: %d\r\n\r\n" % len(body) + body)])
        capture.now += 0.2
    return capture


def ssh_sessions() -> Capture:
    """A CI runner opening a dozen SSH connections to the home git server."""
    capture = Capture(START)
    for n in range(12):
        capture.session(OUTSIDE_RUNNER, HOME_GIT, 33000 + n, 22, [
            (True, b"SSH-2.0-OpenSSH_9.6\r\n"), (False, b"SSH-2.0-OpenSSH_9.2p1 Debian-2+deb12u3\r\n"),
            (True, bytes(range(64)) * 4), (False, bytes(range(64, 128)) * 4), (True, bytes(200))])
        capture.now += 1.5
    return capture


@pytest.mark.parametrize("name, traffic", [
    ("mail", mail_deliveries),
    ("web", web_fetches),
    ("ssh", ssh_sessions),
])
def test_busy_ordinary_peer_raises_nothing_above_informational(replay, name, traffic):
    alerts = replay(traffic(), name)
    loud = [a for a in alerts if a[1] < INFORMATIONAL]
    assert not loud, f"{name}: alerts above informational: {loud}"


@pytest.mark.parametrize("port", [22, 25])
def test_outside_source_probing_many_home_hosts_raises_the_sweep(replay, sids, port):
    pattern = next(p for p in HOST_SWEEPS if p.dst_ports[0].low == port and p.transport == "tcp")
    capture = Capture(START)
    for n in range(12):  # 12 home hosts within 60 s
        capture.syn(SCANNER, f"10.1.3.{20 + n}", 45000 + n, port)
        capture.now += 2
    alerts = replay(capture, f"sweep-{port}")
    assert any(a[0] == sids[pattern.id] and a[2] == SCANNER for a in alerts), alerts


def _sweep_capture(pattern, hosts: int) -> Capture:  # noqa: ANN001
    """One source reaching `hosts` distinct hosts on the pattern's port, spread over half its window, from
    the side its direction names (outside for inbound, home for internal)."""
    capture = Capture(START)
    source = SCANNER if pattern.src_net.kind == "external" else "10.1.4.5"
    port = pattern.dst_ports[0].low
    for n in range(hosts):
        if pattern.transport == "tcp":
            capture.syn(source, f"10.1.5.{10 + n}", 46000 + n, port)
        else:
            capture.datagram(source, f"10.1.5.{10 + n}", 46000 + n, port, b"NQ")
        capture.now += pattern.sweep.seconds / (2 * hosts)
    return capture


@pytest.mark.parametrize("pattern", HOST_SWEEPS, ids=lambda p: p.id)
def test_host_sweep_fires_at_the_knowledge_count(replay, sids, pattern):
    """Measured firing point: quiet with count - 1 distinct hosts, one alert with count hosts."""
    below = replay(_sweep_capture(pattern, pattern.sweep.count - 1), f"{pattern.id}-below")
    at = replay(_sweep_capture(pattern, pattern.sweep.count), f"{pattern.id}-at")
    assert [a for a in below if a[0] == sids[pattern.id]] == []
    assert len([a for a in at if a[0] == sids[pattern.id]]) == 1, at
