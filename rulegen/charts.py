"""The two pictures that open REPORT.html, as geometry: a port map (where on 0-65535 each pattern sits, by
severity and pack) and a coverage heat map (entry x target). Every coordinate, path, colour and tooltip is
computed here; the report template only writes the SVG elements out.

Both pictures share a viewBox width and scale with the page. Text is monospace so label widths can be
estimated here without a browser.
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass

from rulegen.explore import EntryView, ports_text
from rulegen.model import Entry, KnowledgeBase, Pattern, PortRange, Severity
from rulegen.targets import TARGETS

WIDTH = 1040
CHAR = 6.7  # width of one character of the pictures' 11px monospace text

SEVERITIES = tuple(s.value for s in reversed(Severity))  # legend order, the most severe first
# The severities' colours, of the marks and of the report's badges; each severity also has its own shape on the
# port map, for readers without colour.
SEVERITY_COLOUR = {"critical": "#7a0010", "high": "#c62828", "medium": "#ef8f00", "low": "#3b7dd8",
                   "informational": "#8a94a6"}
STATES = ("expressed", "partial", "gap", "warning", "not built")
STATE_COLOUR = {"expressed": "#1b9e77", "partial": "#1b9e77", "gap": "#f4c27a", "warning": "#d55e00",
                "not built": "#d9dde5"}
STATE_TEXT = {"expressed": "every pattern expressed", "partial": "some patterns expressed, some gaps",
              "gap": "no pattern expressed", "warning": "a pattern asks this firewall for an action it cannot take",
              "not built": "target not part of this build"}


@dataclass(frozen=True)
class Text:
    x: float
    y: float
    text: str
    title: str = ""
    href: str = ""
    anchor: str = "start"  # text-anchor: start | middle | end


@dataclass(frozen=True)
class Shape:
    """One filled path with its tooltip: a legend key, a port-class band."""

    d: str
    fill: str
    title: str = ""


@dataclass(frozen=True)
class Mark:
    """A pattern on the port map: one path (a marker per port, a bar per range), a link to the pattern."""

    pattern: str
    severity: str
    pack: str
    d: str
    fill: str
    title: str
    x: float  # the centre of its first marker
    y: float


@dataclass(frozen=True)
class Tick:
    x: float
    label: str  # "" for a minor tick
    y2: float  # where its line ends below the axis


@dataclass(frozen=True)
class Row:
    """One pack's band of the port map."""

    pack: str
    y: float
    height: float
    label: Text


@dataclass(frozen=True)
class PortMap:
    height: float
    left: float
    right: float
    top: float
    axis_y: float
    tick_label_y: float
    grid: tuple[float, ...]  # x of the vertical lines at the labelled ticks
    rows: tuple[Row, ...]
    bands: tuple[Shape, ...]
    band_labels: tuple[Text, ...]
    ticks: tuple[Tick, ...]
    marks: tuple[Mark, ...]
    legend: tuple[tuple[Shape, Text], ...]
    axis_label: Text
    description: str


@dataclass(frozen=True)
class Cell:
    entry: str
    target: str
    state: str
    x: float
    y: float
    fill: str
    title: str
    half: Shape | None = None  # partial: the cell's lower half drawn in the gap colour
    glyph: Text | None = None  # warning: "!"


@dataclass(frozen=True)
class HeatMap:
    height: float
    size: float  # a cell's side
    headings: tuple[Text, ...]  # one per pack
    columns: tuple[Text, ...]  # target names, written rotated
    labels: tuple[Text, ...]  # one per entry, a link to its section
    cells: tuple[Cell, ...]
    legend: tuple[tuple[Cell, Text], ...]
    description: str


def _n(value: float) -> float:
    return round(value, 1)


def _fit(text: str, width: float) -> str:
    """The text cut with an ellipsis to what fits in `width`."""
    room = int(width / CHAR)
    return text if len(text) <= room else text[:max(room - 1, 0)] + "…"


def packs_of(kb: KnowledgeBase) -> list[str]:
    """The packs in the order the knowledge brings them."""
    return list(dict.fromkeys(e.pack for e in kb.entries))


# ---- the port map -------------------------------------------------------------------------------------------

