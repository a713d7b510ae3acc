"""The firewall's logs (issue 12, item 4), written by real producers from the firewall proof's probes.

- `rulegen build --firewall-log nflog` logs with the NFLOG target (iptables) and `log group` (nftables) instead of
  the kernel log; ulogd2, run inside the proof's host namespace, writes what the rules log as JSON.
- The default build's kernel LOG lines: the kernel writes them from a namespace only with the host's
  `net.netfilter.nf_log_all_netns=1`; the test sets it for the few seconds of its run and puts the old value back.

Each log must carry, for every probe of a pattern, a line with the prefix of the pattern's rule and the probe's
addresses, ports and protocol, and nothing for the look-alikes from home and over loopback; and `rulegen hunt` over
it must raise, for every probe, an alert of the pattern's own firewall-source Sigma rule on that probe's line.
"""

from __future__ import annotations

import ipaddress
import json
import re
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml
from conftest import REQUIRE_ENGINES, copy_knowledge, need, need_root, run_rulegen

from rulegen.build import plan_all
from rulegen.knowledge import default_knowledge_dir, load_knowledge
from rulegen.prove import firewall, firewall_log

GROUP = 7  # not the default (1), so that the option is seen to reach the rules
KB = load_knowledge([default_knowledge_dir()])
_PLANS = plan_all(KB)
CASES = [(target, p.pattern.id) for target in firewall.TARGETS for p in _PLANS[target] if p.expressed]
PROTOCOL = {"tcp": 6, "udp": 17}  # ulogd's ip.protocol is the IP protocol number
HOOK = {"in": 1, "out": 3, "lo": 3}  # oob.hook: NF_INET_LOCAL_IN, NF_INET_LOCAL_OUT
ENGINE = {"iptables": "iptables-restore", "nftables": "nft"}


@pytest.fixture(scope="module")
def nflog_out(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("nflog")
    knowledge = copy_knowledge(root / "knowledge")
    result = run_rulegen("build", "--frozen", "--knowledge", str(knowledge), "--out", str(root / "out"),
                         "--firewall-log", "nflog", "--nflog-group", str(GROUP))
    assert result.returncode == 0, result.stderr
    return root / "out"


def _need_ulogd() -> None:
    need_root()
    need("ip")
    need("ulogd")
    reason = firewall_log.ulogd_missing()
    if reason:
        if REQUIRE_ENGINES:
            pytest.fail(f"{reason} and RULEGEN_REQUIRE_ENGINES=1")
        pytest.skip(reason)


@pytest.fixture(scope="module")
def ulogd_logs(nflog_out, tmp_path_factory):
    """target -> (the JSON objects ulogd2 wrote, the cases whose probes were sent, the log), one run per target."""
    runs: dict[str, tuple[list[dict], list[firewall.Case], Path]] = {}

    def get(target: str) -> tuple[list[dict], list[firewall.Case], Path]:
        _need_ulogd()
        need(ENGINE[target])
        if target not in runs:
            log = firewall_log.ulogd_log(KB, nflog_out, tmp_path_factory.mktemp(f"ulogd-{target}"), target)
            runs[target] = (firewall_log.read_json(log.path), log.cases, log.path)
        return runs[target]

    return get


# --- the build -----------------------------------------------------------------------------------------------------

def test_the_manifest_records_the_log_target(nflog_out, manifest):
    assert json.loads((nflog_out / "manifest.json").read_text())["firewall"]["log"] == {"target": "nflog",
                                                                                      "group": GROUP}
    assert manifest["firewall"]["log"] == {"target": "log"}  # the default build


def test_nflog_replaces_log_and_nothing_else(nflog_out, built):
    """The NFLOG build is the LOG build with each log action swapped, prefix and rate limit kept."""
    nflog_iptables = r'-j NFLOG --nflog-group 7 --nflog-prefix ("rulegen:\d+:\w+ ")'
    nflog_nft = r'(log prefix "rulegen:\d+:\w+ ") group 7 '
    for path, pattern, log in (("iptables/rulegen.rules", nflog_iptables, r"-j LOG --log-prefix \1"),
                               ("iptables/rulegen6.rules", nflog_iptables, r"-j LOG --log-prefix \1"),
                               ("nftables/rulegen.nft", nflog_nft, r"\1 ")):
        nflog, default = (nflog_out / path).read_text(), (built / path).read_text()
        assert len(re.findall(pattern, nflog)) == len(re.findall(r"-j LOG |log prefix ", default)) > 0, path
        assert "-j LOG " not in nflog and not re.search(r'log prefix "[^"]*" comment', nflog), path
        assert re.sub(pattern, log, nflog) == default, path
        for line in nflog.splitlines():
            if "NFLOG" in line or "log prefix" in line:
                assert "limit --limit 5/minute --limit-burst 10" in line or "limit rate 5/minute burst 10" in line


def test_validate_takes_the_nflog_build(nflog_out):
    result = run_rulegen("validate", "--no-lint", str(nflog_out / "iptables"), str(nflog_out / "nftables"))
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("args, message", [
    (["--nflog-group", "3"], "only NFLOG has a group: give --firewall-log nflog too"),
    (["--firewall-log", "nflog", "--nflog-group", "65536"], "65536 is not in the range 0<=x<=65535"),
    (["--firewall-log", "ulog"], "'ulog' is not one of 'log', 'nflog'"),
], ids=["group without nflog", "group too large", "unknown log target"])
def test_bad_log_options_are_usage_errors(tmp_path, args, message):
    result = run_rulegen("build", "--out", str(tmp_path / "out"), *args)
    assert result.returncode == 2 and message in result.stderr, result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "out").exists()


