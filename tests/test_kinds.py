"""Issue 14's match kinds (content with distance/within, http, ntp, dns qtype ANY over udp) and the `samples` key.

The test knowledge tests/data/kinds holds one pattern per kind and form; each test reads its patterns, so a pattern
added there is tested without new code. The shipped packs' patterns of these kinds are proven by `rulegen selftest`
(tests/test_selftest.py). Real engines: Suricata 7 loads and replays the rules, pySigma converts the Sigma rules,
`rulegen hunt` runs them over Zeek JSON logs.
"""

from __future__ import annotations

import dataclasses
import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml
from conftest import need, run_rulegen
from test_hunt_logs import _hunt

from rulegen.build import build
from rulegen.knowledge import load_knowledge
from rulegen.model import Response
from rulegen.prove import captures
from rulegen.prove import sigma as prove_sigma
from rulegen.prove import suricata as prove_suricata
from rulegen.prove.runner import run_selftest
from rulegen.render import default_templates_dir
from rulegen.targets import firewall
from rulegen.targets import sigma as sigma_target
from rulegen.validate.suricata import minimal_config

FIXTURE = Path(__file__).parent / "data" / "kinds"
KB = load_knowledge([FIXTURE])
PATTERNS = {p.id: p for p in KB.patterns}
SIGMA_KINDS = ("http", "dns")  # the kinds with a Sigma form (an http header Zeek does not log excepted)
SIGMA_PATTERNS = sorted(p.id for p in KB.patterns if sigma_target.plan(p, KB).expressed)


def _copy(dest: Path) -> Path:
    """A copy of the test knowledge: a build writes its lock next to it."""
    shutil.copytree(FIXTURE, dest)
    return dest