LEFT, RIGHT = 120.0, WIDTH - 24.0
R = 4.5  # a marker's half size
LANE = 13.0  # the vertical pitch of stacked marks: more than the tallest marker, so none hides another
ROW_PAD = 10.0
TOP = 52.0  # below the legend and the port-class labels
MAJOR = (0, 10, 100, 1024, 10000, 65535)
MINOR = (*range(1, 10), *range(20, 100, 10), *range(200, 1000, 100), *range(2000, 10000, 1000),
         *range(20000, 70000, 10000))
BAND_FILL = ("#eef1f6", "#f8f9fb")


def port_x(port: int) -> float:
    """Logarithmic in port + 10: the well-known ports, where most patterns sit, get half the width."""
    span = math.log10(65535 + 10) - 1
    return LEFT + (RIGHT - LEFT) * (math.log10(port + 10) - 1) / span


def sits_on(pattern: Pattern, entry: Entry) -> tuple[str, tuple[PortRange, ...]]:
    """Where a pattern is drawn: its destination ports, else its source ports, else (a pattern that matches on
    any port, such as an RPC call) its entry's ports."""
    if pattern.dst_ports:
        return "destination", pattern.dst_ports
    if pattern.src_ports:
        return "source", pattern.src_ports
    return "entry", entry.ports


def _marker(severity: str, x: float, y: float) -> str:
    """The severity's shape centred on (x, y): diamond, triangle, square, circle, small circle. All drawn
    clockwise, as the range bars are: where a marker overlaps a bar (nonzero fill) it stays filled."""
    if severity == "critical":
        s = R * 1.35
        return f"M{x:.1f},{y - s:.1f}L{x + s:.1f},{y:.1f}L{x:.1f},{y + s:.1f}L{x - s:.1f},{y:.1f}Z"
    if severity == "high":
        s = R * 1.2
        return f"M{x:.1f},{y - s:.1f}L{x + s:.1f},{y + s * .8:.1f}L{x - s:.1f},{y + s * .8:.1f}Z"
    if severity == "medium":
        s = R * .9
        return f"M{x - s:.1f},{y - s:.1f}h{2 * s:.1f}v{2 * s:.1f}h{-2 * s:.1f}Z"
    s = R if severity == "low" else R * .7
    return f"M{x - s:.1f},{y:.1f}a{s:.1f},{s:.1f} 0 1,1 {2 * s:.1f},0a{s:.1f},{s:.1f} 0 1,1 {-2 * s:.1f},0Z"


def _mark_path(severity: str, ranges: tuple[PortRange, ...], y: float) -> str:
    """A marker per single port; a range is a bar from its first to its last port with the marker in its middle."""
    parts = []
    for r in ranges:
        x0, x1 = port_x(r.low), port_x(r.high)
        if not r.is_single:
            parts.append(f"M{x0:.1f},{y - 1.5:.1f}H{x1:.1f}v3H{x0:.1f}Z")
        parts.append(_marker(severity, (x0 + x1) / 2, y))
    return "".join(parts)


def _lanes(spans: list[tuple[float, float]]) -> list[int]:
    """Stack overlapping marks: each span goes to the first lane free at its left end (spans sorted by it)."""
    ends: list[float] = []
    lanes = []
    for low, high in spans:
        lane = next((i for i, end in enumerate(ends) if end < low), len(ends))
        if lane == len(ends):
            ends.append(high)
        ends[lane] = high
        lanes.append(lane)
    return lanes