# --- the firewall proof counts NFLOG rules ---------------------------------------------------------------------------

@pytest.mark.parametrize("target", firewall.TARGETS)
def test_the_firewall_proof_passes_on_the_nflog_build(nflog_out, tmp_path, target):
    """The proof reads the NFLOG rules' counters as it reads the LOG rules': every pattern fires and stays quiet."""
    need_root()
    need("ip")
    need(ENGINE[target])
    proofs = firewall.prove(KB, nflog_out, tmp_path, (target,))
    failed = [(p.pattern, p.side, p.detail) for p in proofs if not p.proven and not p.skipped]
    assert proofs and not failed, failed
    assert [p for p in proofs if p.side == "fires" and "LOG counted" in p.detail], "the log rules counted"


# --- what ulogd2 writes -------------------------------------------------------------------------------------------

def _lines_of(lines: list[dict], probe: firewall.Probe) -> list[dict]:
    """The JSON objects for a probe's packets (the first one, and any TCP retransmission)."""
    return [x for x in lines if (x.get("src_ip"), x.get("dest_ip"), x.get("src_port"), x.get("dest_port"),
                                 x.get("ip.protocol")) == (probe.src_addr, probe.dst_addr, probe.sport, probe.dport,
                                                           PROTOCOL[probe.transport])]


@pytest.mark.parametrize("target,pattern", CASES, ids=[f"{t}:{p}" for t, p in CASES])
def test_ulogd_logs_each_probe_with_the_patterns_prefix(ulogd_logs, target, pattern):
    lines, cases, _ = ulogd_logs(target)
    case = next(c for c in cases if c.pattern == pattern)
    if case.skipped:
        pytest.skip(case.skipped)
    assert case.probes
    for probe in case.probes:
        found = _lines_of(lines, probe)
        assert found, f"{probe.label()}: not in ulogd's log"
        prefixes = {x["oob.prefix"] for x in found}
        assert f"rulegen:{case.sid}:{case.response} " in prefixes, (probe.label(), prefixes)
        assert {x["oob.hook"] for x in found} == {HOOK[probe.way]}, probe.label()
        assert {x["oob.family"] for x in found} == {2 if probe.family == 4 else 10}, probe.label()


def _assert_only_fires_probes_logged(lines: list, cases: list,
                                     lines_of: Callable[[list, firewall.Probe], list]) -> None:
    """No look-alike (home, loopback) or allowed-traffic probe left a line, and every line is a fires probe's."""
    fires = [p for c in cases if not c.skipped and c.sid is not None for p in c.probes]
    others = [p for c in cases if not c.skipped for p in (c.quiet if c.sid is not None else c.probes)]
    assert others and not [p.label() for p in others if lines_of(lines, p)]
    explained = [x for p in fires for x in lines_of(lines, p)]
    assert len(explained) == len(lines), [x for x in lines if x not in explained][:3]


