"""The generated files load in the real engines: Suricata, iptables/ip6tables, nft, pySigma and sigma-cli."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from conftest import need, need_root
from sigma.backends.elasticsearch import LuceneBackend
from sigma.backends.splunk import SplunkBackend
from sigma.collection import SigmaCollection

from rulegen.targets.suricata import CLASSTYPES
from rulegen.validate.firewall import with_ipsets

SURICATA_CONFIG = Path("/etc/suricata/suricata.yaml")


def test_suricata_loads_every_rule(built, tmp_path):
    suricata = need("suricata")
    rules = built / "suricata" / "rulegen.rules"
    count = sum(1 for line in rules.read_text().splitlines() if line.startswith("alert "))
    result = subprocess.run([suricata, "-T", "-v", "-c", str(SURICATA_CONFIG), "-S", str(rules), "-l", str(tmp_path)],
                            capture_output=True, text=True, timeout=300)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert f"{count} rules successfully loaded, 0 rules failed" in output, output
    assert "E:" not in output and "Error" not in output
    assert "classtype" not in output.lower(), "unknown classtype warning"


def test_suricata_classtypes_are_in_the_engines_classification_config(built):
    config = Path("/etc/suricata/classification.config")
    known = set(CLASSTYPES)
    if config.exists():
        known = set(re.findall(r"^config classification:\s*([^,]+),", config.read_text(), re.M))
    used = set(re.findall(r"classtype:([^;]+);", (built / "suricata" / "rulegen.rules").read_text()))
    assert used and used <= known


@pytest.mark.parametrize("tool,path", [("iptables-restore", "iptables/rulegen.rules"),
                                       ("ip6tables-restore", "iptables/rulegen6.rules")])
def test_iptables_restore_accepts(built, tool, path):
    """In a throwaway namespace that has the ipsets of rulegen.ipset (the home sets the rules match)."""
    need_root()
    wrapper = with_ipsets(built / path, [], "inet")
    assert wrapper, "needs ipset and unshare"
    result = subprocess.run([*wrapper, need(tool), "--test", str(built / path)], capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 0, result.stderr


def test_nft_accepts(built):
    need_root()
    result = subprocess.run([need("nft"), "-c", "-f", str(built / "nftables" / "rulegen.nft")],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr


def _sigma_files(built: Path) -> list[Path]:
    return sorted((built / "sigma").rglob("*.yml"))


def test_every_sigma_rule_parses_and_converts(built):
    """The folder as one pySigma collection; each base rule alone through splunk and lucene."""
    files = _sigma_files(built)
    collection = SigmaCollection.load_ruleset([str(built / "sigma")])
    assert len(collection.rules) == len(files)
    assert not [e for rule in collection.rules for e in rule.errors]
    assert any(f.name.startswith("correlation_") for f in files), "sweeps should give correlation rules"
    for path in files:
        if path.name.startswith("correlation_"):
            continue
        for backend in (SplunkBackend(), LuceneBackend()):
            queries = backend.convert(SigmaCollection.from_yaml(path.read_text()))
            assert len(queries) == 1 and queries[0].strip(), (path.name, backend)


def _sigma_convert(backend: str, folder: Path) -> subprocess.CompletedProcess:
    sigma = Path(sys.executable).with_name("sigma")
    return subprocess.run([str(sigma), "convert", "-t", backend, "--without-pipeline", str(folder)],
                          capture_output=True, text=True, timeout=300)


def test_sigma_cli_converts_the_folder_to_splunk(built):
    """Base rules and correlations together, as a SIEM import of out/sigma/ does."""
    result = _sigma_convert("splunk", built / "sigma")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "stats dc(dst_ip)" in result.stdout and "stats dc(dst_port)" in result.stdout


def test_sigma_cli_converts_base_rules_to_lucene(built, tmp_path):
    for path in _sigma_files(built):
        if not path.name.startswith("correlation_"):
            shutil.copy(path, tmp_path)
    result = _sigma_convert("lucene", tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert len([q for q in result.stdout.splitlines() if q.strip()]) == len(list(tmp_path.glob("*.yml")))


def test_lucene_refuses_correlations_plainly(built):
    result = _sigma_convert("lucene", built / "sigma")
    assert result.returncode != 0 and "does not support correlation" in result.stdout + result.stderr


SIGMAHQ_ORDER = ["title", "id", "name", "related", "status", "description", "references", "author", "date",
                 "modified", "tags", "logsource", "correlation", "detection", "falsepositives", "level"]


@pytest.mark.parametrize("name", ["net_firewall_", "net_dns_", "zeek_", "correlation_"])
def test_sigma_files_follow_sigmahq_conventions(built, name):
    files = [f for f in _sigma_files(built) if f.name.startswith(name)]
    assert files, f"no {name}* rules"
    for path in files:
        text = path.read_text()
        data = yaml.safe_load(text)
        keys = list(data)
        assert keys == sorted(keys, key=SIGMAHQ_ORDER.index), path.name
        assert data["status"] == "experimental"
        assert re.fullmatch(r"\d{4}-\d{2}-\d{2}", str(data["date"]))
        assert "\t" not in text and all((len(ln) - len(ln.lstrip(" "))) % 4 == 0 for ln in text.splitlines())
        for tag in data.get("tags", []):
            assert re.fullmatch(r"attack\.(t\d{4}(\.\d{3})?|[a-z-]+)|cve\.\d{4}-\d+", tag), tag
