"""iptables-restore and nftables files: the engines' test modes, and the structure checks they skip.

`iptables-restore --test` (nf_tables backend) accepts a jump to an undeclared chain and enforces
neither the LOG prefix (29 characters) nor the comment (255) limits, so the built-in check always
runs beside it, and alone where the engine is missing or needs root. It does insist that every
`--match-set` set exists, and ipset has no test mode: both run in a throwaway network namespace
(`unshare -n`; ipsets are per namespace), where the ipset files beside the rules are loaded first.
"""

from __future__ import annotations

import ipaddress
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
MATCH_SET = re.compile(r"--match-set\s+(\S+)")
IPSET_NAME_MAX = 31
IPSET_ERROR = re.compile(r"Error in line (\d+): (.*)")
IPSET_TYPES = {"hash:net", "hash:ip"}
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


def _ipset_files(path: Path) -> list[Path]:
    return sorted(p for p in path.parent.glob("*.ipset") if p.is_file())


def _declared_sets(ipset_files: list[Path]) -> set[str]:
    names: set[str] = set()
    for file in ipset_files:
        names.update(re.findall(r"^\s*(?:-N|create)\s+(\S+)", file.read_text(encoding="utf-8", errors="replace"),
                                re.M))
    return names


def with_ipsets(path: Path, sets: list[str], family: str) -> list[str] | None:
    """`iptables-restore --test` in a throwaway namespace that has the sets it matches: those of the ipset
    files beside it, and an empty stand-in for any other (a set the host itself provides). None: no way."""
    unshare, ipset = engines.find("unshare"), engines.find("ipset")
    if unshare is None or ipset is None:
        return None
    steps = [f"{shlex.quote(ipset)} -exist restore -file {shlex.quote(str(f))} >/dev/null 2>&1"
             for f in _ipset_files(path)]
    steps += [f"{{ {shlex.quote(ipset)} -n list {shlex.quote(n)} >/dev/null 2>&1 || "
              f"{shlex.quote(ipset)} create {shlex.quote(n)} hash:net family {family}; }}" for n in sets]
    return [unshare, "-n", "sh", "-c", "; ".join(steps) + ' && exec "$@"', "sh"]


def check_iptables(path: Path) -> FileReport:
    text = path.read_bytes().decode("utf-8", errors="replace")
    six = is_ip6(path, text)
    tool = "ip6tables-restore" if six else "iptables-restore"
    report = FileReport(str(path), "ip6tables" if six else "iptables")
    binary = engines.find(tool)
    sets = sorted(set(MATCH_SET.findall(text)))
    wrapper = with_ipsets(path, sets, "inet6" if six else "inet") if sets else []
    if binary is None:
        report.checked_by.append(engines.unavailable(tool, "not found"))
    elif wrapper is None:
        report.checked_by.append(engines.unavailable(tool, "cannot get the ipsets it matches (needs ipset and "
                                                           "unshare)"))
    else:
        result = engines.run([*wrapper, binary, "--test", str(path)])
        output = (result.stdout + result.stderr).strip()
        engine = engines.version(binary)
        if result.returncode != 0 and engines.NEEDS_ROOT.search(output):
            report.checked_by.append(engines.unavailable(tool, "needs root"))
        else:
            report.checked_by.append(engine)
            why = engines.failure(result, f"{tool} --test")
            m = ENGINE_LINE.search(output)
            if why and m and result.returncode > 0:
                line = _clamp(int(next(g for g in m.groups() if g)), text)
                message = next((ln for ln in output.splitlines() if "Try `" not in ln and "Error occurred" not in ln),
                               "") or why
                report.findings.append(Finding(str(path), line, engine, message.strip()))
            elif why:  # killed, timed out, or failed without naming a line
                report.findings.append(Finding(str(path), 0, engine, why))
    report.checked_by.append("built-in structure check")
    report.findings += builtin_iptables(path, text)
    ipset_files = _ipset_files(path)
    if sets and ipset_files:  # generated output: its own ipset file must create every set it matches
        declared = _declared_sets(ipset_files)
        for number, line in enumerate(text.splitlines(), 1):
            for name in MATCH_SET.findall(line):
                if name not in declared:
                    report.findings.append(Finding(str(path), number, "built-in",
                                                   f"set {name!r} is created by none of the ipset files beside it"))
    return report


