"""REPORT.html opens with two inline SVG pictures, looked at in headless Chromium: a port map with one mark per
pattern and a coverage heat map with one cell per entry and target. Both lay out, paint and carry their
tooltips, and the page stays script-free and self-contained. Run over the shipped knowledge (built by the CLI)
and over a knowledge of two packs: the shipped one with a site folder on top, built for three targets only."""

from __future__ import annotations

import dataclasses
import json
import re
import subprocess
from collections import Counter
from html import unescape
from pathlib import Path

import pytest
from conftest import REPO, copy_knowledge, need
from test_report import Page, _assert_self_contained

from rulegen.build import compile_rules
from rulegen.charts import SEVERITY_COLOUR, STATE_COLOUR
from rulegen.knowledge import load_knowledge
from rulegen.model import KnowledgeBase, Pattern, PortRange
from rulegen.render import default_templates_dir
from rulegen.report import render_report
from rulegen.targets import TARGETS

PROBE = REPO / "tests" / "data" / "report_probe.js"

# A site folder "lab" with its own pattern on a high port, a port range, and a payload pattern the firewalls
# cannot express although it asks them to drop (a warning cell). It switches off one of ingreslock's two
# patterns and the only pattern of sql-1114 (an entry left with no pattern: a gap in every target built).
LAB = """overrides:
  - pattern: ingreslock-inbound-probe
    disabled: true
    reason: the lab's Ingres listens on 1524
  - pattern: sql-1114-inbound-probe
    disabled: true
    reason: the lab's own SQL service
entries:
  - id: lab-console
    table: destination
    ports: [47808]
    protocols: [tcp]
    service: lab-console
    title: Lab console
    description:
      en: "The lab's management console, never to be reached from outside."
      zh: "实验室的管理控制台，不应从外部访问。"
    references: ["https://example.org/lab/console"]
    patterns:
      - id: lab-console-probe
        title: Probe of the lab console from outside
        category: SCAN
        direction: inbound
        transport: tcp
        detect: probe
        dst_ports: [47808]
        severity: critical
        classtype: attempted-recon
        response: drop
        false_positives: Unlikely outside a lab.
      - id: lab-console-login
        title: Login banner request to the lab console
        category: EXPLOIT
        direction: inbound
        transport: tcp
        detect: payload
        dst_ports: [47808]
        match:
          content:
            - {text: "LOGIN admin", offset: 0, depth: 11}
        severity: high
        classtype: attempted-admin
        response: drop
        false_positives: Unlikely outside a lab.
  - id: lab-sensors
    table: destination
    ports: ["50000-50100"]
    protocols: [udp]
    service: lab-sensors
    title: Lab sensor feeds
    description:
      en: "Sensor feeds of the lab, sent as UDP datagrams to a block of ports."
      zh: "实验室的传感器数据，以UDP报文发往一段端口。"
    references: ["https://example.org/lab/sensors"]
    patterns:
      - id: lab-sensors-inbound
        title: Sensor feed traffic arriving from outside
        category: POLICY
        direction: inbound
        transport: udp
        detect: traffic
        dst_ports: ["50000-50100"]
        severity: informational
        classtype: not-suspicious
        response: log
        false_positives: A sensor placed outside the home network on purpose.
"""
TWO_PACK_TARGETS = ["suricata", "sigma", "iptables"]  # nftables left out: its column is "not built"


@dataclasses.dataclass
class Report:
    html: Path
    kb: KnowledgeBase
    rows: list[dict]  # the coverage rows, as in manifest.json
    built: list[str]


def _two_packs(root: Path) -> Report:
    knowledge = copy_knowledge(root / "knowledge")
    site = root / "lab"
    site.mkdir()
    (site / "lab.yaml").write_text(LAB, encoding="utf-8")
    compiled = compile_rules([knowledge, site], default_templates_dir(), TWO_PACK_TARGETS)
    html = root / "REPORT.html"
    html.write_text(render_report(compiled, default_templates_dir()), encoding="utf-8")
    return Report(html, compiled.kb, compiled.rows, compiled.targets)


@pytest.fixture(scope="module", params=["shipped", "two-packs"])
def report(request, tmp_path_factory) -> Report:
    if request.param == "shipped":
        built = request.getfixturevalue("built")
        return Report(built / "REPORT.html", load_knowledge([built.parent / "knowledge"]),
                      request.getfixturevalue("manifest")["patterns"], TARGETS)
    return _two_packs(tmp_path_factory.mktemp("two-packs"))


