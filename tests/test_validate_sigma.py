"""rulegen.validate.sigma: pySigma, pySigma's and SigmaHQ's validators, the JSON schema and the Splunk and Lucene
backends judge Sigma files offline. Each file of tests/data/broken/sigma holds one mistake and names, on its first
line, the line the finding must point at (a new file there is a new test)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from rulegen.validate import sigma

BROKEN = Path(__file__).resolve().parent / "data" / "broken" / "sigma"
CASES = sorted(BROKEN.glob("*.yml"))
EXPECT = re.compile(r"^# expect-line: (\d+)$")
# The corpus names its files NN-name.yml, not after SigmaHQ's convention: those findings are expected everywhere.
FILE_NAME_RULES = ("sigmahq_filename_convention", "sigmahq_filename_prefix", "sigmahq_correlation_filename_prefix")


def _relevant(report) -> list:
    return [f for f in report.findings if not f.message.startswith(FILE_NAME_RULES)]


@pytest.fixture(scope="module")
def broken_reports() -> dict:
    """The whole corpus as one collection, the way `rulegen validate` sees a folder, judged as rulegen's own output
    (its field names for the firewall category included)."""
    return {Path(r.path).name: r for r in sigma.check(CASES, own=True)}


@pytest.fixture(scope="module")
def generated(built) -> tuple[list[Path], list]:
    files = sorted((built / "sigma").rglob("*.yml"))
    return files, sigma.check(files, own=True)


def test_the_corpus_has_a_case_for_each_kind_of_mistake():
    assert len(CASES) >= 7
    assert len({p.name.split("-", 1)[0] for p in CASES}) == len(CASES), "NN prefixes must be unique"


@pytest.mark.parametrize("path", CASES, ids=[p.stem for p in CASES])
def test_broken_file_is_caught_at_its_line(broken_reports, path):
    first = path.read_text(encoding="utf-8").splitlines()[0]
    m = EXPECT.match(first)
    assert m, f"{path.name}: the first line must be '# expect-line: N'"
    expected = int(m.group(1))
    report = broken_reports[path.name]
    assert report.format == "sigma" and report.checked_by[0] == sigma.PYSIGMA
    found = _relevant(report)
    assert any(f.severity in ("error", "warning") for f in found), f"{path.name}: nothing found"
    assert {f.line for f in found} == {expected}, "\n".join(map(str, found))


def test_generated_sigma_rules_are_clean(generated):
    files, reports = generated
    assert [r.path for r in reports] == [str(p) for p in files]
    assert [str(f) for r in reports for f in r.findings] == []
    correlations = [r for r in reports if Path(r.path).name.startswith("correlation_")]
    assert correlations, "sweeps should give correlation rules"
    for report in reports:
        assert report.checked_by[:4] == [sigma.PYSIGMA, sigma.SIGMAHQ, sigma.SCHEMA_ENGINE, sigma.SPLUNK], report
        # Lucene has no correlation rules: it judges the others and stays silent on those.
        assert (sigma.LUCENE in report.checked_by) == (report not in correlations)


def test_correlation_rules_find_their_base_rules_in_other_files(generated, built):
    """A correlation file alone misses its base rule; with the folder it resolves (one collection)."""
    correlation = sorted((built / "sigma").rglob("correlation_*.yml"))[0]
    alone = sigma.check([correlation])[0]
    assert any("SigmaRuleNotFoundError" in f.message for f in alone.findings), alone
    files, reports = generated
    assert not next(r for r in reports if r.path == str(correlation)).findings


def test_every_validator_runs_except_the_listed_ones():
    from sigma.validators.core import validators as core
    from sigma.validators.sigmahq import validators as sigmahq

    known = set(core) | set(sigmahq)
    assert set(sigma.EXCLUDED_VALIDATORS) <= known, "an exclusion names a validator that no longer exists"
    assert all(len(reason) > 20 for reason in sigma.EXCLUDED_VALIDATORS.values())
    classes, notes = sigma.validator_classes()
    assert set(classes) == known - set(sigma.EXCLUDED_VALIDATORS) and notes == []
    assert set(classes) >= sigma.ATTACK_VALIDATORS


def test_the_schema_refuses_what_pysigma_lets_through():
    """pySigma takes `date: 2024/05/01`; only the specification's schema refuses it."""
    report = sigma.check([BROKEN / "01-date-slashes.yml"])[0]
    engines = {f.engine for f in _relevant(report)}
    assert engines == {sigma.SCHEMA_ENGINE}


