"""out/REPORT.html: one self-contained page, looked at in a real browser (headless Chromium)."""

from __future__ import annotations

import re
import subprocess
from html import unescape
from html.parser import HTMLParser
from pathlib import Path

import pytest
from conftest import ODD_ENTRY_HEAD, ODD_PROBE_PATTERN, copy_knowledge, need, run_rulegen

from rulegen.targets import TARGETS
from rulegen.validate import collect


class Page(HTMLParser):
    """What the tests need of a page: sections and their headings, elements by id, links, scripts, text."""

    def __init__(self, html: str):
        super().__init__()
        self.ids: set[str] = set()
        self.tags: list[tuple[str, dict]] = []
        self.headings: dict[str, str] = {}  # section id -> its h2 text
        self.text: list[str] = []
        self._section: str | None = None
        self._in_h2 = False
        self.feed(html)

    def handle_starttag(self, tag, attrs):
        attributes = dict(attrs)
        self.tags.append((tag, attributes))
        if "id" in attributes:
            self.ids.add(attributes["id"])
        if tag == "section":
            self._section = attributes.get("id")
            self.headings[self._section] = ""
        if tag == "h2" and self._section is not None:
            self._in_h2 = True

    def handle_endtag(self, tag):
        if tag == "h2":
            self._in_h2 = False

    def handle_data(self, data):
        self.text.append(data)
        if self._in_h2:
            self.headings[self._section] += data