@pytest.fixture(scope="module")
def probed(report, tmp_path_factory) -> dict:
    """The report in Chromium, measured by tests/data/report_probe.js run in a copy of the page."""
    chromium = need("chromium")
    work = tmp_path_factory.mktemp("probe")
    page = work / "probe.html"
    html = report.html.read_text(encoding="utf-8")
    page.write_text(html.replace("</body>", f"<script>{PROBE.read_text()}</script></body>"), encoding="utf-8")
    result = subprocess.run([chromium, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
                             f"--user-data-dir={work / 'profile'}", "--window-size=1280,1000",
                             "--virtual-time-budget=20000", "--dump-dom", page.as_uri()],
                            capture_output=True, text=True, timeout=180)
    assert result.returncode == 0, result.stderr[-2000:]
    found = re.search(r'<pre id="probe-result">(.*?)</pre>', result.stdout, re.S)
    assert found, result.stderr[-2000:]
    return {**json.loads(unescape(found.group(1))), "dom": result.stdout}


def _picture(probed: dict, name: str) -> dict:
    [picture] = [p for p in probed["pictures"] if p["id"] == name]
    return picture


def _rgb(colour: str) -> str:
    return f"rgb({int(colour[1:3], 16)}, {int(colour[3:5], 16)}, {int(colour[5:7], 16)})"


def test_the_report_opens_with_two_accessible_pictures_and_has_no_script(report):
    html = report.html.read_text(encoding="utf-8")
    page = Page(html)
    assert not [tag for tag, _ in page.tags if tag == "script"]
    assert html.index('id="port-map"') < html.index('id="heat-map"') < html.index('class="totals"')
    svgs = [a for tag, a in page.tags if tag == "svg"]
    assert len(svgs) == 2
    for svg in svgs:
        assert svg["role"] == "img" and svg["aria-label"] and svg["viewbox"].startswith("0 0 ")
        assert svg["aria-describedby"] in page.ids  # the <desc> that says what the picture shows
        after = html.split(f'aria-describedby="{svg["aria-describedby"]}">', 1)[1]
        assert re.match(r"\s*<title>[^<]+</title>\s*<desc id=\"[\w-]+\">[^<]+</desc>", after)
    _assert_self_contained(html, {ref for e in report.kb.entries for ref in e.references})


def _ports(kb: KnowledgeBase, pattern: Pattern) -> tuple[PortRange, ...]:
    """The ports a pattern watches: destination, else source, else (any port) its entry's."""
    return pattern.dst_ports or pattern.src_ports or kb.entry(pattern.entry_id).ports


def test_every_pattern_is_one_mark_on_the_port_map(report, probed):
    marks = _picture(probed, "port-map")["marks"]
    assert Counter(m["pattern"] for m in marks) == Counter(p.id for p in report.kb.patterns)
    patterns = {p.id: p for p in report.kb.patterns}
    for mark in marks:
        pattern = patterns[mark["pattern"]]
        pack = report.kb.entry(pattern.entry_id).pack
        assert mark["severity"] == pattern.severity.value and mark["pack"] == pack, mark
        assert mark["fill"] == _rgb(SEVERITY_COLOUR[pattern.severity.value]), mark
        assert mark["inside"] and mark["hit"], mark  # laid out in the picture, and not hidden under another mark
        title = mark["title"]
        assert title.startswith(f"{pattern.id}: ") and pattern.title in title
        assert f", {pattern.severity.value}, pack {pack}" in title
        assert ",".join(str(r) for r in _ports(report.kb, pattern)) in title, title
    assert {m["pack"] for m in marks} == {e.pack for e in report.kb.entries}
    # a mark on one port has its severity's colour and shape, told apart from every other severity's
    single = [m for m in marks if len(ports := _ports(report.kb, patterns[m["pattern"]])) == 1 and ports[0].is_single]
    look = {m["severity"]: (m["fill"], *m["shape"]) for m in single}
    # the same look within a rounding step: getBBox of one path differs by 0.1 at some positions
    assert all(m["fill"] == look[m["severity"]][0]
               and all(abs(a - b) <= 0.25 for a, b in zip(m["shape"], look[m["severity"]][1:], strict=True))
               for m in single)
    assert len(set(look.values())) == len(look) > 1


def test_the_port_map_keeps_port_order_and_spreads_the_well_known_ports(report, probed):
    picture = _picture(probed, "port-map")
    first_port = {p.id: _ports(report.kb, p)[0] for p in report.kb.patterns}
    # a mark's x: the middle of its first port range; on single ports, it grows with the port
    at = sorted((first_port[m["pattern"]].low, m["x"]) for m in picture["marks"] if first_port[m["pattern"]].is_single)
    assert len(at) > 1 and all(a[1] <= b[1] + 0.5 for a, b in zip(at, at[1:], strict=False))
    below = [x for port, x in at if port < 1024]
    above = [x for port, x in at if port >= 1024]
    assert below and above
    assert max(below) - min(below) >= picture["width"] / 4  # the crowded well-known ports get a fair share


