"""`rulegen selftest`: build into a temporary folder, then run each target's proofs on it."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Sequence
from pathlib import Path

from rulegen.build import build
from rulegen.errors import Problem
from rulegen.prove import Proof


def run_selftest(knowledge: Sequence[Path], templates: Path, targets: Sequence[str],
                 policy: str | None = None) -> tuple[list[Proof], list[Problem]]:
    """Proofs for the selected targets, on a build of the knowledge whose lock is not saved, and the build's
    warnings (a proof of a text that only looks escaped proves the literal text: the warning says so); the
    firewall proofs expect the responses `policy` gives (as `rulegen build --policy` does)."""
    work = Path(tempfile.mkdtemp(prefix="rulegen-selftest-"))
    try:
        out = work / "out"
        result = build(knowledge, templates, out, targets, save_lock=False, policy=policy)
        kb = result.kb
        proofs: list[Proof] = []
        if "suricata" in targets:
            from rulegen.prove import suricata

            proofs += suricata.prove(kb, out, work / "suricata")
        if "sigma" in targets:
            from rulegen.prove import sigma

            proofs += sigma.prove(kb, out, work / "sigma")
        firewalls = tuple(t for t in ("iptables", "nftables") if t in targets)
        if firewalls:
            from rulegen.prove import firewall
            from rulegen.targets.firewall import with_policy

            proofs += firewall.prove(with_policy(kb, policy), out, work / "firewall", firewalls)
        return proofs, result.warnings
    finally:
        shutil.rmtree(work, ignore_errors=True)
