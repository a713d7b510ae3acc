"""The JSON Schema of the knowledge format, written from the loader's own tables (rulegen/knowledge.py), so an
editor completes and checks a knowledge file as the loader reads it. `rulegen schema -o FILE` writes it; the
package ships it as rulegen/data/knowledge.schema.json. The loader stays the judge: the schema cannot say what
needs the whole knowledge base (unique ids, known IP lists, a technique's tactics, the zh of shipped entries)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from rulegen import knowledge as k
from rulegen.attack import tactics
from rulegen.model import CATEGORIES, NTP_REQUESTS, TRANSPORTS, Detect, Direction, Response, Severity
from rulegen.targets.suricata import CLASSTYPES

SCHEMA_FILE = Path(__file__).resolve().parent / "data" / "knowledge.schema.json"
DRAFT = "http://json-schema.org/draft-07/schema#"  # the draft yaml-language-server and most editors know best


def _ref(name: str) -> dict:
    return {"$ref": f"#/definitions/{name}"}


def _enum(values: Any, description: str = "") -> dict:
    return {"type": "string", "enum": [str(v) for v in values], **({"description": description} if description else {})}


def _int(low: int, high: int, description: str = "") -> dict:
    return {"type": "integer", "minimum": low, "maximum": high, **({"description": description} if description else {})}


def _list(item: dict, min_items: int = 0) -> dict:
    return {"type": "array", "items": item, **({"minItems": min_items} if min_items else {})}


# The loader's patterns where Python and ECMAScript (editors) read them alike; the rest are written out here.
URL = r"""^https?://[^\s"'<>]+$"""
ATTACK_URL = r"^https?://attack\.mitre\.org(/|$)"
TEXT = {"type": "string", "minLength": 1, "pattern": r"\S"}
FLAG = {"type": "boolean"}
HEX = {"type": "string", "pattern": r"^\s*([0-9a-fA-F]{2}\s*)+$", "description": "pairs of hex digits: \"0d 0a\""}
ITEM = {"text": {**TEXT, "description": 'the bytes as text; control characters need double quotes: "QUIT\\r\\n"'},
        "hex": HEX}