def test_offline_attack_data_matches_the_lookup_package():
    from sigma.data import mitre_attack

    assert sigma.offline_data()
    assert mitre_attack.mitre_attack_version == "18.1"
    assert mitre_attack.mitre_attack_techniques["T1595.001"] == "Scanning IP Blocks"
    assert set(mitre_attack.mitre_attack_techniques_tactics_mapping["T1133"]) == {"initial-access", "persistence"}
    assert "reconnaissance" in mitre_attack.mitre_attack_tactics.values()


OFFLINE_SCRIPT = r"""
import dataclasses, json, socket, sys, urllib.request
from pathlib import Path

attempts = []

def refuse(*args, **kwargs):
    attempts.append(repr(args[:2]))
    raise OSError("network blocked by the test")

socket.socket.connect = refuse
socket.socket.connect_ex = refuse
socket.create_connection = refuse
socket.getaddrinfo = refuse
try:
    urllib.request.urlopen("https://github.com/", timeout=5)
    blocked = False
except OSError:
    blocked = True
probe = len(attempts)

from rulegen.validate.sigma import check

reports = check([Path(p) for p in sys.argv[1:]], own=True)
print(json.dumps({"blocked": blocked, "attempts": attempts[probe:],
                  "reports": [dataclasses.asdict(r) for r in reports]}))
"""


def test_validation_works_with_the_network_blocked(built, tmp_path):
    """A fresh process without network (sockets refused, proxies pointing nowhere, an empty HOME): the ATT&CK and
    SigmaHQ data still load, no connection is even attempted, and pySigma's own cache folder is not used."""
    generated = sorted((built / "sigma").rglob("*.yml"))
    cases = [BROKEN / n for n in ("07-tag-not-in-attack.yml", "11-technique-without-its-tactics.yml",
                                  "10-field-not-in-taxonomy.yml", "13-unknown-logsource.yml")]
    env = {**os.environ, "HOME": str(tmp_path), "HTTPS_PROXY": "http://127.0.0.1:9", "HTTP_PROXY": "http://127.0.0.1:9",
           "https_proxy": "http://127.0.0.1:9", "http_proxy": "http://127.0.0.1:9", "NO_PROXY": "", "no_proxy": ""}
    result = subprocess.run([sys.executable, "-c", OFFLINE_SCRIPT, *map(str, generated + cases)],
                            capture_output=True, text=True, env=env, timeout=600)
    assert result.returncode == 0, result.stderr
    out = json.loads(result.stdout)
    assert out["blocked"], "the test did not manage to block the network"
    assert out["attempts"] == []
    reports = {Path(r["path"]).name: r for r in out["reports"]}
    for path in generated:
        assert reports[path.name]["findings"] == [], reports[path.name]
    messages = {name: " ".join(f["message"] for f in reports[name]["findings"]) for name in map(str, reports)}
    assert "attacktag" in messages["07-tag-not-in-attack.yml"]
    assert "sigmahq_tags_techniques_without_tactics" in messages["11-technique-without-its-tactics.yml"]
    assert "sigmahq_invalid_fieldname" in messages["10-field-not-in-taxonomy.yml"]
    assert "sigmahq_logsource_unknown" in messages["13-unknown-logsource.yml"]
    assert not (tmp_path / ".cache" / "pysigma").exists()


def test_without_pysigma_the_yaml_and_the_schema_are_still_checked(monkeypatch):
    """An install without the dependencies (pip install --no-deps) still validates what it can, and says so."""
    monkeypatch.setitem(sys.modules, "sigma.collection", None)
    reports = sigma.check([BROKEN / "14-yaml-syntax.yml", BROKEN / "01-date-slashes.yml"])
    assert all("pySigma not installed" in r.checked_by[0] for r in reports)
    assert [(f.line, f.engine) for r in reports for f in r.findings] == [(18, "built-in"), (9, sigma.SCHEMA_ENGINE)]
