"""The knowledge base covers every row of the article's index, as typed facts, with its defects fixed."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from rulegen.knowledge import default_knowledge_dir, load_knowledge
from rulegen.model import Direction, Response, Severity

INDEX = Path(__file__).parent / "data" / "INDEX.md"
KB = load_knowledge([default_knowledge_dir()])


def _table_rows(heading: str) -> list[str]:
    """First cells of the markdown table under a heading of INDEX.md."""
    text = INDEX.read_text(encoding="utf-8")
    section = text.split(heading, 1)[1]
    rows = []
    for line in section.splitlines()[1:]:
        if line.startswith("## "):
            break
        if line.startswith("|") and not re.match(r"\|\s*-", line):
            rows.append(line.split("|")[1].strip())
    return rows[1:]  # drop the header row


def _first_port(cell: str) -> int:
    return int(re.match(r"\d+", cell).group())


DEST_ROWS = _table_rows("## Destination-port entries")
SOURCE_ROWS = _table_rows("## Source-port entries")


def _covers(entry, port: int) -> bool:
    return any(r.low <= port <= r.high for r in entry.ports)


def test_index_tables_were_read():
    assert len(DEST_ROWS) == 49 and len(SOURCE_ROWS) == 6


@pytest.mark.parametrize("row", DEST_ROWS)
def test_every_destination_row_has_an_entry(row):
    port = _first_port(row)
    assert any(e.table == "destination" and _covers(e, port) for e in KB.entries), row


@pytest.mark.parametrize("row", SOURCE_ROWS)
def test_every_source_row_has_an_entry(row):
    port = _first_port(row)
    assert any(e.table == "source" and _covers(e, port) for e in KB.entries), row


def test_port_classes():
    assert [(c.ports.low, c.ports.high) for c in KB.port_classes] == [(0, 1023), (1024, 49151), (49152, 65535)]
    assert all(e.port_class in {c.id for c in KB.port_classes} for e in KB.entries)


FAQ = "http://www.robertgraham.com/pubs/firewall-seen.html"


@pytest.mark.parametrize("entry", KB.entries, ids=lambda e: e.id)
def test_entry_is_bilingual_and_cites_its_sources(entry):
    """The article's entries cite the FAQ first; the current pack's rest on public sources of today (issue 14):
    at least two, none of them the 2003 FAQ, and every transport of the entry has a pattern."""
    assert entry.description_en and re.search(r"[\u4e00-\u9fff]", entry.description_zh)
    if entry.pack == "article":
        assert entry.references[0] == FAQ
    else:
        assert len(entry.references) >= 2 and FAQ not in entry.references
        assert all(re.match(r"https?://[^/\s]+\.[a-z]+/", r) for r in entry.references), entry.references
        assert {p.transport for p in entry.patterns} == set(entry.protocols)


@pytest.mark.parametrize("seed", ["317890", "000/8001/8080/8888", "natstat", "ake-ssh-known-hosts",
                                  "ICMPtype=1119", "bootps", "asquerade", "杏谡"])
def test_defects_of_the_seed_are_recorded(seed):
    assert any(seed in c.seed for e in KB.entries for c in e.corrections), seed


def _patterns(**want):
    found = []
    for p in KB.patterns:
        facts = {"transport": p.transport, "direction": p.direction, "response": p.response,
                 "src_ports": {str(r) for r in p.src_ports}, "dst_ports": {str(r) for r in p.dst_ports},
                 "dst_except": {str(r) for r in p.dst_ports_except}, "dst_net": str(p.dst_net),
                 "match": p.match.kind if p.match else None}
        if p.match:
            facts.update({k: v for k, v in vars(p.match).items() if v not in (None, ())})
        if all(facts.get(k) == v or (isinstance(facts.get(k), set) and v in facts[k]) for k, v in want.items()):
            found.append(p)
    return found


TYPED_FACTS = {
    "ftp anonymous": dict(match="ftp", ftp_user="anonymous"),
    "snmp public": dict(match="snmp", snmp_community="public"),
    "snmp private": dict(match="snmp", snmp_community="private"),
    "axfr over tcp": dict(match="dns", dns_qtype="AXFR", transport="tcp"),
    "udp source 53 to non-dns": dict(transport="udp", src_ports="53", dst_except="53"),
    "rogue dhcp offer": dict(match="dhcp", dhcp_message_type="offer"),
    "tftp read passwd": dict(match="tftp", tftp_opcode="read", tftp_filename="passwd"),
    "tftp write": dict(match="tftp", tftp_opcode="write"),
    "conducent dns name": dict(match="dns", dns_query="ads.conducent.com", direction=Direction.OUTBOUND),
    "conducent ips": dict(dst_net="list:conducent-adservers", direction=Direction.OUTBOUND),
    "udp 22 from 5632": dict(transport="udp", src_ports="5632", dst_ports="22"),
    "echo to broadcast": dict(dst_ports="7", dst_net="broadcast"),
    "chargen to broadcast": dict(dst_ports="19", dst_net="broadcast"),
    "echo-chargen loop": dict(transport="udp", src_ports="19", dst_ports="7"),
    "traceroute range": dict(transport="udp", dst_ports="33434-33600"),
    "sscan source 1-5": dict(transport="tcp", src_ports="1-5"),
    "ingreslock shell": dict(match="shell", dst_ports="1524"),
    "pcserver shell": dict(match="shell", dst_ports="600"),
    "ident rst": dict(dst_ports="113", response=Response.REJECT, transport="tcp"),
    "smtp relay refusal": dict(match="smtp", smtp_reply="relay-denied", dst_ports="25"),
    "smtp relay route": dict(match="smtp", smtp_rcpt="relay-route", dst_ports="25"),
    "portmapper over udp": dict(dst_ports="111", transport="udp", match=None),
    "portmapper call over udp": dict(match="rpc", rpc_program=100000, transport="udp", dst_ports="111"),
    "portmapper call over tcp": dict(match="rpc", rpc_program=100000, transport="tcp", dst_ports="111"),
    "mountd call over udp": dict(match="rpc", rpc_program=100005, transport="udp"),
    "mountd call over tcp": dict(match="rpc", rpc_program=100005, transport="tcp"),
    "rwho broadcast": dict(dst_ports="513", dst_net="broadcast"),
    "corba broadcast": dict(dst_ports="553", dst_net="broadcast"),
    "inoculan broadcast": dict(dst_ports="41508", dst_net="broadcast"),
}


@pytest.mark.parametrize("name", TYPED_FACTS)
def test_article_facts_are_typed(name):
    assert _patterns(**TYPED_FACTS[name]), name


def test_powwow_first_four_bytes():
    [p] = _patterns(match="content", dst_ports="13223")
    first = p.match.contents[0]
    assert (first.data, first.offset or 0, first.depth) == (b"OPNG", 0, 4)


def test_conducent_list_and_irix_accounts():
    assert set(KB.ip_lists["conducent-adservers"].addresses) == {
        f"{ip}/32" for ip in ("216.33.210.40", "216.33.199.77", "216.33.199.80", "216.33.199.81", "216.33.210.41")}
    [login] = _patterns(match="login")
    assert {"lp", "guest", "uucp", "nuucp", "demos", "tutor", "diag", "EZsetup", "OutOfBox", "4Dgifts"} \
        <= set(login.match.login_users)


INFORMATIONAL_ENTRIES = ("first-dynamic-port", "realaudio", "src-quake", "src-ntp", "src-ftp-data", "src-linux-nat")


@pytest.mark.parametrize("entry_id", INFORMATIONAL_ENTRIES)
def test_informational_entries_do_not_page_anyone(entry_id):
    entry = KB.entry(entry_id)
    for p in entry.patterns:
        assert p.severity is Severity.INFORMATIONAL
        assert p.response in (Response.ALERT, Response.LOG)


AUDIT = Path(__file__).resolve().parents[1] / "docs" / "audit.md"


def _audit_rows() -> dict[str, list[str]]:
    rows = {}
    for line in AUDIT.read_text(encoding="utf-8").splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if line.startswith("| `") and len(cells) == 4:
            rows[cells[0].strip("`")] = cells[1:]
    return rows


@pytest.mark.parametrize("entry", [e.id for e in KB.entries if e.pack == "article"])
def test_audit_has_a_line_per_entry_and_every_transport_is_covered_or_explained(entry):
    """Issue 13: docs/audit.md (the audit of the article pack) says per entry what it covers and leaves; a
    transport of the entry without a pattern is named in what it leaves, with the reason."""
    rows = _audit_rows()
    assert entry in rows, f"docs/audit.md has no line for {entry}"
    covers, leaves, why = rows[entry]
    assert covers and leaves and why
    for pattern in KB.entry(entry).patterns:
        assert f"`{pattern.id}`" in covers, f"{entry}: {pattern.id} not in the audit's covered forms"
    for transport in KB.entry(entry).protocols:
        if not any(p.transport == transport for p in KB.entry(entry).patterns):
            assert transport in leaves.lower(), f"{entry}: no {transport} pattern and the audit does not say why"


def test_audit_lists_only_known_entries():
    assert set(_audit_rows()) <= {e.id for e in KB.entries}
