"""Issue 14, with traffic a stranger writes: the services the current pack is about, used normally from inside, raise
nothing above informational with the full rules of every shipped pack.

An application talks RESP to its own Redis (INFO, SET/GET, CONFIG GET), memcached text get/set, a home admin runs
`docker ps` against a home host's Docker API, a media server announces itself over SSDP and a laptop searches, and
a laptop syncs its clock with an outside NTP server. The packets are written here with scapy, independently of
rulegen.prove.captures, and replayed by the real Suricata against out/suricata/rulegen.rules of a build of the whole
shipped knowledge (whatever packs it holds); the same sessions as Zeek JSON logs go through `rulegen hunt` with
the build's Sigma rules.
"""

from __future__ import annotations

import json
import subprocess

from conftest import need
from scapy.layers.ntp import NTP
from scapy.utils import wrpcap
from stranger import Capture
from test_hunt_logs import _hunt

from rulegen.knowledge import default_knowledge_dir, load_knowledge
from rulegen.prove import suricata as prove_suricata
from rulegen.validate.suricata import minimal_config

SHIPPED = load_knowledge([default_knowledge_dir()])
INFORMATIONAL = 4  # eve's alert.severity is the rule's priority; 4 is the lowest
START = 1_760_000_000.0
APP, CACHE, DOCKER, MEDIA, LAPTOP = "10.20.0.15", "10.20.0.16", "10.20.0.17", "10.20.0.18", "10.20.0.19"
TIME_SERVER = "198.51.100.123"
SSDP = "239.255.255.250"


def bulk(*words: str) -> bytes:
    return f"*{len(words)}\r\n".encode() + b"".join(f"${len(w)}\r\n{w}\r\n".encode() for w in words)


def home_services() -> Capture:
    cap = Capture(START)
    cap.session(APP, CACHE, 40100, 6379, [
        (True, bulk("HELLO", "3")), (False, b"%7\r\n$6\r\nserver\r\n$5\r\nredis\r\n$7\r\nversion\r\n$6\r\n7.2.4\r\n"
                                            b"$5\r\nproto\r\n:3\r\n$2\r\nid\r\n:12\r\n$4\r\nmode\r\n$10\r\nstandalone\r\n"
                                            b"$4\r\nrole\r\n$6\r\nmaster\r\n$7\r\nmodules\r\n*0\r\n"),
        (True, bulk("INFO", "memory")), (False, b"$40\r\n# Memory\r\nused_memory:1048576\r\nmaxmemory:0\r\n\r\n"),
        (True, bulk("SET", "cart:7781", '{"items":3}', "EX", "900")), (False, b"+OK\r\n"),
        (True, bulk("GET", "cart:7781")), (False, b'$11\r\n{"items":3}\r\n'),
        (True, bulk("CONFIG", "GET", "maxmemory-policy")),
        (False, b"*2\r\n$16\r\nmaxmemory-policy\r\n$11\r\nallkeys-lru\r\n"),
        (True, bulk("CONFIG", "GET", "dir")), (False, b"*2\r\n$3\r\ndir\r\n$14\r\n/var/lib/redis\r\n"),
        (True, bulk("PING")), (False, b"+PONG\r\n"),
    ])
    cap.session(APP, CACHE, 40101, 11211, [
        (True, b"set user:7781:profile 0 600 17\r\n{\"name\":\"carol\"}\r\n"), (False, b"STORED\r\n"),
        (True, b"get user:7781:profile\r\n"),
        (False, b"VALUE user:7781:profile 0 17\r\n{\"name\":\"carol\"}\r\nEND\r\n"),
        (True, b"delete user:7781:profile\r\n"), (False, b"DELETED\r\n"),
    ])
    listing = b'[{"Id":"4c01db0b339c","Names":["/db"],"Image":"postgres:16","State":"running","Status":"Up 3 days"}]'
    cap.session(LAPTOP, DOCKER, 40102, 2375, [
        (True, b"GET /_ping HTTP/1.1\r\nHost: 10.20.0.17:2375\r\nUser-Agent: Docker-Client/25.0.3 (linux)\r\n\r\n"),
        (False, b"HTTP/1.1 200 OK\r\nApi-Version: 1.44\r\nContent-Length: 2\r\n\r\nOK"),
        (True, b"GET /v1.44/containers/json HTTP/1.1\r\nHost: 10.20.0.17:2375\r\n"
               b"User-Agent: Docker-Client/25.0.3 (linux)\r\n\r\n"),
        (False, b"HTTP/1.1 200 OK\r\nApi-Version: 1.44\r\nContent-Type: application/json\r\nContent-Length: "
         + str(len(listing)).encode() + b"\r\n\r\n" + listing),
    ])
    cap.datagram(MEDIA, SSDP, 1900, 1900, ttl=1, data=
                 b"NOTIFY * HTTP/1.1\r\nHOST: 239.255.255.250:1900\r\nCACHE-CONTROL: max-age=1800\r\n"
                 b"LOCATION: http://10.20.0.18:8200/rootDesc.xml\r\nNT: urn:schemas-upnp-org:device:MediaServer:1\r\n"
                 b"NTS: ssdp:alive\r\nSERVER: 6.1.0 DLNADOC/1.50 UPnP/1.0 MiniDLNA/1.3.3\r\n"
                 b"USN: uuid:4d696e69-444c-164e-9d41-001132aabbcc::urn:schemas-upnp-org:device:MediaServer:1\r\n\r\n")
    cap.datagram(LAPTOP, SSDP, 55123, 1900, ttl=1, data=
                 b"M-SEARCH * HTTP/1.1\r\nHOST: 239.255.255.250:1900\r\nMAN: \"ssdp:discover\"\r\nMX: 1\r\n"
                 b"ST: urn:schemas-upnp-org:device:MediaServer:1\r\nUSER-AGENT: Linux/6.1 UPnP/1.1 VLC/3.0.20\r\n\r\n")
    cap.datagram(MEDIA, LAPTOP, 1900, 55123,
                 b"HTTP/1.1 200 OK\r\nCACHE-CONTROL: max-age=1800\r\nEXT:\r\nLOCATION: http://10.20.0.18:8200/rootDesc.xml\r\n"
                 b"SERVER: 6.1.0 DLNADOC/1.50 UPnP/1.0 MiniDLNA/1.3.3\r\n"
                 b"ST: urn:schemas-upnp-org:device:MediaServer:1\r\n"
                 b"USN: uuid:4d696e69-444c-164e-9d41-001132aabbcc::urn:schemas-upnp-org:device:MediaServer:1\r\n\r\n")
    now = START + 2_208_988_800
    for sport in (123, 38011):  # ntpd keeps port 123; chrony and systemd-timesyncd send from an ephemeral port
        cap.datagram(LAPTOP, TIME_SERVER, sport, 123, bytes(NTP(version=4, mode=3, ref=0, orig=0, recv=0, sent=now)))
        cap.datagram(TIME_SERVER, LAPTOP, 123, sport, bytes(NTP(version=4, mode=4, stratum=2, ref=now - 30, orig=now,
                                                                 recv=now + 0.011, sent=now + 0.012)))
    return cap


