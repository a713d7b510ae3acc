"""iptables-restore and nftables files: the engines' test modes, and the structure checks they skip.

`iptables-restore --test` (nf_tables backend) accepts a jump to an undeclared chain and enforces
neither the LOG prefix (29 characters) nor the comment (255) limits, so the built-in check always
runs beside it, and alone where the engine is missing or needs root.
"""

from __future__ import annotations

import re
import shlex
from pathlib import Path

from rulegen.validate import engines
from rulegen.validate.base import FileReport, Finding

BUILTIN_CHAINS = {
    "filter": {"INPUT", "FORWARD", "OUTPUT"},
    "nat": {"PREROUTING", "INPUT", "OUTPUT", "POSTROUTING"},
    "mangle": {"PREROUTING", "INPUT", "FORWARD", "OUTPUT", "POSTROUTING"},
    "raw": {"PREROUTING", "OUTPUT"},
    "security": {"INPUT", "FORWARD", "OUTPUT"},
}
TARGETS = {"ACCEPT", "DROP", "RETURN", "REJECT", "LOG", "NFLOG", "QUEUE", "NFQUEUE", "MARK", "CONNMARK", "DNAT",
           "SNAT", "MASQUERADE", "REDIRECT", "NOTRACK", "CT", "TCPMSS", "TRACE", "AUDIT", "CHECKSUM", "CLASSIFY",
           "DSCP", "TOS", "TTL", "HL", "SET", "SECMARK", "CONNSECMARK", "TEE", "LED", "SYNPROXY"}
COMMANDS = {"-A", "-I", "-D", "-R", "-N", "-X", "-F", "-P", "-Z", "-E", "--append", "--insert", "--delete"}
LOG_PREFIX_MAX = 29
COMMENT_MAX = 255
ENGINE_LINE = re.compile(r"(?:Error occurred at line: (\d+)|line (\d+) failed|at line (\d+))")
PORT_FLAGS = ("--dport", "--sport", "--dports", "--sports", "--destination-port", "--source-port", "--ports")
NFT_ERROR = re.compile(r"^(?P<file>.+?):(?P<line>\d+):\d+(?:-\d+)?: Error: (?P<msg>.*)$")


def is_ip6(path: Path, text: str) -> bool:
    return bool(re.search(r"ip6|6\.rules$|\.v6$", path.name) or "icmp6" in text
                or re.search(r"\s-[sd]\s+[0-9a-fA-F]*:[0-9a-fA-F:]*", text))


def _multiport_count(spec: str) -> int:
    return sum(2 if ":" in item else 1 for item in spec.split(","))


def builtin_iptables(path: Path, text: str) -> list[Finding]:
    """Tables, declared chains, COMMIT, known targets, kernel limits: what iptables-nft --test misses."""
    findings: list[Finding] = []
    table: str | None = None
    table_line = 0
    declared: set[str] = set()

    def add(line: int, message: str) -> None:
        findings.append(Finding(str(path), line, "built-in", message))

    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("*"):
            if table is not None:
                add(number, f"table {line[1:]} starts before COMMIT of table {table} (line {table_line})")
            table, table_line, declared = line[1:], number, set()
            if table not in BUILTIN_CHAINS:
                add(number, f"unknown table {table!r}")
            continue
        if line == "COMMIT":
            if table is None:
                add(number, "COMMIT outside a table")
            table = None
            continue
        if table is None:
            add(number, "rule outside a table (missing *filter header?)")
            continue
        if line.startswith(":"):
            m = re.fullmatch(r":(\S+)\s+(\S+)(?:\s+\[\d+:\d+\])?", line)
            if not m:
                add(number, f"malformed chain declaration {line!r}")
            elif len(m.group(1)) > 28:
                add(number, f"chain name {m.group(1)!r} is longer than 28 characters")
            else:
                declared.add(m.group(1))
            continue
        try:
            words = shlex.split(line)
        except ValueError as exc:
            add(number, f"unbalanced quotes: {exc}")
            continue
        if words[0] not in COMMANDS:
            add(number, f"unknown command {words[0]!r}")
            continue
        known_chains = declared | BUILTIN_CHAINS.get(table, set())
        if len(words) > 1 and words[0] in {"-A", "-I", "-D", "-R", "--append", "--insert", "--delete"} \
                and words[1] not in known_chains:
            add(number, f"chain {words[1]!r} is not declared in table {table}")
        for flag, value in zip(words, words[1:], strict=False):
            if flag in ("-j", "--jump", "-g", "--goto") and value not in TARGETS and value not in known_chains:
                add(number, f"jump to {value!r}: neither a known target nor a declared chain")
            elif flag == "--log-prefix" and len(value) > LOG_PREFIX_MAX:
                add(number, f"LOG prefix is {len(value)} characters; the kernel keeps {LOG_PREFIX_MAX}")
            elif flag == "--comment" and len(value) > COMMENT_MAX:
                add(number, f"comment is {len(value)} characters; the limit is {COMMENT_MAX}")
            elif flag in ("--dports", "--sports", "--ports") and _multiport_count(value) > 15:
                add(number, f"multiport lists {_multiport_count(value)} ports; at most 15 (a range counts two)")
            if flag in PORT_FLAGS and (bad := _bad_port(value)):
                add(number, f"invalid port {bad!r}")
    if table is not None:
        add(len(text.splitlines()), f"table {table} (line {table_line}) has no COMMIT")
    return findings


