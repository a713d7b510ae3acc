"""Atomic output: a new out/ is written beside the old one and swapped in; the manifest describes it."""

from __future__ import annotations

import ctypes
import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

from rulegen.targets import Artifact


def sha256(content: bytes) -> str:
    return hashlib.sha256(content).hexdigest()


def manifest(artifacts: list[Artifact], patterns: list[dict[str, Any]], targets: list[str],
             version: str, siem: dict[str, Any] | None = None, firewall: dict[str, Any] | None = None) -> str:
    """manifest.json: one artifact or pattern a line, so a diff of two builds reads line by line (and the
    JSON encoder's C path does the work: `indent` would switch it to the slow pure-Python one).
    `siem`: per SIEM backend, what its conversion of the Sigma rules gave (queries, embedded, skipped).
    `firewall`: how the firewall targets were built (`--policy`, `--wan-if`, `--hook`)."""
    artifact_rows = [{"path": a.path, "sha256": sha256(a.content), "patterns": sorted(set(a.patterns))}
                     for a in sorted(artifacts, key=lambda a: a.path)]

    def rows(items: list[dict[str, Any]]) -> str:
        return "[\n" + ",\n".join(f"    {json.dumps(i, ensure_ascii=False)}" for i in items) + "\n  ]"

    siem_part = f',\n  "siem": {json.dumps(siem, ensure_ascii=False)}' if siem else ""
    siem_part += f',\n  "firewall": {json.dumps(firewall)}' if firewall else ""
    return (f'{{\n  "generator": {json.dumps(f"rulegen {version}")},\n  "targets": {json.dumps(targets)},\n'
            f'  "artifacts": {rows(artifact_rows)},\n  "patterns": {rows(patterns)}{siem_part}\n}}\n')


def stage(out_dir: Path, files: dict[str, bytes]) -> Path:
    """Write files into a new temp dir beside out_dir (same filesystem, so the swap is a rename)."""
    out_dir = out_dir.resolve()
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.new-", dir=out_dir.parent))
    try:
        for rel, content in sorted(files.items()):
            path = staging / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(content)
            if rel.endswith(".sh"):
                path.chmod(0o755)
        staging.chmod(0o755)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return staging


def discard(staging: Path) -> None:
    shutil.rmtree(staging, ignore_errors=True)


def swap_in(staging: Path, out_dir: Path) -> None:
    """Replace out_dir by staging; the old out/ stays whole until the swap."""
    out_dir = out_dir.resolve()
    try:
        if out_dir.exists() and _exchange(staging, out_dir):
            shutil.rmtree(staging, ignore_errors=True)  # staging now holds the previous out/
        elif out_dir.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.old-", dir=out_dir.parent))
            old.rmdir()
            os.rename(out_dir, old)
            os.rename(staging, out_dir)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.rename(staging, out_dir)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


def _exchange(a: Path, b: Path) -> bool:
    """Swap two directories in one step (Linux renameat2 RENAME_EXCHANGE); False where unsupported."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        renameat2 = libc.renameat2
    except (OSError, AttributeError):
        return False
    at_fdcwd, rename_exchange = -100, 2
    result = renameat2(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), rename_exchange)
    return result == 0


def write_file_atomic(path: Path, text: str) -> None:
    """Replace `path` in one rename; the file gets the mode a plain write would give (0666 less the umask), not
    mkstemp's private 0600: a lock file is shared, committed and read by others."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        umask = os.umask(0)
        os.umask(umask)
        os.fchmod(fd, 0o666 & ~umask)
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