@pytest.mark.parametrize("target", firewall.TARGETS)
def test_ulogd_logs_nothing_of_home_loopback_or_allowed_traffic(ulogd_logs, target):
    """Every line is a probe of a pattern, under a rulegen prefix; the look-alikes from home and over loopback and
    the allowed-traffic probes left none."""
    lines, cases, _ = ulogd_logs(target)
    assert lines
    assert all(re.fullmatch(r"rulegen:\d+:(log|drop|reject) ", x["oob.prefix"]) for x in lines)
    _assert_only_fires_probes_logged(lines, cases, _lines_of)


def test_ulogd_is_stopped_and_the_namespaces_are_gone(ulogd_logs, tmp_path_factory):
    ulogd_logs("nftables")
    listing = subprocess.run([need("ip"), "netns", "list"], capture_output=True, text=True, timeout=30).stdout
    assert not set(firewall.namespace_names()) & {line.split()[0] for line in listing.splitlines() if line.split()}
    running = subprocess.run(["ps", "-eo", "args"], capture_output=True, text=True, timeout=30).stdout
    assert str(tmp_path_factory.getbasetemp()) not in running, "a ulogd of this session still runs"


def test_a_build_that_logs_through_log_is_refused(built, tmp_path):
    with pytest.raises(RuntimeError, match="not built with --firewall-log nflog"):
        firewall_log.ulogd_log(KB, built, tmp_path, "nftables")


# --- kernel LOG lines -----------------------------------------------------------------------------------------------

KERNEL_LINE = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d[+-]\d{4} \S+ kernel: (rulegen:\d+:\w+ )(IN=.*)$")


@pytest.fixture(scope="module")
def kernel_logs(built, tmp_path_factory):
    """target -> (each kernel line as (prefix, {KEY: value}), the cases, the log), one run per target, with
    nf_log_all_netns=1 for the time of the run."""
    runs: dict[str, tuple[list[tuple[str, dict]], list[firewall.Case], Path]] = {}

    def get(target: str) -> tuple[list[tuple[str, dict]], list[firewall.Case], Path]:
        need_root()
        need("ip")
        need(ENGINE[target])
        if not firewall_log.ALL_NETNS.exists():
            pytest.skip("no net.netfilter.nf_log_all_netns here (nf_log_syslog not loaded)")
        if target not in runs:
            before = firewall_log.ALL_NETNS.read_text()
            with firewall_log.all_netns_on():
                log = firewall_log.kernel_log(KB, built, tmp_path_factory.mktemp(f"kernel-{target}"), target)
            assert firewall_log.ALL_NETNS.read_text() == before, "nf_log_all_netns is back as it was"
            lines = []
            for text in log.path.read_text().splitlines():
                found = KERNEL_LINE.match(text)
                assert found, text
                words = [w.partition("=") for w in found.group(2).split()]
                lines.append((found.group(1), {k: v if sep else "1" for k, sep, v in reversed(words)}))
            runs[target] = (lines, log.cases, log.path)
        return runs[target]

    return get


def _kernel_lines_of(lines: list[tuple[str, dict]], probe: firewall.Probe) -> list[tuple[str, dict]]:
    """The kernel lines for a probe's packets (the kernel writes IPv6 addresses in full: compare as addresses)."""
    want = (ipaddress.ip_address(probe.src_addr), ipaddress.ip_address(probe.dst_addr), str(probe.sport),
            str(probe.dport), probe.transport.upper())
    return [(prefix, f) for prefix, f in lines
            if (ipaddress.ip_address(f["SRC"]), ipaddress.ip_address(f["DST"]), f.get("SPT"), f.get("DPT"),
                f.get("PROTO")) == want]