def port_map(kb: KnowledgeBase) -> PortMap:
    placed = [(e, p, *sits_on(p, e)) for e in kb.entries for p in e.patterns]
    rows, marks = [], []
    y = TOP
    for pack in packs_of(kb):
        mine = sorted(((e, p, side, ranges) for e, p, side, ranges in placed if e.pack == pack),
                      key=lambda m: (min(m[3]).low, SEVERITIES.index(m[1].severity.value)))
        spans = [(port_x(min(ranges).low) - R * 1.4, port_x(max(r.high for r in ranges)) + R * 1.4)
                 for _, _, _, ranges in mine]
        lanes = _lanes(spans)
        height = (max(lanes, default=0) + 1) * LANE + 2 * ROW_PAD
        for (entry, pattern, side, ranges), lane in zip(mine, lanes, strict=True):
            severity = pattern.severity.value
            where = (f"any port (entry {entry.id}: {ports_text(ranges)})" if side == "entry"
                     else f"{side} port {ports_text(ranges)}")
            mark_y = y + ROW_PAD + (lane + .5) * LANE
            marks.append(Mark(
                pattern.id, severity, pack, _mark_path(severity, ranges, mark_y), SEVERITY_COLOUR[severity],
                f"{pattern.id}: {where}, {severity}, pack {pack}\n{pattern.title}",
                _n((port_x(ranges[0].low) + port_x(ranges[0].high)) / 2), _n(mark_y)))
        label = Text(LEFT - 10, _n(y + height / 2 + 4), _fit(pack, LEFT - 14),
                     f"pack {pack}: {len(mine)} patterns", anchor="end")
        rows.append(Row(pack, _n(y), _n(height), label))
        y += height
    bands, band_labels = _bands(kb, y)
    return PortMap(
        height=_n(y + 46), left=LEFT, right=RIGHT, top=TOP - 18, axis_y=_n(y), tick_label_y=_n(y + 18),
        grid=tuple(_n(port_x(p)) for p in MAJOR), rows=tuple(rows), bands=bands, band_labels=band_labels,
        ticks=tuple(Tick(_n(port_x(p)), str(p), _n(y + 6)) for p in MAJOR)
        + tuple(Tick(_n(port_x(p)), "", _n(y + 3)) for p in MINOR),
        marks=tuple(marks), legend=_severity_legend(),
        axis_label=Text((LEFT + RIGHT) / 2, _n(y + 40), "port (logarithmic scale of port + 10)", anchor="middle"),
        description=_port_map_description(kb, [(p, r) for _, p, _, r in placed]))


def _bands(kb: KnowledgeBase, bottom: float) -> tuple[tuple[Shape, ...], tuple[Text, ...]]:
    """The knowledge's port classes as shaded bands behind the rows. Each is labelled inside its band, or, too
    narrow for that, just before it with an arrow where the text clears the label before it."""
    bands, labels = [], []
    free = 0.0  # where the previous label ends
    for i, pc in enumerate(sorted(kb.port_classes, key=lambda c: c.ports)):
        x0, x1 = port_x(pc.ports.low), port_x(min(pc.ports.high + 1, 65535))
        tip = f"{pc.title}: ports {pc.ports}"
        bands.append(Shape(f"M{x0:.1f},{TOP - 18:.1f}H{x1:.1f}V{bottom:.1f}H{x0:.1f}Z", BAND_FILL[i % 2], tip))
        texts = (f"{pc.title} {pc.ports}", pc.title, pc.id)
        inside = next((t for t in texts if len(t) * CHAR < x1 - x0 - 6), "")
        outside = next((f"{t} →" for t in texts if x0 - 3 - (len(t) + 2) * CHAR > free + 12), "")
        if inside:
            labels.append(Text(_n(x0 + 4), TOP - 6, inside, tip))
            free = x0 + 4 + len(inside) * CHAR
        elif outside:
            labels.append(Text(_n(x0 - 3), TOP - 6, outside, tip, anchor="end"))
            free = x1
    return tuple(bands), tuple(labels)


def _severity_legend() -> tuple[tuple[Shape, Text], ...]:
    keys, x = [], LEFT
    for severity in SEVERITIES:
        keys.append((Shape(_marker(severity, x + R, 16), SEVERITY_COLOUR[severity], severity),
                     Text(_n(x + 3 * R), 20, severity)))
        x += 3 * R + len(severity) * CHAR + 18
    return tuple(keys)


def _port_map_description(kb: KnowledgeBase, placed: list[tuple[Pattern, tuple[PortRange, ...]]]) -> str:
    severities = Counter(p.severity.value for p, _ in placed)
    packs = Counter(e.pack for e in kb.entries for _ in e.patterns)
    classes = ", ".join(f"{sum(1 for _, r in placed if pc.ports.low <= r[0].low <= pc.ports.high)} in "
                        f"{pc.title.lower()} ({pc.ports})" for pc in sorted(kb.port_classes, key=lambda c: c.ports))
    return (f"{len(placed)} patterns placed on the ports they watch, one row per pack "
            f"({', '.join(f'{k} {v}' for k, v in packs.items())}); colour and shape give the severity "
            f"({', '.join(f'{severities[s]} {s}' for s in SEVERITIES if severities[s])})"
            + (f"; by first port: {classes}" if classes else "") + ".")


# ---- the coverage heat map ----------------------------------------------------------------------------------