def _chromium_dom(html_file: Path, tmp_path: Path) -> str:
    chromium = need("chromium")
    result = subprocess.run([chromium, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
                             f"--user-data-dir={tmp_path / 'chromium-profile'}", "--dump-dom", html_file.as_uri()],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "<body" in result.stdout, result.stderr[-2000:]
    return result.stdout


def _assert_self_contained(html: str, references: set[str]) -> None:
    """No script, no stylesheet or image to fetch; the only links are in-page anchors and the knowledge's
    reference URLs, as plain <a> links."""
    page = Page(html)
    assert not [tag for tag, _ in page.tags if tag in ("script", "link", "img", "iframe", "object", "embed")]
    assert not [a for _, a in page.tags if "src" in a]
    for tag, attributes in page.tags:
        if "href" in attributes:
            assert tag == "a", tag
            assert attributes["href"].startswith("#") or attributes["href"] in references, attributes["href"]
    assert not re.search(r"url\(|@import", html)


def test_report_is_in_out_listed_in_the_manifest_and_skipped_by_validate(built, manifest):
    report = built / "REPORT.html"
    assert report.is_file()
    assert "REPORT.html" in [a["path"] for a in manifest["artifacts"]]
    assert report not in [path for path, _ in collect([built], None)]
    alone = run_rulegen("validate", str(report))  # named on its own, it is refused as what it is: not a rule file
    assert alone.returncode == 2 and "cannot tell the format" in alone.stderr


def test_a_build_of_some_targets_says_which_rules_the_report_leaves_out(tmp_path, manifest):
    knowledge = copy_knowledge(tmp_path / "knowledge")
    result = run_rulegen("build", "--no-validate", "-t", "suricata", "-k", str(knowledge), "-o", str(tmp_path / "out"))
    assert result.returncode == 0, result.stderr
    html = (tmp_path / "out" / "REPORT.html").read_text()
    left_out = sum(row["coverage"][t]["expressed"] for row in manifest["patterns"] for t in TARGETS if t != "suricata")
    assert left_out and html.count("Expressed, but not part of this build.") == left_out
    assert html.count('<td class="off">expressed, not built</td>') == left_out
    assert html.count("<td>yes</td></tr>") == 1 and html.count("<td>no</td></tr>") == 3


def test_every_entry_and_pattern_renders_in_chromium(built, kb, tmp_path):
    dom = _chromium_dom(built / "REPORT.html", tmp_path)
    page = Page(dom)
    for entry in kb.entries:
        section = f"entry-{entry.id}"
        assert section in page.headings, section
        assert entry.title in page.headings[section]
        assert f"#{section}" in {a.get("href") for _, a in page.tags}  # in the table of contents
        for pattern in entry.patterns:
            assert f"pattern-{pattern.id}" in page.ids
    assert len(page.headings) == len(kb.entries)
    text = "".join(page.text)
    for entry in kb.entries:
        assert " ".join(entry.description_en.split()) in " ".join(text.split())
    _assert_self_contained(dom, {ref for e in kb.entries for ref in e.references})


def test_report_carries_each_patterns_rules_severity_attack_and_coverage(built, kb, manifest):
    html = (built / "REPORT.html").read_text()
    page = Page(html)
    text = "".join(page.text)
    suricata = (built / "suricata" / "rulegen.rules").read_text().splitlines()
    rows = {row["id"]: row for row in manifest["patterns"]}
    for pattern in kb.patterns:
        # the pattern's part of the page: from its element to the next pattern's
        block = unescape(html.split(f'id="pattern-{pattern.id}"', 1)[1].split('<div class="pattern"', 1)[0])
        assert pattern.title in block and f">{pattern.severity.value}<" in block
        if pattern.attack:
            assert f"ATT&CK {pattern.attack.technique}" in block and f"tactic {pattern.attack.tactic}" in block
        if rows[pattern.id]["coverage"]["suricata"]["expressed"]:
            [rule] = [ln for ln in suricata if re.search(rf"rulegen_pattern {pattern.id}[,;]", ln)]
            assert re.search(rf"^(<pre>)?{re.escape(rule)}(</pre>)?$", block, re.M)  # a whole line of a <pre>
        for target in TARGETS:
            reason = rows[pattern.id]["coverage"][target]["reason"]
            if reason:
                assert f"Not expressed: {reason}" in text
    gaps = sum(1 for r in rows.values() for c in r["coverage"].values() if not c["expressed"])
    assert html.count('<td class="gap">gap: ') == gaps
    _assert_self_contained(html, {ref for e in kb.entries for ref in e.references})


HOSTILE = '<script>alert(1)</script><img src=http://evil.example/x.png onerror=alert(2)> & "quotes"'


def test_hostile_knowledge_text_stays_text_in_the_browser(tmp_path):
    knowledge = tmp_path / "knowledge"
    knowledge.mkdir()
    entry = (ODD_ENTRY_HEAD.replace('en: "An odd port that nobody should expose."', f"en: '{HOSTILE}'")
             .replace("title: Odd service", "title: 'Odd <b>service</b></section>'")
             + ODD_PROBE_PATTERN.replace("false_positives: Scanners.",
                                         "false_positives: '</pre><script>alert(3)</script>'"))
    (knowledge / "a.yaml").write_text(entry, encoding="utf-8")
    out = tmp_path / "out"
    result = run_rulegen("build", "--no-validate", "-k", str(knowledge), "-o", str(out))
    assert result.returncode == 0, result.stderr
    html = (out / "REPORT.html").read_text()
    assert "<script" not in html and "<img" not in html and "<b>" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    _assert_self_contained(html, {"http://www.robertgraham.com/pubs/firewall-seen.html"})
    dom = _chromium_dom(out / "REPORT.html", tmp_path)
    page = Page(dom)
    assert page.headings["entry-odd"].endswith("Odd <b>service</b></section>")
    text = "".join(page.text)
    assert HOSTILE in text and "</pre><script>alert(3)</script>" in text
    _assert_self_contained(dom, {"http://www.robertgraham.com/pubs/firewall-seen.html"})


@pytest.mark.parametrize("lang", ["en", "zh"])
def test_both_languages_are_in_the_report_marked_as_such(built, kb, lang):
    html = (built / "REPORT.html").read_text()
    assert html.count(f'<p class="{lang}" lang="{lang}">') == len(kb.entries)