@pytest.mark.parametrize("target,pattern", CASES, ids=[f"{t}:{p}" for t, p in CASES])
def test_the_kernel_logs_each_probe_with_the_patterns_prefix(kernel_logs, target, pattern):
    lines, cases, _ = kernel_logs(target)
    case = next(c for c in cases if c.pattern == pattern)
    if case.skipped:
        pytest.skip(case.skipped)
    for probe in case.probes:
        found = _kernel_lines_of(lines, probe)
        assert found, f"{probe.label()}: not in the kernel log"
        assert f"rulegen:{case.sid}:{case.response} " in {prefix for prefix, _ in found}, probe.label()
        interface = firewall.veth_names()[0]
        assert {f["IN"] if probe.way == "in" else f["OUT"] for _, f in found} == {interface}, probe.label()


@pytest.mark.parametrize("target", firewall.TARGETS)
def test_the_kernel_logs_nothing_of_home_loopback_or_allowed_traffic(kernel_logs, target):
    lines, cases, _ = kernel_logs(target)
    assert lines
    _assert_only_fires_probes_logged(lines, cases, _kernel_lines_of)


def test_no_kernel_log_without_the_host_setting(built, tmp_path):
    """Where nf_log_all_netns is 0 the kernel log holds nothing of a namespace: kernel_log says so."""
    need_root()
    if firewall_log.all_netns():
        pytest.skip("this host has nf_log_all_netns=1")
    with pytest.raises(RuntimeError, match="nf_log_all_netns=0"):
        firewall_log.kernel_log(KB, built, tmp_path, "nftables")


# --- rulegen hunt on the logs ----------------------------------------------------------------------------------------

def _firewall_sigma_rules(out: Path) -> dict[str, str]:
    """pattern id -> the Sigma id of its own firewall-source rule (net_firewall_*.yml), from the manifest."""
    manifest = json.loads((out / "manifest.json").read_text())
    return {artifact["patterns"][0]: yaml.safe_load((out / artifact["path"]).read_text())["id"]
            for artifact in manifest["artifacts"]
            if artifact["path"].startswith("sigma/net_firewall_") and len(artifact["patterns"]) == 1}


def _hunted_lines(out: Path, log: Path) -> dict[str, set[int]]:
    """`rulegen hunt --json` with the out/'s Sigma rules over a log: Sigma id -> the log lines it alerted on."""
    result = run_rulegen("hunt", "--rules", str(out / "sigma"), "--min-level", "informational", "--json", str(log))
    assert result.returncode == 1, result.stderr  # 1: alerts
    fired: dict[str, set[int]] = {}
    for alert in map(json.loads, result.stdout.splitlines()):
        assert all(event["source"]["file"] == str(log) for event in alert["events"])
        fired.setdefault(alert["rule"]["id"], set()).update(event["source"]["line"] for event in alert["events"])
    return fired


def _unalerted(out: Path, cases: list[firewall.Case], fired: dict[str, set[int]], lines: list,
               lines_of) -> list[str]:
    """The probes whose logged line no alert of their pattern's own Sigma rule names."""
    sigma = _firewall_sigma_rules(out)
    probed = [c for c in cases if not c.skipped and c.sid is not None and c.pattern in sigma]
    assert probed
    missing = []
    for case in probed:
        for probe in case.probes:
            numbers = {n for n, line in enumerate(lines, 1) if line in lines_of(lines, probe)}
            if not numbers & fired.get(sigma[case.pattern], set()):
                missing.append(f"{case.pattern}: {probe.label()}")
    return missing


@pytest.mark.parametrize("target", firewall.TARGETS)
def test_hunt_fires_the_firewall_sigma_rules_on_the_ulogd_log(nflog_out, ulogd_logs, target):
    """`rulegen hunt` over what ulogd2 wrote: for every probe, its pattern's own firewall-source Sigma rule alerts
    on the line the firewall logged for it."""
    lines, cases, path = ulogd_logs(target)
    missing = _unalerted(nflog_out, cases, _hunted_lines(nflog_out, path), lines, _lines_of)
    assert not missing, missing


@pytest.mark.parametrize("target", firewall.TARGETS)
def test_hunt_fires_the_firewall_sigma_rules_on_the_kernel_log(built, kernel_logs, target):
    lines, cases, path = kernel_logs(target)
    missing = _unalerted(built, cases, _hunted_lines(built, path), lines, _kernel_lines_of)
    assert not missing, missing
