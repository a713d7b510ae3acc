"""Finding and running the real engines; every engine process goes through `run`."""

from __future__ import annotations

import functools
import os
import re
import shutil
import signal
import subprocess
from pathlib import Path

from rulegen.errors import RulegenError

ENGINE_TIMEOUT = 600  # seconds; RULEGEN_ENGINE_TIMEOUT overrides it
NEEDS_ROOT = re.compile(r"Permission denied|you must be root|Operation not permitted", re.I)


class EngineMissing(RulegenError):
    """An engine is missing while RULEGEN_REQUIRE_ENGINES=1 demands it (exit 2)."""

    exit_code = 2


def require_engines() -> bool:
    return os.environ.get("RULEGEN_REQUIRE_ENGINES") == "1"


def disabled() -> set[str]:
    """Engines to treat as missing (RULEGEN_DISABLE_ENGINES=suricata,nft): compare built-in verdicts."""
    return {name.strip() for name in os.environ.get("RULEGEN_DISABLE_ENGINES", "").split(",") if name.strip()}


def find(tool: str) -> str | None:
    """The engine's path: PATH first, then the sbin folders Debian installs firewall tools in."""
    off = disabled()
    if tool in off or tool.replace("-restore", "") in off or tool.replace("6", "").replace("-restore", "") in off:
        return None
    found = shutil.which(tool)
    if found:
        return found
    for folder in ("/usr/sbin", "/sbin"):
        candidate = Path(folder) / tool
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return str(candidate)
    return None


def unavailable(tool: str, why: str) -> str:
    """The `checked by` text for a fallback; an error instead when engines are required."""
    if require_engines():
        raise EngineMissing(f"{tool} {why} and RULEGEN_REQUIRE_ENGINES=1")
    return f"built-in ({tool} {why})"


class TimedOut(subprocess.CompletedProcess):
    """An engine run that was killed at the timeout."""


def time_limit() -> float:
    """The longest an engine may run on one file: RULEGEN_ENGINE_TIMEOUT seconds, else ENGINE_TIMEOUT."""
    try:
        return float(os.environ.get("RULEGEN_ENGINE_TIMEOUT", ENGINE_TIMEOUT))
    except ValueError:
        return ENGINE_TIMEOUT


def run(cmd: list[str], timeout: float | None = None) -> subprocess.CompletedProcess:
    limit = time_limit() if timeout is None else timeout
    try:
        return subprocess.run(cmd, capture_output=True, text=True, errors="replace", timeout=limit,
                              stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired as exc:  # subprocess.run has killed it
        return TimedOut(cmd, -signal.SIGKILL, _text(exc.stdout), _text(exc.stderr) + f"\ntimed out after {limit:g} s")


def _text(data: bytes | str | None) -> str:
    return data.decode("utf-8", "replace") if isinstance(data, bytes) else data or ""


def failure(result: subprocess.CompletedProcess, what: str) -> str | None:
    """Why an engine run failed, when it did: `what` timed out, was killed by a signal, or exited non-zero.
    None for exit 0. The engine's own error lines, where it printed any, are the caller's to parse."""
    if isinstance(result, TimedOut):
        return f"{what} timed out after {result.stderr.rsplit(' after ', 1)[-1]}"
    if result.returncode < 0:
        try:
            name = signal.Signals(-result.returncode).name
        except ValueError:
            name = f"signal {-result.returncode}"
        return f"{what} was killed by {name}"
    if result.returncode > 0:
        tail = next((ln.strip() for ln in reversed((result.stdout + result.stderr).splitlines()) if ln.strip()), "")
        said = f": {tail[:300]}" if tail else " without an error message"
        return f"{what} failed (exit {result.returncode}){said}"
    return None


@functools.cache
def version(tool_path: str) -> str:
    """`suricata 7.0.10`, `iptables 1.8.9`, `nft 1.0.6`: the name and version an engine reports."""
    flag = "-V" if tool_path.endswith("suricata") else "--version"
    out = run([tool_path, flag], timeout=30)
    m = re.search(r"(\d+\.\d+(?:\.\d+)?)", out.stdout + out.stderr)
    name = Path(tool_path).name.replace("-restore", "")
    return f"{name} {m.group(1)}" if m else name