@pytest.fixture(scope="module")
def work(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("kinds")


@pytest.fixture(scope="module")
def out(work) -> Path:
    knowledge = _copy(work / "knowledge")
    build([knowledge], default_templates_dir(), work / "out", ["suricata", "sigma", "iptables", "nftables"])
    return work / "out"


@pytest.fixture(scope="module")
def replays(out, work) -> dict:
    need("suricata")
    return prove_suricata.run(KB, out, work / "suricata")


@pytest.fixture(scope="module")
def sids(out) -> dict[str, int]:
    return prove_suricata.expressed(out)


def _rule(out: Path, sid: int) -> str:
    return next(line for line in (out / "suricata" / "rulegen.rules").read_text().splitlines()
                if f"sid:{sid};" in line)


# --- what each kind compiles to --------------------------------------------------------------------------------

SURICATA = {
    "kinds-redis-config-set-dir": 'flow:established,to_server; content:"CONFIG"; nocase; fast_pattern; '
                                  'content:"SET"; nocase; distance:1; within:12; content:"dir"; nocase; distance:1; '
                                  'within:12;',
    "kinds-docker-create": 'flow:established,to_server; http.method; bsize:4; content:"POST"; http.uri; '
                           'content:"/containers/create"; fast_pattern;',
    "kinds-docker-mozi-agent": 'http.method; bsize:3; content:"GET"; http.uri; content:"/version"; fast_pattern; '
                               'startswith; http.request_header; content:"User-Agent: "; nocase; startswith; '
                               'content:"Mozi"; nocase; distance:0;',
    "kinds-docker-ping-exact": 'urilen:6; http.uri; content:"/_ping"; fast_pattern;',
    "kinds-docker-registry-auth": 'http.uri; content:"/images/create"; fast_pattern; http.request_header; '
                                  'content:"X-Registry-Auth:"; nocase; startswith;',
    "kinds-web-encoded-traversal": 'http.uri.raw; content:"/.%2e/"; fast_pattern;',
    "kinds-ntp-monlist": 'flow:to_server; byte_test:1,=,7,0,bitmask 0x87; pcre:"/^.{3}[\\x14\\x2a]/s";',
    "kinds-ntp-readvar": "byte_test:1,=,6,0,bitmask 0x07; byte_test:1,=,2,1,bitmask 0x9f;",
    "kinds-ntp-control": "byte_test:1,=,6,0,bitmask 0x07; byte_test:1,=,0,1,bitmask 0x80;",
    "kinds-dns-any-udp": 'udp $EXTERNAL_NET any -> $HOME_NET 53 (msg:"RULEGEN DOS DNS ANY query over UDP from '
                         'outside"; flow:to_server; content:"|00 00 ff 00 01|"; offset:12;',
}


def test_every_test_pattern_has_its_expected_rule_text():
    assert set(SURICATA) == set(PATTERNS)


@pytest.mark.parametrize("pattern_id", sorted(PATTERNS))
def test_suricata_rule_text(out, sids, pattern_id):
    assert SURICATA[pattern_id] in _rule(out, sids[pattern_id])


def test_suricata_loads_the_rules(out, work):
    """The real engine, not only the build's validation: `suricata -T` with the knowledge's HOME_NET."""
    binary = need("suricata")
    config = work / "t.yaml"
    config.write_text(minimal_config(KB.home.addresses))
    result = subprocess.run([binary, "-T", "-c", str(config), "-S", str(out / "suricata" / "rulegen.rules"),
                             "-l", str(work)], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr + result.stdout


@pytest.mark.parametrize("pattern_id", sorted(PATTERNS))
def test_sigma_form_or_the_reason(out, pattern_id):
    """http (with a header Zeek logs) and dns become Sigma rules; ntp and content say why not."""
    manifest = json.loads((out / "manifest.json").read_text())
    cover = next(p for p in manifest["patterns"] if p["id"] == pattern_id)["coverage"]["sigma"]
    pattern = PATTERNS[pattern_id]
    zeek_header = pattern.match.http_header in (None, "User-Agent", "Host", "Referer")
    if pattern.match.kind in SIGMA_KINDS and zeek_header:
        assert cover["expressed"], cover
    else:
        assert not cover["expressed"] and len(cover["reason"]) > 40, cover
    if pattern.match.kind == "ntp":
        assert "modes 0-5" in cover["reason"]
    if pattern.match.kind == "http" and not zeek_header:
        assert "User-Agent, Host and Referer" in cover["reason"]


def test_sigma_http_rule(out):
    text = (out / "sigma" / "zeek_http_kinds_docker_mozi_agent.yml").read_text()
    assert "    product: zeek\n    service: http\n" in text
    assert "        method: GET\n        uri|startswith: '/version'\n        user_agent|contains: Mozi\n" in text


WILDCARD_SITE = """
entries:
  - id: lab-wildcards
    table: destination
    ports: [8443]
    protocols: [tcp, udp]
    service: lab
    title: Lab appliance whose URI and SNMP community hold Sigma wildcard characters
    description:
      en: A lab appliance with a query-string URI and a starred SNMP community, for literal Sigma values.
    references: [https://wiki.example.com/lab/appliance]
    patterns:
      - id: lab-wildcards-uri
        title: Language file request with a query string from outside
        category: EXPLOIT
        direction: inbound
        transport: tcp
        dst_ports: [8443]
        detect: payload
        match:
          http: {uri: "/remote/fgt_lang?lang=", uri_match: contains}
        severity: high
        classtype: web-application-attack
        response: alert
        false_positives: Unlikely from outside.
      - id: lab-wildcards-community
        title: SNMP request with the starred lab community from outside
        category: POLICY
        direction: inbound
        transport: udp
        dst_ports: [8443]
        detect: payload
        match:
          snmp: {community: "lab*1?"}
        severity: medium
        classtype: policy-violation
        response: alert
        false_positives: Unlikely from outside.
"""


def test_sigma_values_are_literal_and_pass_sigmahq(tmp_path):
    """A `?` or `*` in a URI or an SNMP community is no Sigma wildcard: the rule (an anchored `|re`, so SigmaHQ's
    escaped_wildcard check has nothing to flag) builds validated clean and, in `rulegen hunt`, matches the value
    as written and not a URI with another character where the `?` stands."""
    site = tmp_path / "site"
    site.mkdir()
    (site / "lab.yaml").write_text(WILDCARD_SITE)
    out = tmp_path / "out"
    result = run_rulegen("build", "-k", "@shipped", "-k", str(site), "-t", "sigma", "-o", str(out))
    assert result.returncode == 0, result.stdout + result.stderr
    rule = (out / "sigma" / "zeek_http_lab_wildcards_uri.yml").read_text()
    assert "uri|re: '/remote/fgt_lang\\?lang='" in rule, rule
    base = {"ts": 1700000000.0, "id.orig_h": "198.51.100.7", "id.orig_p": 40000, "id.resp_h": "192.168.1.10",
            "id.resp_p": 8443, "trans_depth": 1, "method": "GET", "version": "1.1", "status_code": 200}
    rows = [{**base, "uid": "CLit", "uri": "/remote/fgt_lang?lang=/../../../dev/cmdb/sslvpn_websession"},
            {**base, "uid": "CNot", "uri": "/remote/fgt_langXlang=/../../../dev/cmdb/sslvpn_websession"}]
    (tmp_path / "http.log").write_text("".join(json.dumps(r) + "\n" for r in rows))
    _, alerts, err = _hunt(out / "sigma", tmp_path / "http.log", level="low")
    hits = [a for a in alerts if "Language File" in a["rule"]["title"]]
    assert len(hits) == 1 and "CLit" in json.dumps(hits[0]), json.dumps(alerts) + err


@pytest.mark.parametrize("pattern_id", sorted(PATTERNS))
def test_firewalls_say_why_not(pattern_id):
    """A packet filter expresses no payload match: with a drop response (past the alert-only reason) each kind
    says what a packet filter lacks."""
    plan = firewall.plan(dataclasses.replace(PATTERNS[pattern_id], response=Response.DROP), KB)
    expected = {"content": "reassembled TCP stream", "http": "HTTP request parsed", "ntp": "@th expressions",
                "dns": "a dns match"}[PATTERNS[pattern_id].match.kind]
    assert not plan.expressed and expected in plan.reason, plan.reason


# --- proofs ----------------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def suricata_proofs(replays, out) -> dict:
    return {(p.pattern, p.side): p for p in prove_suricata.judge(replays, out)}


@pytest.fixture(scope="module")
def sigma_proofs(out, work) -> dict:
    return {(p.pattern, p.side): p for p in prove_sigma.prove(KB, out, work / "sigma")}


@pytest.mark.parametrize("side", ["fires", "quiet"])
@pytest.mark.parametrize("pattern_id", sorted(PATTERNS))
def test_suricata_proofs(suricata_proofs, pattern_id, side):
    proof = suricata_proofs[(pattern_id, side)]
    assert proof.proven, proof.detail


@pytest.mark.parametrize("side", ["fires", "quiet"])
@pytest.mark.parametrize("pattern_id", SIGMA_PATTERNS)
def test_sigma_proofs(sigma_proofs, pattern_id, side):
    proof = sigma_proofs[(pattern_id, side)]
    assert proof.proven, proof.detail


def test_normal_traffic_stays_quiet(suricata_proofs, sigma_proofs):
    for proofs in (suricata_proofs, sigma_proofs):
        proof = proofs[(prove_suricata.NORMAL, "quiet")]
        assert proof.proven, proof.detail


def _payloads(pcap: Path) -> list[bytes]:
    """The TCP and UDP payloads of a capture, in order."""
    from scapy.all import TCP, UDP, rdpcap

    return [data for p in rdpcap(str(pcap)) for layer in (TCP, UDP) if layer in p
            if (data := bytes(p[layer].payload))]


def test_samples_are_in_the_captures(replays):
    """Each fires sample is in the fires capture, each quiet sample in the quiet capture, as its own flow."""
    entries = yaml.safe_load((FIXTURE / "kinds.yaml").read_text())["entries"]
    written = sum(len(p.get("samples", {}).get(side, [])) for e in entries for p in e["patterns"]
                  for side in ("fires", "quiet"))
    assert written and sum(len(p.samples.fires) + len(p.samples.quiet) for p in KB.patterns) == written
    for pattern in KB.patterns:
        for name, samples in ((pattern.id, pattern.samples.fires),
                              (pattern.id + prove_suricata.QUIET, pattern.samples.quiet)):
            payloads = _payloads(replays[name].pcap)
            assert all(sample in payloads for sample in samples), name


def test_captures_carry_real_messages(replays):
    """The derived messages: the content items joined with their distances, a whole HTTP request, an ntpdc monlist
    request, an ANY query."""
    from scapy.all import DNS, NTP, rdpcap

    def payloads(name: str) -> list[bytes]:
        return _payloads(replays[name].pcap)

    assert b"CONFIG SET dir\r\n" in payloads("kinds-redis-config-set-dir")
    create = payloads("kinds-docker-create")
    assert any(p.startswith(b"POST /v1.41/containers/create HTTP/1.1\r\nHost: ") for p in create)
    assert payloads("kinds-ntp-monlist")[0] == bytes.fromhex("1700032a") + bytes(44)
    assert payloads("kinds-ntp-readvar")[0][:4] == bytes.fromhex("16020001")
    [query, _] = [p for p in rdpcap(str(replays["kinds-dns-any-udp"].pcap)) if DNS in p]
    assert query[DNS].qd[0].qtype == 255
    sync = [p for p in rdpcap(str(replays["kinds-ntp-monlist" + prove_suricata.QUIET].pcap)) if NTP in p]
    assert any(p[NTP].mode == 3 for p in sync) and any(p[NTP].mode == 4 for p in sync)


# The rule a careless author writes (the old-rule style test of issue 11): each must alert on the quiet capture of
# the real pattern, so the quiet proof can fail. (pattern, what to cut from the rule or (old, new))
SLOPPY = [
    ("kinds-redis-config-set-dir", "within:12; "),  # three words anywhere in the segment
    ("kinds-docker-create", 'http.method; bsize:4; content:"POST"; '),  # any method
    ("kinds-docker-mozi-agent", ('http.request_header; content:"User-Agent: "; nocase; startswith;',
                                 'http.header; content:"User-Agent: "; nocase;')),  # the value in any header
    ("kinds-docker-ping-exact", "urilen:6; "),  # a URI that only contains /_ping
    ("kinds-docker-registry-auth", 'http.request_header; content:"X-Registry-Auth:"; nocase; startswith; '),
    ("kinds-ntp-monlist", "byte_test:1,=,7,0,bitmask 0x87; "),  # byte 3 of any mode
    ("kinds-ntp-readvar", "byte_test:1,=,6,0,bitmask 0x07; "),  # byte 1 of any mode
    ("kinds-ntp-control", "byte_test:1,=,6,0,bitmask 0x07; "),  # any mode with byte 1 < 128
]


@pytest.mark.parametrize(("pattern_id", "cut"), SLOPPY, ids=[s[0] for s in SLOPPY])
def test_quiet_proof_fails_a_sloppy_rule(out, replays, sids, work, pattern_id, cut):
    sid = sids[pattern_id]
    rule = _rule(out, sid)
    old, new = cut if isinstance(cut, tuple) else (cut, "")
    assert old in rule
    sloppy = rule.replace(old, new)
    folder = work / f"sloppy-{pattern_id}"
    folder.mkdir()
    (folder / "sloppy.rules").write_text(sloppy + "\n")
    config = prove_suricata.write_config(folder, KB)
    name = pattern_id + prove_suricata.QUIET
    replay = prove_suricata.replay_one(need("suricata"), config, folder / "sloppy.rules", replays[name].pcap,
                                       folder / "logs")
    replay.shows = replays[name].shows
    assert replay.error is None
    assert replay.count(sid), f"the sloppy rule stayed quiet too: {sloppy}"
    fires = prove_suricata.replay_one(need("suricata"), config, folder / "sloppy.rules", replays[pattern_id].pcap,
                                      folder / "logs-fires")
    assert fires.count(sid)  # it still fires: only the quiet proof tells it apart
    proofs = prove_suricata.judge({pattern_id: fires, name: replay, prove_suricata.NORMAL: replays["normal-traffic"]},
                                  out)
    quiet = next(p for p in proofs if p.pattern == pattern_id and p.side == "quiet")
    assert not quiet.proven and f"sid {sid} alerted" in quiet.detail


def test_a_traversal_uri_needs_the_raw_buffer(out, replays, sids, work):
    """The normalized http.uri decodes %2e and resolves dot segments: a rule on it misses the attack the raw buffer
    sees, so the fires proof would fail."""
    sid = sids["kinds-web-encoded-traversal"]
    rule = _rule(out, sid)
    assert "http.uri.raw;" in rule
    folder = work / "normalized"
    folder.mkdir()
    (folder / "normalized.rules").write_text(rule.replace("http.uri.raw;", "http.uri;") + "\n")
    config = prove_suricata.write_config(folder, KB)
    replay = prove_suricata.replay_one(need("suricata"), config, folder / "normalized.rules",
                                       replays["kinds-web-encoded-traversal"].pcap, folder / "logs")
    assert replay.error is None and replay.count(sid) == 0
    assert replays["kinds-web-encoded-traversal"].count(sid) >= 2  # the raw rule: derived request and sample


# --- samples that do not do what they say fail the proofs ---------------------------------------------------------

WRONG_SAMPLES = """        samples:
          fires:
            - text: "*2\\r\\n$3\\r\\nGET\\r\\n$3\\r\\ndir\\r\\n"
          quiet:
            - text: "CONFIG SET dir /tmp\\r\\n"
"""


def test_wrong_samples_fail_the_suricata_proofs(tmp_path):
    need("suricata")
    knowledge = _copy(tmp_path / "knowledge")
    path = knowledge / "kinds.yaml"
    text = path.read_text()
    start = text.index("        samples:\n", text.index("id: kinds-redis-config-set-dir"))
    end = text.index("        severity:", start)
    path.write_text(text[:start] + WRONG_SAMPLES + text[end:])
    proofs, _ = run_selftest([knowledge], default_templates_dir(), ["suricata"])
    fires, quiet = (next(p for p in proofs if p.pattern == "kinds-redis-config-set-dir" and p.side == side)
                    for side in ("fires", "quiet"))
    assert not fires.proven and "missed fires sample 1" in fires.detail
    assert not quiet.proven and "alerted" in quiet.detail and "quiet sample 1" in quiet.detail


def test_wrong_http_sample_fails_the_sigma_proof(tmp_path):
    """A quiet sample that is the attack itself: the http.log row made from it matches the Sigma rule."""
    knowledge = _copy(tmp_path / "knowledge")
    path = knowledge / "kinds.yaml"
    text = path.read_text()
    quiet = '            - text: "GET /v1.41/containers/json HTTP/1.1'
    assert quiet in text
    path.write_text(text.replace(quiet, '            - text: "POST /containers/create HTTP/1.1'))
    proofs, _ = run_selftest([knowledge], default_templates_dir(), ["sigma"])
    proof = next(p for p in proofs if p.pattern == "kinds-docker-create" and p.side == "quiet")
    assert not proof.proven and "http-quiet-sample-1" in proof.detail


# --- loader errors ---------------------------------------------------------------------------------------------

# (text in the test knowledge, its replacement, the error's words); the error names the replaced line
BAD = [
    ('{text: "SET", nocase: true, distance: 1, within: 12}', '{text: "SET", nocase: true, distance: 1, within: 2}',
     "within 2 is shorter than the content (3 bytes)"),
    ('- {text: "CONFIG", nocase: true}', '- {text: "CONFIG", nocase: true, distance: 2}',
     "the first content item has none"),
    ('{text: "dir", nocase: true, distance: 1, within: 12}', '{text: "dir", nocase: true, offset: 4, within: 12}',
     "either absolute (offset) or relative to the previous item (within)"),
    ("method: POST, uri: /containers/create", "method: post, uri: /containers/create",
     "'method' must be an uppercase HTTP method"),
    ("http: {uri: /_ping, uri_match: equals}", "http: {uri_match: equals}", "needs at least one of 'method'"),
    ("uri_match: startswith", "uri_match: regex", "'uri_match' must be one of contains, startswith, equals"),
    ("http: {uri: /_ping, uri_match: equals}", "http: {method: GET, uri_match: equals}",
     "'uri_match' says how to compare 'uri', which is missing"),
    ("uri: /containers/create}", 'uri: "/containers/create now"}', "'uri' must be 1-1024 printable ASCII"),
    ("name: X-Registry-Auth", 'name: "X Registry"', "is not an HTTP token"),
    ("ntp: {mode: 6}", "ntp: {mode: 9}", "'mode' must be between 0 and 7"),
    ("ntp: {mode: 7, request: monlist}", "ntp: {mode: 6, request: monlist}", "monlist is a mode 7 request, not mode 6"),
    ("ntp: {mode: 6, request: readvar}", "ntp: {mode: 6, request: peers}", "'request' must be one of monlist, readvar"),
    ("        samples:\n          fires:\n            - hex: \"17",
     "        samples:\n          fire:\n            - hex: \"17", "unknown key 'fire' in samples"),
    ('            - hex: "1b 00', '            - hex: "1z 00', "'hex' must be pairs of hex digits"),
    ('            - text: "config set dir /root/.ssh\\r\\n"', "            - {}",
     "a sample needs exactly one of 'text' or 'hex'"),
    ("          ntp: {mode: 6}\n", "          ntp: {mode: 6}\n        samples: {quiet: []}\n",
     "'quiet' must not be an empty list"),
]


@pytest.mark.parametrize(("old", "new", "words"), BAD, ids=[b[2][:40] for b in BAD])
def test_loader_errors_name_file_and_line(tmp_path, old, new, words):
    knowledge = _copy(tmp_path / "knowledge")
    path = knowledge / "kinds.yaml"
    text = path.read_text()
    assert text.count(old) >= 1, old
    changed = text.replace(old, new, 1)
    path.write_text(changed)
    first_change = next(i for i, (a, b) in enumerate(zip(text, changed, strict=False)) if a != b)
    line = changed[:first_change].count("\n") + 1
    result = run_rulegen("build", "-k", str(knowledge), "--out", str(tmp_path / "out"))
    assert result.returncode == 2, result.stderr
    assert f"{path}:{line}:" in result.stderr, result.stderr
    assert words in result.stderr, result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "out").exists()


def test_samples_belong_to_payload_patterns(tmp_path):
    knowledge = _copy(tmp_path / "knowledge")
    (knowledge / "probe.yaml").write_text("""entries:
  - id: kinds-probe
    table: destination
    ports: [6380]
    protocols: [tcp]
    service: probe
    title: Probe with samples
    description: {en: "A port probe that has no application messages.", zh: "没有应用消息的端口探测。"}
    references: ["https://example.org/"]
    patterns:
      - id: kinds-probe-with-samples
        title: Probe that wrongly has samples
        category: SCAN
        direction: inbound
        transport: tcp
        dst_ports: [6380]
        detect: probe
        samples: {fires: [{text: "PING"}]}
        severity: low
        classtype: attempted-recon
        response: alert
        false_positives: Scanners.
""")
    result = run_rulegen("build", "-k", str(knowledge), "--out", str(tmp_path / "out"))
    assert result.returncode == 2
    assert f"{knowledge / 'probe.yaml'}:18:" in result.stderr
    assert "only a payload pattern has them" in result.stderr


# --- rulegen hunt over Zeek's http.log and dns.log ----------------------------------------------------------------

def test_hunt_reads_http_and_dns_any_rows(out, tmp_path):
    """The Sigma rules over Zeek JSON: a container create from outside and an ANY query (Zeek writes qtype_name "*"
    for type 255) alert; a browser's GET and an A query do not."""
    http = [
        {"ts": 1764400000.0, "uid": "CHhAvVGS1DHFjwGM9", "id.orig_h": "203.0.113.9", "id.orig_p": 50211,
         "id.resp_h": "192.168.1.10", "id.resp_p": 2375, "trans_depth": 1, "method": "POST",
         "host": "192.168.1.10:2375", "uri": "/v1.41/containers/create", "version": "1.1",
         "user_agent": "Docker-Client/20.10.2 (linux)", "request_body_len": 64, "status_code": 201},
        {"ts": 1764400001.0, "uid": "C3xkHgJ1r6cp0dGsk", "id.orig_h": "203.0.113.9", "id.orig_p": 50212,
         "id.resp_h": "192.168.1.10", "id.resp_p": 80, "trans_depth": 1, "method": "GET", "host": "www.example.net",
         "uri": "/index.html", "version": "1.1", "user_agent": "Mozilla/5.0", "status_code": 200},
    ]
    dns = [
        {"ts": 1764400002.0, "uid": "CzJvR52JtC0Gk4nYx1", "id.orig_h": "203.0.113.9", "id.orig_p": 40001,
         "id.resp_h": "192.168.1.53", "id.resp_p": 53, "proto": "udp", "trans_id": 4242, "query": "example.com",
         "qclass": 1, "qclass_name": "C_INTERNET", "qtype": 255, "qtype_name": "*", "rcode": 0,
         "rcode_name": "NOERROR"},
        {"ts": 1764400003.0, "uid": "CfU2Yd2Vq2PFHZy6Ea", "id.orig_h": "203.0.113.9", "id.orig_p": 40002,
         "id.resp_h": "192.168.1.53", "id.resp_p": 53, "proto": "udp", "trans_id": 4243, "query": "example.com",
         "qclass": 1, "qclass_name": "C_INTERNET", "qtype": 1, "qtype_name": "A", "rcode": 0, "rcode_name": "NOERROR"},
    ]
    for name, rows in (("http.log", http), ("dns.log", dns)):
        (tmp_path / name).write_text("".join(json.dumps(r) + "\n" for r in rows))
    code, alerts, err = _hunt(out / "sigma", tmp_path / "http.log", tmp_path / "dns.log")
    assert code == 1, err
    hits = {(Path(a["source"]["file"]).name, a["source"]["line"], a["rule"]["title"]) for a in alerts}
    assert hits == {("http.log", 1, "Docker API Container Create from Outside"),
                    ("dns.log", 1, "DNS ANY Query over UDP from Outside")}, hits


def test_capture_layout_of_relative_contents():
    """content_payload joins the items with their distances; gaps move them on purpose."""
    items = PATTERNS["kinds-redis-config-set-dir"].match.contents
    assert captures.content_payload(items) == b"CONFIG SET dir\r\n"
    assert captures.content_payload(items, (0, 0, 0)) == b"CONFIGSETdir\r\n"


def test_within_counts_from_distance_past_the_previous_match(tmp_path):
    """The window the docs describe, in the engine: with distance 1 and within 5 a 3-byte item may start 1 to 3
    bytes after the previous match (it ends at most distance + within bytes after it), not 4."""
    from rulegen.model import ContentMatch
    from rulegen.targets.suricata import _content_options

    options = _content_options((ContentMatch(b"CONFIG"), ContentMatch(b"SET", distance=1, within=5)))
    assert options == ['content:"CONFIG"', "fast_pattern", 'content:"SET"', "distance:1", "within:5"]
    rule = f'alert tcp any any -> any 6379 (msg:"window"; flow:established,to_server; {"; ".join(options)}; sid:7;)'
    (tmp_path / "w.rules").write_text(rule + "\n")
    wire = captures.Wire()
    for port, gap in ((50001, 1), (50003, 3), (50004, 4)):
        message = b"CONFIG" + b" " * gap + b"SET x\r\n"
        wire.tcp("203.0.113.5", "192.168.1.10", port, 6379).conversation([(True, message)])
    pcap = wire.write(tmp_path / "w.pcap")
    config = prove_suricata.write_config(tmp_path, KB)
    replay = prove_suricata.replay_one(need("suricata"), config, tmp_path / "w.rules", pcap, tmp_path / "logs")
    assert replay.error is None
    assert {a.src.rsplit(":", 1)[1] for a in replay.alerts} == {"50001", "50003"}


# --- the worked examples of docs/knowledge.md -------------------------------------------------------------------

DOCS = Path(__file__).resolve().parent.parent / "docs" / "knowledge.md"
DOCS_SECTION = "## Relative content, http, ntp, dns ANY and samples"


def _docs_examples() -> list[str]:
    text = DOCS.read_text(encoding="utf-8")
    start = text.index(DOCS_SECTION)
    end = text.index("\n## ", start + len(DOCS_SECTION))
    return re.findall(r"```yaml\n(.*?)```", text[start:end], flags=re.S)


def test_docs_examples_build_and_prove(tmp_path):
    """Every YAML block of the section is a knowledge file that builds, and whose patterns selftest proves."""
    need("suricata")
    examples = _docs_examples()
    assert len(examples) >= 3
    knowledge = tmp_path / "knowledge"
    knowledge.mkdir()
    for n, example in enumerate(examples):
        (knowledge / f"example-{n}.yaml").write_text(example)
    result = run_rulegen("build", "-k", str(knowledge), "--out", str(tmp_path / "out"))
    assert result.returncode == 0, result.stderr
    proofs, _ = run_selftest([knowledge], default_templates_dir(), ["suricata", "sigma"])
    kb = load_knowledge([knowledge])
    assert {p.pattern for p in proofs} >= {p.id for p in kb.patterns}
    assert all(p.proven for p in proofs), [(p.pattern, p.target, p.side, p.detail) for p in proofs if not p.proven]


def test_captures_are_deterministic(replays, tmp_path):
    """The same bytes on every run (no clock in an NTP timestamp, no random id)."""
    for name, replay in replays.items():
        if name == prove_suricata.NORMAL:
            continue
        pattern = PATTERNS[name.removesuffix(prove_suricata.QUIET)]
        if name.endswith(prove_suricata.QUIET):
            again, _ = captures.write_quiet(pattern, KB, tmp_path / replay.pcap.name)
        else:
            again = captures.write(pattern, KB, tmp_path / replay.pcap.name)
        assert again.read_bytes() == replay.pcap.read_bytes(), name


def test_hunt_over_the_eve_of_each_capture(out, replays, work):
    """The Sigma rules through `rulegen hunt` over Suricata's EVE (http and dns records) of each pattern's own
    capture: each rule alerts on its fires capture and stays silent on its quiet capture."""
    from rulegen.hunt.session import Hunt

    binary = need("suricata")
    folder = work / "eve"
    folder.mkdir()
    config = folder / "suricata.yaml"
    config.write_text(minimal_config(KB.home.addresses) + "outputs:\n  - eve-log:\n      enabled: yes\n      "
                      "filetype: regular\n      filename: eve.json\n      types:\n        - dns\n        - http:\n"
                      "            extended: yes\n")  # http_method is an extended field
    rules = {pid: next((out / "sigma").glob(f"*_{pid.replace('-', '_')}.yml")) for pid in SIGMA_PATTERNS}
    session = Hunt([out / "sigma"], "informational")
    for pid, rule in rules.items():
        rule_id = yaml.safe_load(rule.read_text())["id"]
        for name, wanted in ((pid, True), (pid + prove_suricata.QUIET, False)):
            logs = folder / name
            replay = prove_suricata.replay_one(binary, config, out / "suricata" / "rulegen.rules", replays[name].pcap,
                                               logs)
            assert replay.error is None
            alerted = {a.rule.id for a in session.run([logs / "eve.json"])}
            assert (rule_id in alerted) == wanted, (name, alerted)