def builtin_ipset(path: Path, text: str) -> list[Finding]:
    """An `ipset restore` file: known commands, names within 31 characters, sets created before use,
    members that are addresses or networks of the set's family (hash:net refuses a /0)."""
    findings: list[Finding] = []
    families: dict[str, int] = {}

    def add(line: int, message: str) -> None:
        findings.append(Finding(str(path), line, "built-in", message))

    def known(line: int, name: str) -> bool:
        if name not in families:
            add(line, f"set {name!r} is used before it is created")
        return name in families

    for number, raw in enumerate(text.splitlines(), 1):
        words = raw.split()
        if not words or words[0].startswith("#"):
            continue
        command, args = words[0], [w for w in words[1:] if w not in ("-exist", "-!")]
        if command in ("create", "-N"):
            if len(args) < 2:
                add(number, "create needs a set name and a type")
                continue
            name, kind = args[0], args[1]
            if len(name) > IPSET_NAME_MAX:
                add(number, f"set name {name!r} is longer than {IPSET_NAME_MAX} characters")
            if kind not in IPSET_TYPES:
                add(number, f"set type {kind!r}: rulegen's check knows {', '.join(sorted(IPSET_TYPES))}")
            options = dict(zip(args[2::2], args[3::2], strict=False))
            family = options.get("family", "inet")
            if family not in ("inet", "inet6"):
                add(number, f"unknown family {family!r}")
            families[name] = 6 if family == "inet6" else 4
        elif command in ("add", "del", "-A", "-D"):
            if len(args) < 2:
                add(number, f"{command} needs a set name and a member")
            elif known(number, args[0]):
                try:
                    net = ipaddress.ip_network(args[1], strict=False)
                except ValueError:
                    add(number, f"{args[1]!r} is not an address or network")
                    continue
                if net.version != families[args[0]]:
                    add(number, f"{args[1]} is IPv{net.version}; set {args[0]} holds IPv{families[args[0]]}")
                elif net.prefixlen == 0:
                    add(number, f"{args[1]}: hash:net refuses a /0 prefix")
        elif command in ("swap", "-W"):
            if len(args) != 2:
                add(number, "swap needs two set names")
            elif all(known(number, n) for n in args) and families[args[0]] != families[args[1]]:
                add(number, f"cannot swap sets of different families: {args[0]}, {args[1]}")
        elif command in ("flush", "destroy", "-F", "-X"):
            for name in args[:1]:
                if known(number, name) and command in ("destroy", "-X"):
                    del families[name]
        else:
            add(number, f"unknown ipset command {command!r}")
    return findings


def check_ipset(path: Path) -> FileReport:
    """`ipset restore` in a throwaway network namespace (it has no test mode), and the built-in check."""
    text = path.read_bytes().decode("utf-8", errors="replace")
    report = FileReport(str(path), "ipset")
    ipset, unshare = engines.find("ipset"), engines.find("unshare")
    if ipset is None or unshare is None:
        report.checked_by.append(engines.unavailable("ipset", "not found" if ipset is None else "(unshare) not found"))
    else:
        result = engines.run([unshare, "-n", ipset, "restore", "-file", str(path)])
        output = (result.stdout + result.stderr).strip()
        if result.returncode != 0 and engines.NEEDS_ROOT.search(output):
            report.checked_by.append(engines.unavailable("ipset", "needs root (a throwaway network namespace)"))
        else:
            engine = engines.version(ipset)
            report.checked_by.append(engine)
            why = engines.failure(result, "ipset restore")
            m = IPSET_ERROR.search(output)
            if why and m and result.returncode > 0:
                report.findings.append(Finding(str(path), _clamp(int(m.group(1)), text), engine, m.group(2).strip()))
            elif why:  # killed, timed out, or failed without naming a line
                report.findings.append(Finding(str(path), 0, engine, why))
    report.checked_by.append("built-in structure check")
    report.findings += builtin_ipset(path, text)
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
            why = engines.failure(result, "nft -c")
            if why and (result.returncode < 0 or not report.findings):  # killed, timed out, or no line named
                report.findings.append(Finding(str(path), 0, engine, why))
    if not engine_ran:
        report.findings += builtin_nft(path, text)
    return report
