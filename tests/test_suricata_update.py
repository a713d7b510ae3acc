"""out/suricata/rulegen.tar.gz as a suricata-update source, the way a sensor admin adds it: the real
suricata-update, offline (a file:// source, its own data dir and config), then `suricata -T` on its output."""

from __future__ import annotations

import hashlib
import os
import re
import subprocess
import tarfile
from pathlib import Path

import pytest
from conftest import REQUIRE_ENGINES, need, run_rulegen

SURICATA_CONFIG = Path("/etc/suricata/suricata.yaml")  # the sensor's own config, as suricata-update reads it
# Any attempt to reach the network goes to a closed local port and fails at once.
NO_NETWORK = {name: "http://127.0.0.1:9" for name in ("http_proxy", "https_proxy", "ftp_proxy",
                                                       "HTTP_PROXY", "HTTPS_PROXY", "FTP_PROXY")}
SID = re.compile(r"\bsid:(\d+);")


def _sensor_config() -> Path:
    if SURICATA_CONFIG.is_file():
        return SURICATA_CONFIG
    if REQUIRE_ENGINES:
        pytest.fail(f"{SURICATA_CONFIG} missing and RULEGEN_REQUIRE_ENGINES=1")
    pytest.skip(f"{SURICATA_CONFIG} missing")


class Sensor:
    """A suricata-update installation in a temp folder: data dir, update.yaml and disable.conf of its own."""

    def __init__(self, root: Path, tool: str):
        self.tool, self.data = tool, root / "data"
        self.disable_conf = root / "disable.conf"
        self.disable_conf.write_text("")
        self.config = root / "update.yaml"
        self.config.write_text(f"disable-conf: {self.disable_conf}\n")
        self.merged = self.data / "rules" / "suricata.rules"

    def run(self, *args: str) -> str:
        result = subprocess.run([self.tool, *args, "-D", str(self.data), "-c", str(self.config)],
                                capture_output=True, text=True, timeout=300, env={**os.environ, **NO_NETWORK})
        log = result.stdout + result.stderr
        assert result.returncode == 0, log
        return log

    def update(self, *args: str) -> str:
        return self.run("update", "--suricata-conf", str(_sensor_config()), "--no-reload", *args)


def _tested(log: str) -> bool:
    """suricata-update ran `suricata -T` on the new merged file, and it passed."""
    return "Testing with suricata -T." in log and "Suricata test failed" not in log  # and it exited 0


def _rules(text: str) -> dict[int, str]:
    """sid -> the rule's line, for enabled (`alert ...`) and disabled (`# alert ...`) rules."""
    return {int(m.group(1)): line for line in text.splitlines()
            if re.match(r"(# )?alert ", line) and (m := SID.search(line))}


@pytest.fixture(scope="module")
def tarball(built) -> Path:
    return built / "suricata" / "rulegen.tar.gz"


def test_tarball_holds_the_rules_in_et_layout(built, tarball):
    with tarfile.open(tarball) as archive:
        members = archive.getmembers()
        assert [m.name for m in members] == ["rules/rulegen.rules"]
        assert all(m.uid == 0 and m.gid == 0 and m.mode == 0o644 for m in members)
        assert archive.extractfile(members[0]).read() == (built / "suricata" / "rulegen.rules").read_bytes()
    assert tarball.read_bytes()[4:8] == b"\x00\x00\x00\x00"  # gzip header time 0


def test_tarball_is_byte_identical_across_builds(tarball, tmp_path, manifest):
    again = tmp_path / "out"
    result = run_rulegen("build", "--frozen", "--no-validate", "--knowledge", str(tarball.parents[2] / "knowledge"),
                         "--out", str(again))
    assert result.returncode == 0, result.stderr
    assert (again / "suricata" / "rulegen.tar.gz").read_bytes() == tarball.read_bytes()
    listed = {a["path"]: a for a in manifest["artifacts"]}
    assert listed["suricata/rulegen.tar.gz"]["sha256"] == hashlib.sha256(tarball.read_bytes()).hexdigest()
    assert (tarball.parent / "rulegen.tar.gz.md5").read_text() == hashlib.md5(tarball.read_bytes()).hexdigest() + "\n"


def test_suricata_update_merges_our_rules_and_disable_conf_drops_one(built, tarball, tmp_path):
    sensor = Sensor(tmp_path, need("suricata-update"))
    need("suricata")
    ours = _rules((built / "suricata" / "rulegen.rules").read_text())
    assert len(ours) > 50

    sensor.run("add-source", "rulegen", tarball.as_uri())
    first = sensor.update()
    assert _tested(first), first
    fetches = re.findall(r"Fetching (\S+?)\.?$", first, re.M)
    assert fetches == [tarball.as_uri()], first  # our source only: no ET Open, no index, no network
    merged = _rules(sensor.merged.read_text())
    assert {sid: merged.get(sid) for sid in ours} == ours  # every rule of ours, enabled and unchanged

    chosen = sorted(ours)[len(ours) // 2]
    sensor.disable_conf.write_text(f"# rulegen: not on this sensor\n1:{chosen}\n")
    second = sensor.update()
    assert _tested(second), second
    assert f"Loading {sensor.disable_conf}" in second
    after = _rules(sensor.merged.read_text())
    changed = {sid for sid in set(merged) | set(after) if merged.get(sid) != after.get(sid)}
    assert changed == {chosen}
    assert after[chosen] == "# " + ours[chosen]

    # A later run (suricata-update waits 15 minutes; --now skips the wait) asks for URL.md5 and keeps its copy.
    third = sensor.update("--now")
    assert "Remote checksum has not changed. Not fetching." in third and "No changes detected" in third, third

    # The merged output (ours and the distribution's rules) loads in Suricata: every enabled rule, no failures.
    result = subprocess.run([need("suricata"), "-T", "-v", "-c", str(_sensor_config()), "-S", str(sensor.merged),
                             "-l", str(tmp_path)], capture_output=True, text=True, timeout=300)
    enabled = sum(1 for line in sensor.merged.read_text().splitlines() if re.match(r"(alert|drop|pass|reject) ", line))
    assert result.returncode == 0, result.stderr
    assert f"{enabled} rules successfully loaded, 0 rules failed" in result.stdout + result.stderr
