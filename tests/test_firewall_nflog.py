"""Firewall logs through NFLOG (issue 12, item 4): `rulegen build --firewall-log nflog` logs with the NFLOG target
(iptables) and `log group` (nftables) instead of the kernel log, and ulogd2, run inside the firewall proof's host
namespace, writes what the rules log as JSON: the prefix of the pattern's rule, the addresses, ports and protocol of
each probe the proof sends, and nothing for the look-alikes from home and over loopback.

Kernel LOG lines would reach a log reader from a namespace only with `net.netfilter.nf_log_all_netns=1` on the host;
NFLOG needs no host setting, which is why these tests use it.
"""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import pytest
from conftest import REQUIRE_ENGINES, copy_knowledge, need, need_root, run_rulegen

from rulegen.build import plan_all
from rulegen.knowledge import default_knowledge_dir, load_knowledge
from rulegen.prove import firewall, ulogd

GROUP = 7  # not the default (1), so that the option is seen to reach the rules
KB = load_knowledge([default_knowledge_dir()])
_PLANS = plan_all(KB)
CASES = [(target, p.pattern.id) for target in firewall.TARGETS for p in _PLANS[target] if p.expressed]
PROTOCOL = {"tcp": 6, "udp": 17}  # ulogd's ip.protocol is the IP protocol number
HOOK = {"in": 1, "out": 3, "lo": 3}  # oob.hook: NF_INET_LOCAL_IN, NF_INET_LOCAL_OUT


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
    reason = ulogd.missing()
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
        need({"iptables": "iptables-restore", "nftables": "nft"}[target])
        if target not in runs:
            log = ulogd.firewall_log(KB, nflog_out, tmp_path_factory.mktemp(f"ulogd-{target}"), target)
            runs[target] = (ulogd.read(log.path), log.cases, log.path)
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
    need({"iptables": "iptables-restore", "nftables": "nft"}[target])
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


@pytest.mark.parametrize("target", firewall.TARGETS)
def test_ulogd_logs_nothing_of_home_loopback_or_allowed_traffic(ulogd_logs, target):
    """Every line is a probe of a pattern, under a rulegen prefix; the look-alikes from home and over loopback and
    the allowed-traffic probes left none."""
    lines, cases, _ = ulogd_logs(target)
    assert lines
    assert all(re.fullmatch(r"rulegen:\d+:(log|drop|reject) ", x["oob.prefix"]) for x in lines)
    fires = [p for c in cases if not c.skipped and c.sid is not None for p in c.probes]
    others = [p for c in cases if not c.skipped for p in (c.quiet if c.sid is not None else c.probes)]
    assert others and not [p.label() for p in others if _lines_of(lines, p)]
    explained = [x for p in fires for x in _lines_of(lines, p)]
    assert len(explained) == len(lines), [x for x in lines if x not in explained][:3]


def test_ulogd_is_stopped_and_the_namespaces_are_gone(ulogd_logs, tmp_path_factory):
    ulogd_logs("nftables")
    listing = subprocess.run([need("ip"), "netns", "list"], capture_output=True, text=True, timeout=30).stdout
    assert not set(firewall.namespace_names()) & {line.split()[0] for line in listing.splitlines() if line.split()}
    running = subprocess.run(["ps", "-eo", "args"], capture_output=True, text=True, timeout=30).stdout
    assert str(tmp_path_factory.getbasetemp()) not in running, "a ulogd of this session still runs"


def test_a_build_that_logs_through_log_is_refused(built, tmp_path):
    with pytest.raises(RuntimeError, match="not built with --firewall-log nflog"):
        ulogd.firewall_log(KB, built, tmp_path, "nftables")