def _expected_state(rows: list[dict], entry: str, target: str, built: list[str]) -> str:
    """From the coverage rows of the entry's patterns that are switched on."""
    cells = [r["coverage"][target] for r in rows if r["entry"] == entry]
    expressed = sum(c["expressed"] for c in cells)
    if target not in built:
        return "not built"
    if any(c.get("warning") for c in cells):
        return "warning"
    return "gap" if expressed == 0 else "expressed" if expressed == len(cells) else "partial"


def test_every_entry_and_target_is_one_cell_of_the_heat_map(report, probed):
    cells = _picture(probed, "heat-map")["cells"]
    switched_off = {p.id: p for p in report.kb.disabled}
    rows = [r for r in report.rows if r["id"] not in switched_off]
    assert Counter((c["entry"], c["target"]) for c in cells) == Counter(
        (e.id, t) for e in report.kb.entries for t in TARGETS)
    # what a reader tells the states apart by: colour, a half in another colour, a glyph
    look = {c["state"]: (c["fill"], c["half"], c["glyph"]) for c in cells}
    assert all((c["fill"], c["half"], c["glyph"]) == look[c["state"]] for c in cells)  # one look per state...
    assert len(set(look.values())) == len(look)  # ...and no two states alike
    for cell in cells:
        state = _expected_state(rows, cell["entry"], cell["target"], report.built)
        assert cell["state"] == state and cell["fill"] == _rgb(STATE_COLOUR[state]), cell
        assert cell["inside"] and cell["hit"], cell
        assert cell["title"].startswith(f"{cell['entry']} × {cell['target']}: {state}")
        for row in rows:  # every gap of the entry's patterns, with its reason, is in the tooltip
            coverage = row["coverage"][cell["target"]]
            if row["entry"] == cell["entry"] and not coverage["expressed"]:
                said = f"WARNING: {coverage['warning']}" if coverage.get("warning") else f"gap: {coverage['reason']}"
                assert f"{row['id']}: {said}" in cell["title"], cell
    html = report.html.read_text(encoding="utf-8")
    assert not [pid for pid in switched_off if pid in html]  # switched off: in no output, this page included


@pytest.mark.parametrize("report", ["two-packs"], indirect=True)
def test_the_two_pack_knowledge_shows_every_state_and_two_packs(report, probed):
    cells = _picture(probed, "heat-map")["cells"]
    assert {c["state"] for c in cells} == {"expressed", "partial", "gap", "warning", "not built"}
    assert {c["state"] for c in cells if c["entry"] == "sql-1114"} == {"gap", "not built"}  # nothing left
    assert {p.id for p in report.kb.disabled} == {"ingreslock-inbound-probe", "sql-1114-inbound-probe"}
    assert {m["pack"] for m in _picture(probed, "port-map")["marks"]} == {e.pack for e in report.kb.entries}
    assert "lab" in {e.pack for e in report.kb.entries} and len({e.pack for e in report.kb.entries}) >= 2


def test_the_pictures_paint_their_marks_and_cells(report, probed):
    """Rasterized by Chromium without their legends, the pictures hold each severity's and each state's colour."""
    port_map, heat_map = _picture(probed, "port-map"), _picture(probed, "heat-map")
    for picture in (port_map, heat_map):
        assert picture["width"] > 500 and picture["height"] > 100, picture["id"]
    for severity in {p.severity.value for p in report.kb.patterns}:
        assert port_map["colours"].get(_rgb(SEVERITY_COLOUR[severity]), 0) >= 10, severity
    for state in {c["state"] for c in heat_map["cells"]}:
        assert heat_map["colours"].get(_rgb(STATE_COLOUR[state]), 0) >= 10, state


def test_the_page_loads_nothing_and_shows_each_entrys_pack(report, probed):
    assert probed["resources"] == []  # no stylesheet, font, image or script fetched, local or remote
    dom = probed["dom"].split('<pre id="probe-result">', 1)[0]
    _assert_self_contained(re.sub(r"<script>.*?</script>", "", dom, flags=re.S),
                           {ref for e in report.kb.entries for ref in e.references})
    html = report.html.read_text(encoding="utf-8")
    for entry in report.kb.entries:
        section = html.split(f'<section class="entry" id="entry-{entry.id}">', 1)[1].split("</section>", 1)[0]
        assert f"<dt>pack</dt><dd>{entry.pack}</dd>" in section, entry.id