CELL, PITCH = 16.0, 18.0
LABEL = 150.0
BLOCK = LABEL + len(TARGETS) * PITCH
BLOCK_GAP = 30.0
BLOCKS = int((WIDTH + BLOCK_GAP) // (BLOCK + BLOCK_GAP))
HEADER = 62.0  # room for the rotated target names


def entry_state(view: EntryView, target: str, built: list[str]) -> tuple[str, list[str]]:
    """The state of one entry in one target, and the lines its tooltip lists (each gap and warning). A pattern
    an override switched off is in no output, this page included; an entry left with none is a gap."""
    cells = [(p.id, c) for p in view.patterns for c in p.cells if c.target == target]
    notes = [f"{pid}: {'WARNING: ' + c.warning if c.warning else 'gap: ' + str(c.reason)}"
             for pid, c in cells if not c.expressed]
    expressed = sum(c.expressed for _, c in cells)
    if target not in built:
        state = "not built"
    elif any(c.warning for _, c in cells):
        state = "warning"
    elif expressed == 0:
        state = "gap"
    else:
        state = "expressed" if expressed == len(cells) else "partial"
    return state, [f"{expressed} of {len(cells)} patterns expressed" if cells else "no pattern switched on", *notes]


def _cell(entry: str, target: str, state: str, x: float, y: float, title: str) -> Cell:
    half = None
    if state == "partial":
        half = Shape(f"M{x + CELL:.1f},{y:.1f}V{y + CELL:.1f}H{x:.1f}Z", STATE_COLOUR["gap"])
    glyph = Text(_n(x + CELL / 2), _n(y + CELL - 4), "!") if state == "warning" else None
    return Cell(entry, target, state, _n(x), _n(y), STATE_COLOUR[state], title, half, glyph)


def heat_map(kb: KnowledgeBase, views: list[EntryView], built: list[str]) -> HeatMap:
    """Per pack a heading, then its entries in up to BLOCKS side-by-side blocks (read down, then across), each
    row an entry's label and one cell per target."""
    headings, columns, labels, cells = [], [], [], []
    y = 40.0
    for pack in packs_of(kb):
        mine = [v for v in views if v.pack == pack]
        headings.append(Text(0, _n(y + 14), f"pack {pack}: {len(mine)} entries"))
        rows = math.ceil(len(mine) / BLOCKS)
        top = y + 24 + HEADER
        for block in range(math.ceil(len(mine) / rows)):
            x0 = block * (BLOCK + BLOCK_GAP) + LABEL
            columns += [Text(_n(x0 + i * PITCH + CELL / 2 + 4), _n(top - 6), t) for i, t in enumerate(TARGETS)]
        for i, view in enumerate(mine):
            x0 = (i // rows) * (BLOCK + BLOCK_GAP)
            row_y = top + (i % rows) * PITCH
            labels.append(Text(_n(x0 + LABEL - 8), _n(row_y + CELL - 4), _fit(view.id, LABEL - 12),
                               f"{view.id}: {view.title} ({view.table} ports {view.ports}), pack {pack}",
                               f"#entry-{view.id}", "end"))
            for t, target in enumerate(TARGETS):
                state, notes = entry_state(view, target, built)
                cells.append(_cell(view.id, target, state, x0 + LABEL + t * PITCH, row_y,
                                   "\n".join([f"{view.id} × {target}: {state}", *notes])))
        y = top + rows * PITCH + 12
    legend, x = [], 0.0
    for state in STATES:
        legend.append((_cell("", "", state, x, 8, STATE_TEXT[state]), Text(_n(x + CELL + 6), 20, state)))
        x += CELL + 6 + len(state) * CHAR + 18
    return HeatMap(height=_n(y), size=CELL, headings=tuple(headings), columns=tuple(columns), labels=tuple(labels),
                   cells=tuple(cells), legend=tuple(legend), description=_heat_description(cells, len(views)))


def _heat_description(cells: list[Cell], entries: int) -> str:
    per_target = []
    for target in TARGETS:
        states = Counter(c.state for c in cells if c.target == target)
        per_target.append(f"{target}: " + ", ".join(f"{states[s]} {s}" for s in STATES if states[s]))
    return (f"{entries} entries by {len(TARGETS)} targets, one cell each, coloured by coverage; "
            + "; ".join(per_target) + ".")