EVE = prove_suricata.EVE_OUTPUT + "        - http\n        - flow\n"


def test_home_services_raise_nothing_above_informational_in_suricata(built, tmp_path):
    binary = need("suricata")
    rules = built / "suricata" / "rulegen.rules"
    loaded = sum(1 for line in rules.read_text().splitlines() if line.startswith("alert "))
    assert loaded == len(prove_suricata.expressed(built)) > 0  # every rule of the build, of every pack
    pcap = tmp_path / "home-services.pcap"
    wrpcap(str(pcap), home_services().packets)
    config = tmp_path / "suricata.yaml"
    config.write_text(minimal_config(SHIPPED.home.addresses) + EVE)
    result = subprocess.run([binary, "-c", str(config), "-r", str(pcap), "-S", str(rules), "-l", str(tmp_path),
                             "-k", "none", "--runmode", "single"], capture_output=True, text=True, timeout=180)
    assert result.returncode == 0, result.stderr
    events = [json.loads(line) for line in (tmp_path / "eve.json").read_text().splitlines() if line.strip()]
    loud = [(e["alert"]["signature"], e["src_ip"], e["dest_ip"], e.get("dest_port"))
            for e in events if e["event_type"] == "alert" and e["alert"]["severity"] < INFORMATIONAL]
    assert not loud
    # the sessions reached the engine and were parsed: the Docker API's HTTP, and a flow per service port
    urls = {e["http"].get("url") for e in events if e["event_type"] == "http"}
    assert "/v1.44/containers/json" in urls
    ports = {e.get("dest_port") for e in events if e["event_type"] == "flow"}
    assert {6379, 11211, 2375, 1900, 123} <= ports


def test_home_services_raise_nothing_in_zeek_logs(built, tmp_path):
    """The same sessions as Zeek records them (conn.log, http.log): the Sigma rules of the build stay quiet."""
    def conn(uid: str, src: str, sport: int, dst: str, dport: int, proto: str, service: str | None) -> dict:
        row = {"ts": START, "uid": uid, "id.orig_h": src, "id.orig_p": sport, "id.resp_h": dst, "id.resp_p": dport,
               "proto": proto, "conn_state": "SF" if proto == "tcp" else "S0", "local_orig": True,
               "history": "ShADadFf" if proto == "tcp" else "D", "orig_pkts": 8, "resp_pkts": 8}
        return {**row, "service": service} if service else row

    rows = [conn("CRedis1", APP, 40100, CACHE, 6379, "tcp", "redis"),
            conn("CMemc1", APP, 40101, CACHE, 11211, "tcp", None),
            conn("CDock1", LAPTOP, 40102, DOCKER, 2375, "tcp", "http"),
            conn("CSsdp1", MEDIA, 1900, SSDP, 1900, "udp", None),
            conn("CSsdp2", LAPTOP, 55123, SSDP, 1900, "udp", None),
            conn("CNtp1", LAPTOP, 38011, TIME_SERVER, 123, "udp", "ntp")]
    http = [{"ts": START, "uid": "CDock1", "id.orig_h": LAPTOP, "id.orig_p": 40102, "id.resp_h": DOCKER,
             "id.resp_p": 2375, "trans_depth": n, "method": "GET", "host": "10.20.0.17:2375", "uri": uri,
             "version": "1.1", "user_agent": "Docker-Client/25.0.3 (linux)", "status_code": 200}
            for n, uri in ((1, "/_ping"), (2, "/v1.44/containers/json"))]
    for name, records in (("conn.log", rows), ("http.log", http)):
        (tmp_path / name).write_text("".join(json.dumps(r) + "\n" for r in records))
    code, alerts, err = _hunt(built / "sigma", tmp_path / "conn.log", tmp_path / "http.log", level="low")
    assert code == 0, json.dumps(alerts) + err
    assert not [a["rule"]["title"] for a in alerts if a["rule"]["level"] != "informational"]
