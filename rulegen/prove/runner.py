"""`rulegen selftest`: build into a temporary folder, then run each target's proofs on it."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Sequence
from pathlib import Path

from rulegen.build import build
from rulegen.prove import Proof

PROVERS = {"suricata": "rulegen.prove.suricata", "sigma": "rulegen.prove.sigma",
           "iptables": "rulegen.prove.firewall", "nftables": "rulegen.prove.firewall"}


def run_selftest(knowledge: Sequence[Path], templates: Path, targets: Sequence[str]) -> list[Proof]:
    """Proofs for the selected targets, on a build of the knowledge whose lock is not saved."""
    import importlib

    work = Path(tempfile.mkdtemp(prefix="rulegen-selftest-"))
    try:
        result = build(knowledge, templates, work / "out", targets, save_lock=False)
        proofs: list[Proof] = []
        done: set[str] = set()
        for target in targets:
            module = PROVERS[target]
            if module in done:
                continue
            done.add(module)
            prover = importlib.import_module(module)
            wanted = [t for t in targets if PROVERS[t] == module]
            proofs += [p for p in prover.prove(result.kb, work / "out", work / module.rsplit(".", 1)[1])
                       if p.target in wanted]
        return proofs
    finally:
        shutil.rmtree(work, ignore_errors=True)