# The type of every key the loader's tables name, by object. A key without a type here gets none in the
# schema (tests/test_schema.py says which): add it when the loader gains one.
TYPES: dict[str, dict[str, dict]] = {
    "file": {
        "home": _ref("home"), "port_classes": _list(_ref("port_class")), "ip_lists": _list(_ref("ip_list")),
        "entries": _list(_ref("entry")), "overrides": _list(_ref("override")),
        "pack": _ref("pack"),
    },
    # pack.yaml (SPEC14 §1), the one file of a pack folder that holds only `pack:`
    "pack": {"id": _ref("slug"), "title": TEXT, "author": {**TEXT, "description": "the Sigma rules' author"},
             "msg_prefix": {"type": "string", "pattern": "^[A-Za-z0-9][A-Za-z0-9_.-]*$",
                            "description": "the first word of the Suricata msg (default RULEGEN)"},
             "sids": {"type": "string", "pattern": r"^\s*\d+\s*-\s*\d+\s*$",
                      "description": "the pack's SID range, \"low-high\""}},
    "home": {"title": TEXT, "addresses": _list(_ref("address"), 1)},
    "port class": {"id": _ref("slug"), "ports": _ref("port"), "title": TEXT, "description": _ref("description")},
    "ip list": {"id": _ref("slug"), "title": TEXT, "addresses": _list(_ref("address"))},
    "override": {"pattern": _ref("slug"), "severity": _enum(Severity), "response": _enum(Response),
                 "disabled": FLAG, "reason": TEXT},
    "correction": {"seed": TEXT, "fixed": TEXT, "note": TEXT},
    "sweep": {"distinct": _enum(k.SWEEP_DISTINCT), "count": _int(2, 100000), "seconds": _int(1, 86400)},
    "attack": {"tactic": _enum(tactics(), "ATT&CK tactic short name, one of the technique's tactics"),
               "technique": {"type": "string", "pattern": k.TECHNIQUE.pattern, "description": "T1046 or T1595.001"}},
    "entry": {
        "id": _ref("slug"), "table": _enum(k.TABLES), "ports": _list(_ref("port"), 1),
        "protocols": _list(_enum(TRANSPORTS), 1), "service": TEXT, "title": TEXT, "description": _ref("description"),
        "references": _list({"type": "string", "pattern": URL, "not": {"pattern": ATTACK_URL},
                             "description": "a public source (an ATT&CK page goes under a pattern's attack:)"}, 1),
        "corrections": _list(_ref("correction")), "tags": _list(_ref("slug")),
        "patterns": _list(_ref("pattern"), 1),
    },
    "pattern": {
        "id": _ref("slug"), "title": {**TEXT, "maxLength": 100}, "category": _enum(CATEGORIES),
        "direction": _enum(Direction), "transport": _enum(TRANSPORTS), "src_ports": _list(_ref("port"), 1),
        "dst_ports": _list(_ref("port"), 1), "dst_ports_except": _list(_ref("port"), 1),
        "src_net": _ref("net"), "dst_net": _ref("net"), "detect": _enum(Detect), "flow": _enum(k.FLOWS),
        "match": _ref("match"), "sweep": _ref("sweep"), "severity": _enum(Severity),
        "classtype": _enum(sorted(CLASSTYPES), "from Suricata's classification.config"), "attack": _ref("attack"),
        "cves": _list({"type": "string", "pattern": k.CVE.pattern}), "response": _enum(Response),
        "false_positives": TEXT, "not_expressed": _ref("not_expressed"),
        "samples": {"type": "object", "additionalProperties": False,
                    "properties": {side: _list(_ref("sample"), 1) for side in ("fires", "quiet")},
                    "description": "real application messages: fires must raise the rule, quiet must not"},
    },
    "content item": {**ITEM, "offset": _int(0, 65535), "depth": _int(1, 65535), "nocase": FLAG,
                     "distance": _int(0, 65535, "bytes after the previous item's match"),
                     "within": _int(1, 65535, "the item ends at most this far after the previous one")},
}
MATCH_TYPES: dict[str, dict[str, dict]] = {
    "dns": {"query": {**TEXT, "description": "a DNS name"}, "qtype": _enum(k.DNS_QTYPES)},
    "snmp": {"community": TEXT}, "ftp": {"user": {"type": "string", "pattern": r"^[\x21-\x7e]+$"}},
    "tftp": {"opcode": _enum(k.TFTP_OPCODES), "filename": TEXT},
    "dhcp": {"message_type": _enum(k.DHCP_MESSAGE_TYPES)},
    "login": {"users": _list({"type": "string", "pattern": r"^[A-Za-z0-9_.-]{1,32}$"}, 1)},
    "rpc": {"program": _int(0, 2**32 - 1, "ONC RPC program number")},
    "netbios": {"query": _enum(k.NETBIOS_QUERIES)}, "shell": {"response": TEXT},
    "smtp": {"reply": _enum(k.SMTP_REPLIES), "rcpt": _enum(k.SMTP_RCPTS)},
    "http": {"method": {"type": "string", "pattern": "^[A-Z]+$"}, "uri": TEXT,
             "uri_match": _enum(k.HTTP_URI_MATCHES),
             "header": {"type": "object", "required": ["name"], "additionalProperties": False,
                        "properties": {"name": TEXT, "value": TEXT}}},
    "ntp": {"mode": _int(0, 7), "request": _enum(tuple(NTP_REQUESTS))},
}
# Keys of which exactly one is given.
ONE_OF = {"content item": ("text", "hex"), "sample": ("text", "hex"), "dns": ("query", "qtype"),
          "smtp": ("reply", "rcpt")}


def _object(keys: tuple[str, ...], required: tuple[str, ...], types: dict[str, dict], one_of: tuple = ()) -> dict:
    schema: dict[str, Any] = {"type": "object", "additionalProperties": False,
                              "properties": {key: types.get(key, {}) for key in keys}}
    if required:
        schema["required"] = list(required)
    if one_of:
        schema["oneOf"] = [{"required": [key]} for key in one_of]
    return schema


