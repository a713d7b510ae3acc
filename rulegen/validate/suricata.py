"""Suricata files: `suricata -T` once per file under a minimal generated config, plus a classtype check."""

from __future__ import annotations

import re
import tempfile
from collections.abc import Sequence
from pathlib import Path

from rulegen.validate import engines
from rulegen.validate.base import FileReport, Finding

DATA = Path(__file__).resolve().parent.parent / "data" / "suricata"
ERROR_AT_LINE = re.compile(r'error parsing signature ".*" from file (.+) at line (\d+)\s*$')
SID = re.compile(r"\bsid\s*:\s*(\d+)\s*;")
CLASSTYPE = re.compile(r"\bclasstype\s*:\s*([^;]+);")

# Suricata's own default HOME_NET: `rulegen validate` of a file written without the knowledge assumes it.
DEFAULT_HOME_NET = ("192.168.0.0/16", "10.0.0.0/8", "172.16.0.0/12")
# Enough config for `suricata -T`: neither /etc/suricata nor root is needed (see minimal_config).
MINIMAL_CONFIG = """%YAML 1.1
---
vars:
  address-groups:
    HOME_NET: "{home_net}"
    EXTERNAL_NET: "!$HOME_NET"
    HTTP_SERVERS: "$HOME_NET"
    SMTP_SERVERS: "$HOME_NET"
    SQL_SERVERS: "$HOME_NET"
    DNS_SERVERS: "$HOME_NET"
    TELNET_SERVERS: "$HOME_NET"
    AIM_SERVERS: "$EXTERNAL_NET"
    DC_SERVERS: "$HOME_NET"
    DNP3_SERVER: "$HOME_NET"
    DNP3_CLIENT: "$HOME_NET"
    MODBUS_CLIENT: "$HOME_NET"
    MODBUS_SERVER: "$HOME_NET"
    ENIP_CLIENT: "$HOME_NET"
    ENIP_SERVER: "$HOME_NET"
  port-groups:
    HTTP_PORTS: "80"
    SHELLCODE_PORTS: "!80"
    ORACLE_PORTS: 1521
    SSH_PORTS: 22
    DNP3_PORTS: 20000
    MODBUS_PORTS: 502
    FILE_DATA_PORTS: "[$HTTP_PORTS,110,143]"
    FTP_PORTS: 21
    GENEVE_PORTS: 6081
    VXLAN_PORTS: 4789
    TEREDO_PORTS: 3544
classification-file: {classification}
reference-config-file: {reference}
stats:
  enabled: no
"""


def minimal_config(home: Sequence[str] = DEFAULT_HOME_NET) -> str:
    """MINIMAL_CONFIG with HOME_NET set to `home` (a knowledge's home set, or Suricata's default)."""
    return MINIMAL_CONFIG.format(home_net="[" + ",".join(home) + "]", classification=classification_file(),
                                 reference=DATA / "reference.config")


def classification_file() -> Path:
    """The classification.config in use: the engine's own when installed, else the 7.0.10 default we ship."""
    system = Path("/etc/suricata/classification.config")
    return system if system.is_file() else DATA / "classification.config"


def classtypes(path: Path) -> set[str]:
    text = path.read_text(encoding="utf-8", errors="replace")
    return set(re.findall(r"^config classification:\s*([^,\s]+)\s*,", text, re.M))


def _sid_at(lines: list[str], line: int) -> int | None:
    if 1 <= line <= len(lines):
        m = SID.search(lines[line - 1])
        return int(m.group(1)) if m else None
    return None


def _classtype_findings(path: Path, lines: list[str], known: set[str], engine: str) -> list[Finding]:
    """`suricata -T` only warns on an unknown classtype (exit 0) and loads the rule: a lint finding, which fails
    rulegen's own build and `validate --strict`."""
    findings = []
    for number, text in enumerate(lines, 1):
        if text.lstrip().startswith("#"):
            continue
        for name in CLASSTYPE.findall(text):
            if name.strip() not in known:
                findings.append(Finding(str(path), number, engine,
                                        f"unknown classtype {name.strip()!r} (not in {classification_file()})",
                                        sid=_sid_at(lines, number), kind="lint", code="unknown-classtype"))
    return findings


def _engine_findings(path: Path, output: str, lines: list[str], engine: str) -> list[Finding]:
    findings: list[Finding] = []
    reasons: list[str] = []
    for raw in output.splitlines():
        text = raw.strip()
        if not text.startswith(("E:", "Error:")):  # short prefix on a terminal, long one in a pipe
            continue
        m = ERROR_AT_LINE.search(text)
        if m:
            line = int(m.group(2))
            reason = "; ".join(reasons)[:600] or "error parsing signature"
            findings.append(Finding(str(path), line, engine, reason, sid=_sid_at(lines, line)))
            reasons = []
        else:
            reason = re.sub(r"^(?:E|Error):\s*[\w-]+:\s*", "", text)
            reasons.append(reason if len(reason) <= 300 else reason[:300] + " [...]")  # engines quote whole rules
    leftover = [r for r in reasons if "Loading signatures failed" not in r]
    if leftover:
        findings.append(Finding(str(path), 0, engine, "; ".join(leftover)))
    return findings


def check(path: Path, home: Sequence[str] = DEFAULT_HOME_NET) -> FileReport:
    """One `suricata -T` process for the whole file, with HOME_NET set to `home`; the built-in checker
    where the engine is missing."""
    report = FileReport(str(path), "suricata")
    text = path.read_bytes().decode("utf-8", errors="replace")
    lines = text.splitlines()
    known = classtypes(classification_file())
    binary = engines.find("suricata")
    if binary is None:
        from rulegen.validate import suricata_builtin

        report.checked_by.append(engines.unavailable("suricata", "not found"))
        report.findings += suricata_builtin.check_file(path, known)
        return report
    engine = engines.version(binary)
    report.checked_by.append(engine)
    with tempfile.TemporaryDirectory(prefix="rulegen-suricata-") as tmp:
        config = Path(tmp) / "suricata.yaml"
        config.write_text(minimal_config(home))
        result = engines.run([binary, "-T", "-c", str(config), "-S", str(path), "-l", tmp])
    report.findings += _engine_findings(path, result.stdout + result.stderr, lines, engine)
    why = engines.failure(result, "suricata -T")
    if why and (result.returncode < 0 or not report.findings):  # killed, timed out, or failed without saying where
        report.findings.append(Finding(str(path), 0, engine, why))
    report.findings += _classtype_findings(path, lines, known, engine + " classification.config")
    return report