def _bad_port(spec: str) -> str | None:
    """The first port in a spec outside 0-65535 (service names are left to the engine)."""
    for item in spec.split(","):
        for part in item.split(":"):
            if part.isdigit() and int(part) > 65535:
                return part
    return None


def check_iptables(path: Path) -> FileReport:
    text = path.read_bytes().decode("utf-8", errors="replace")
    six = is_ip6(path, text)
    tool = "ip6tables-restore" if six else "iptables-restore"
    report = FileReport(str(path), "ip6tables" if six else "iptables")
    binary = engines.find(tool)
    if binary is None:
        report.checked_by.append(engines.unavailable(tool, "not found"))
    else:
        result = engines.run([binary, "--test", str(path)])
        output = (result.stdout + result.stderr).strip()
        engine = engines.version(binary)
        if result.returncode != 0 and engines.NEEDS_ROOT.search(output):
            report.checked_by.append(engines.unavailable(tool, "needs root"))
        else:
            report.checked_by.append(engine)
            if result.returncode != 0:
                m = ENGINE_LINE.search(output)
                line = _clamp(int(next(g for g in m.groups() if g)), text) if m else 0
                message = next((ln for ln in output.splitlines() if "Try `" not in ln and "Error occurred" not in ln),
                               output) or f"exit {result.returncode}"
                report.findings.append(Finding(str(path), line, engine, message.strip()))
    report.checked_by.append("built-in structure check")
    report.findings += builtin_iptables(path, text)
    return report


def _clamp(line: int, text: str) -> int:
    """Engines report end-of-file errors one line past the end: pin them to the last line."""
    return min(line, max(1, len(text.splitlines())))


def builtin_nft(path: Path, text: str) -> list[Finding]:
    """Braces, the `table` / `chain` / `set` structure nft -f needs, port ranges and set references."""
    findings: list[Finding] = []
    depth = 0
    sets = set(re.findall(r"^\s*set\s+(\w+)\s*\{", text, re.M))
    for number, raw in enumerate(text.splitlines(), 1):
        for port in re.findall(r"\b[sd]port\s+(?:!=\s*)?\{?\s*([\d,\s-]+)", raw):
            if any(int(p) > 65535 for p in re.findall(r"\d+", port)):
                findings.append(Finding(str(path), number, "built-in", f"port out of range in {port.strip()!r}"))
        for name in re.findall(r"@(\w+)", raw.split("#", 1)[0]):
            if name not in sets:
                findings.append(Finding(str(path), number, "built-in", f"set @{name} is not declared"))
        line = raw.split("#", 1)[0] if not raw.lstrip().startswith("#") else ""
        if line.count('"') % 2:
            findings.append(Finding(str(path), number, "built-in", "unbalanced quotes"))
        depth += line.count("{") - line.count("}")
        if depth < 0:
            findings.append(Finding(str(path), number, "built-in", "closing brace without an opening one"))
            depth = 0
        stripped = line.strip()
        if depth == 0 and stripped and not re.match(r"(table|delete|flush|add|create|define|include)\b|\}", stripped):
            findings.append(Finding(str(path), number, "built-in", f"statement outside a table: {stripped[:60]!r}"))
    if depth > 0:
        findings.append(Finding(str(path), len(text.splitlines()), "built-in", "unclosed brace at end of file"))
    return findings


def check_nft(path: Path) -> FileReport:
    text = path.read_bytes().decode("utf-8", errors="replace")
    report = FileReport(str(path), "nftables")
    binary = engines.find("nft")
    engine_ran = False
    if binary is None:
        report.checked_by.append(engines.unavailable("nft", "not found"))
    else:
        result = engines.run([binary, "-c", "-f", str(path)])
        output = (result.stdout + result.stderr).strip()
        if result.returncode != 0 and engines.NEEDS_ROOT.search(output) and "Error:" not in output.split("\n")[0]:
            report.checked_by.append(engines.unavailable("nft", "needs root"))
        else:
            engine = engines.version(binary)
            report.checked_by.append(engine)
            engine_ran = True
            for raw in output.splitlines():
                m = NFT_ERROR.match(raw.strip())
                if m:
                    report.findings.append(Finding(str(path), _clamp(int(m.group("line")), text), engine,
                                                   m.group("msg")))
            if result.returncode != 0 and not report.findings:
                report.findings.append(Finding(str(path), 0, engine, output or f"exit {result.returncode}"))
    if not engine_ran:
        report.findings += builtin_nft(path, text)
    return report