def _match() -> dict:
    kinds: dict[str, dict] = {}
    for kind in k.MATCH_KINDS:
        if kind == "content":
            kinds[kind] = _list(_ref("content_item"), 1)
        else:
            allowed, required = k.MATCH_KEYS[kind]
            kinds[kind] = _object(allowed, required, MATCH_TYPES.get(kind, {}), ONE_OF.get(kind, ()))
    return {"type": "object", "minProperties": 1, "maxProperties": 1, "additionalProperties": False,
            "properties": kinds, "description": "exactly one kind of application fact"}


def generate() -> dict:
    """The schema as a JSON-ready dict (the same every run: written from tables, in their order)."""
    objects = {name: _object(*k.OBJECT_KEYS[name], TYPES[name]) for name in k.OBJECT_KEYS}
    pattern = _object(k.PATTERN_KEYS, k.PATTERN_REQUIRED, TYPES["pattern"])
    pattern["allOf"] = [{"if": {"required": ["detect"], "properties": {"detect": {"const": detect}}},
                         "then": {"required": [key]}} for detect, key in (("payload", "match"), ("sweep", "sweep"))]
    names = {"port class": "port_class", "ip list": "ip_list"}
    definitions = {
        "slug": {"type": "string", "pattern": k.SLUG.pattern},
        "port": {"description": "a port (0-65535) or a 'low-high' range", "oneOf": [
            _int(0, 65535), {"type": "string", "pattern": r"^\s*\d+\s*(-\s*\d+\s*)?$"}]},
        "address": {"type": "string", "description": "an IPv4 or IPv6 address or CIDR block"},
        "net": {"type": "string", "pattern": r"^(home|external|any|broadcast|(not-)?list:[a-z0-9][a-z0-9-]*)$"},
        "description": {"type": "object", "additionalProperties": False, "required": ["en"], "properties": {
            "en": {**TEXT, "minLength": 20, "description": "English, a sentence at least"},
            "zh": {**TEXT, "description": "Chinese; required in rulegen's shipped knowledge, optional at a site"}}},
        **{names.get(name, name): schema for name, schema in objects.items()},
        "entry": _object(k.ENTRY_KEYS, k.ENTRY_REQUIRED, TYPES["entry"]),
        "pattern": pattern,
        "content_item": _object(k.CONTENT_KEYS, (), TYPES["content item"], ONE_OF["content item"]),
        "sample": _object(("text", "hex"), (), ITEM, ONE_OF["sample"]),
        "match": _match(),
        "not_expressed": _object((*k.TARGET_NAMES, "firewall"), (),
                                 {t: {**TEXT, "description": f"why {t} must not express it"}
                                  for t in (*k.TARGET_NAMES, "firewall")}),
    }
    file_keys = (*k.FILE_KEYS, "pack")
    return {
        "$schema": DRAFT,
        "title": "rulegen knowledge file",
        "description": "A YAML file of a rulegen knowledge folder (docs/knowledge.md). Written by `rulegen schema` "
                       "from the loader's tables; the loader's errors are the final word.",
        "type": "object",
        "additionalProperties": False,
        "properties": {key: TYPES["file"].get(key, {}) for key in file_keys},
        "definitions": definitions,
    }


def dumps() -> str:
    return json.dumps(generate(), indent=2, ensure_ascii=False) + "\n"


def untyped() -> list[str]:
    """The keys of the loader's tables that the schema gives no type (a gap to fill in TYPES or MATCH_TYPES)."""
    gaps = [f"file.{key}" for key in k.FILE_KEYS if key not in TYPES["file"]]
    gaps += [f"{name}.{key}" for name in k.OBJECT_KEYS for key in k.OBJECT_KEYS[name][0] if key not in TYPES[name]]
    gaps += [f"entry.{key}" for key in k.ENTRY_KEYS if key not in TYPES["entry"]]
    gaps += [f"pattern.{key}" for key in k.PATTERN_KEYS if key not in TYPES["pattern"]]
    gaps += [f"content item.{key}" for key in k.CONTENT_KEYS if key not in TYPES["content item"]]
    gaps += [f"{kind}.{key}" for kind, (allowed, _) in k.MATCH_KEYS.items() for key in allowed
             if key not in MATCH_TYPES.get(kind, {})]
    return gaps
