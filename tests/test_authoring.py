"""Writing a site folder as a new user does: what the loader asks of a site (English only), what it refuses
with a message that says what to write instead (ATT&CK links among the references, misspelt keys and values,
YAML syntax), and what it warns about (a text that looks escaped but is not)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from conftest import copy_knowledge, run_rulegen

import rulegen.knowledge
from rulegen.errors import KnowledgeError
from rulegen.knowledge import default_knowledge_dir, load_knowledge

ENTRY = """entries:
  - id: my-app
    table: destination
    ports: [4444]
    protocols: [tcp]
    service: my-app
    title: Our internal application
    description: {{en: "The port of our own application server; nobody outside should reach it."}}
    references: [{reference}]
    patterns:
      - id: my-app-probe
        title: Probe of our application port from outside
        category: POLICY
        direction: inbound
        transport: tcp
        dst_ports: [4444]
        detect: {detect}
        severity: low
        classtype: policy-violation
        response: {response}
        false_positives: A colleague testing from outside.
{extra}"""


def entry(reference: str = '"https://intranet.example/wiki/my-app"', detect: str = "probe", response: str = "drop",
          extra: str = "") -> str:
    return ENTRY.format(reference=reference, detect=detect, response=response, extra=extra)


def site(tmp_path: Path, text: str, name: str = "site.yaml") -> Path:
    folder = tmp_path / "site"
    folder.mkdir(exist_ok=True)
    (folder / name).write_text(text)
    return folder


def problems(folder: Path) -> list[str]:
    with pytest.raises(KnowledgeError) as caught:
        load_knowledge([default_knowledge_dir(), folder])
    return [str(p) for p in caught.value.problems]


# --------------------------------------------------------------------------- zh only for the shipped knowledge

def test_a_site_entry_needs_no_chinese_description(tmp_path):
    kb = load_knowledge([default_knowledge_dir(), site(tmp_path, entry())])
    mine = kb.entry("my-app")
    assert mine.description_zh == ""
    assert mine.description_en.startswith("The port of our own application")


def test_show_in_chinese_falls_back_to_english_for_a_site_entry(tmp_path):
    folder = site(tmp_path, entry())
    result = run_rulegen("show", "my-app", "--lang", "zh", "-k", "@shipped", "-k", str(folder))
    assert result.returncode == 0, result.stderr
    assert "The port of our own application" in result.stdout
    shipped = run_rulegen("show", "ssh", "--lang", "zh", "-k", "@shipped", "-k", str(folder))  # --lang zh is read
    assert shipped.returncode == 0, shipped.stderr
    assert load_knowledge([default_knowledge_dir()]).entry("ssh").description_zh[:8] in shipped.stdout


@pytest.fixture
def shipped_copy(tmp_path, monkeypatch):
    """A copy of the shipped knowledge that the loader takes for the shipped one."""
    copy = copy_knowledge(tmp_path / "shipped")
    monkeypatch.setattr(rulegen.knowledge, "default_knowledge_dir", lambda: copy)
    return copy


def test_the_shipped_knowledge_still_needs_chinese(shipped_copy):
    path = next(p for p in sorted(shipped_copy.rglob("*.yaml")) if re.search(r"^\s+zh:", p.read_text(), re.M))
    lines = path.read_text().splitlines(keepends=True)
    index = next(i for i, line in enumerate(lines) if re.match(r"\s+zh:", line))
    zh_indent = len(lines[index]) - len(lines[index].lstrip())
    end = index + 1  # the zh value may continue on more-indented lines (a folded scalar)
    while end < len(lines) and (not lines[end].strip() or len(lines[end]) - len(lines[end].lstrip()) > zh_indent):
        end += 1
    path.write_text("".join(lines[:index] + lines[end:]))
    with pytest.raises(KnowledgeError) as caught:
        load_knowledge([shipped_copy])
    assert any("missing the required key 'zh'" in p.message and p.file == str(path) for p in caught.value.problems)


def with_zh(text: str, zh: str) -> str:
    return text.replace('reach it."}', f'reach it.", zh: "{zh}"}}')


def test_a_blank_chinese_description_is_refused_and_a_sites_chinese_is_kept(shipped_copy, tmp_path):
    (shipped_copy / "article" / "zz-extra.yaml").write_text(with_zh(entry(), " "))
    with pytest.raises(KnowledgeError) as caught:
        load_knowledge([shipped_copy])
    assert any("'zh' must not be empty" in p.message for p in caught.value.problems)
    (shipped_copy / "article" / "zz-extra.yaml").unlink()
    other = site(tmp_path, with_zh(entry(), "我们自己的应用服务器端口。"))
    assert load_knowledge([shipped_copy, other]).entry("my-app").description_zh == "我们自己的应用服务器端口。"


# --------------------------------------------------------------------------- ATT&CK links among the references

@pytest.mark.parametrize(("url", "expected"), [
    ("https://attack.mitre.org/techniques/T1110/001/", "attack: {tactic: credential-access, technique: T1110.001}"),
    ("https://attack.mitre.org/techniques/T1046", "attack: {tactic: discovery, technique: T1046}"),
    ("http://attack.mitre.org/versions/v14/techniques/T1595/002/", "technique: T1595.002}"),
    ("https://attack.mitre.org/tactics/TA0043/", "attack: {tactic, technique}"),
    ("https://attack.mitre.org/", "attack: {tactic, technique}"),
])
def test_an_attack_url_among_the_references_is_refused_with_what_to_write(tmp_path, url, expected):
    folder = site(tmp_path, entry(reference=f'"https://intranet.example/wiki/my-app", "{url}"'))
    out = tmp_path / "out"
    result = run_rulegen("build", "-k", "@shipped", "-k", str(folder), "-o", str(out), "--no-validate")
    assert result.returncode == 2
    assert f"site.yaml:9: my-app: 'references': {url} is a MITRE ATT&CK page" in result.stderr, result.stderr
    assert expected in result.stderr
    assert "Traceback" not in result.stderr
    assert not out.exists() and not (folder / "rulegen.lock").exists()


# --------------------------------------------------------------------------- did you mean

@pytest.mark.parametrize(("change", "message"), [
    (("severity: low", "severty: low"), "unknown key 'severty' in pattern: did you mean 'severity'? (allowed: id,"),
    (("detect: probe", "detect: Probes"), "'detect' must be one of probe, traffic, payload, sweep, not 'Probes': "
                                          "did you mean 'probe'?"),
    (("response: drop", "response: rejct"), "did you mean 'reject'?"),
    (("    service:", "    servise:"), "unknown key 'servise' in entry: did you mean 'service'?"),
    (("classtype: policy-violation", "classtype: policy-violaton"), "did you mean 'policy-violation'?"),
    (("detect: probe", "detect: probe\n        src_net: externel"), "not 'externel': did you mean 'external'?"),
    (("entries:", "entrys:"), "unknown key 'entrys' in knowledge file: did you mean 'entries'?"),
])
def test_a_misspelt_key_or_value_gets_a_did_you_mean(tmp_path, change, message):
    found = problems(site(tmp_path, entry().replace(*change)))
    assert any(message in p for p in found), found


def test_a_misspelt_match_kind_and_match_key_get_a_did_you_mean(tmp_path):
    kind = entry(detect="payload", extra='        match: {contnt: [{text: "HELO"}]}\n')
    assert any("unknown match kind 'contnt': did you mean 'content'? (allowed: content," in p
               for p in problems(site(tmp_path, kind)))
    key = entry(detect="payload", extra='        match: {content: [{txt: "HELO"}]}\n')
    assert any("unknown key 'txt' in content item: did you mean 'text'?" in p for p in problems(site(tmp_path, key)))


def test_nothing_close_gets_no_guess(tmp_path):
    found = problems(site(tmp_path, entry().replace("severity: low", "zzz: low")))
    assert any("unknown key 'zzz' in pattern (allowed:" in p for p in found), found


# --------------------------------------------------------------------------- YAML syntax

@pytest.mark.parametrize(("text", "where", "hint"), [
    ('entries:\n  - id: "a\\qb"\n', ":2: YAML syntax error at line 2, column 11: found unknown escape character",
     "use single quotes"),
    ("entries:\n\t- id: a\n", ":2: YAML syntax error at line 2, column 1:", "indent with spaces, not tabs"),
    ('entries:\n  - id: "abc\n', "YAML syntax error at line 3, column 1: found unexpected end of stream",
     "a quoted string is not closed"),
    ("entries:\n  - title: a: b\n", ":2: YAML syntax error at line 2, column 13: mapping values are not allowed",
     "quote the value"),
])
def test_a_yaml_error_gives_line_column_and_a_hint(tmp_path, text, where, hint):
    folder = site(tmp_path, text)
    result = run_rulegen("build", "-k", "@shipped", "-k", str(folder), "-o", str(tmp_path / "out"), "--no-validate")
    assert result.returncode == 2
    assert where in result.stderr, result.stderr
    assert hint in result.stderr
    assert "Traceback" not in result.stderr


# --------------------------------------------------------------------------- a text that looks escaped

PAYLOAD = """        match:
          content:
            - {{text: {quoted}}}
"""


def payload_site(tmp_path: Path, quoted: str) -> Path:
    return site(tmp_path, entry(detect="payload", response="alert", extra=PAYLOAD.format(quoted=quoted)))


@pytest.mark.parametrize("quoted", [r"'SLAVEOF\r\n'", r"SLAVEOF\x0d", r'"SLAVEOF\\n"'])
def test_a_literal_backslash_escape_in_a_text_is_a_build_warning(tmp_path, quoted):
    folder = payload_site(tmp_path, quoted)
    result = run_rulegen("build", "-k", str(folder), "-o", str(tmp_path / "out"), "--no-validate", "--json")
    assert result.returncode == 0, result.stderr
    warnings = json.loads(result.stdout)["warnings"]
    assert len(warnings) == 1, warnings
    assert re.match(r".*site\.yaml:24: my-app-probe: text 'SLAVEOF\\\\.*' holds a literal backslash sequence",
                    warnings[0]), warnings
    assert "double quotes" in warnings[0]
    text = run_rulegen("build", "-k", str(folder), "-o", str(tmp_path / "out"), "--no-validate")
    assert "warning: " in text.stderr and "holds a literal backslash sequence" in text.stderr


def test_a_real_control_character_in_double_quotes_is_no_warning(tmp_path):
    folder = payload_site(tmp_path, r'"SLAVEOF\r\n"')
    result = run_rulegen("build", "-k", str(folder), "-o", str(tmp_path / "out"), "--no-validate", "--json")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["warnings"] == []


def test_every_text_item_is_checked_wherever_it_sits():
    """Any mapping's `text` (content items today, samples and what else comes) is looked at."""
    data = rulegen.knowledge._LineLoader  # the loader's own YAML, so the lines are the file's
    import yaml

    raw = yaml.load("id: e\npatterns:\n  - id: p\n    samples:\n      fires:\n        - text: 'A\\tB'\n",
                    Loader=data)  # noqa: S506 - a SafeLoader
    found = rulegen.knowledge._escape_warnings("x.yaml", raw)
    assert [(w.line, w.entry) for w in found] == [(6, "p")]


def test_selftest_shows_the_warning(tmp_path):
    folder = payload_site(tmp_path, r"'SLAVEOF\r\n'")
    result = run_rulegen("selftest", "-k", str(folder), "-t", "sigma")
    assert "warning: " in result.stderr and "holds a literal backslash sequence" in result.stderr, result.stderr
    assert "1 warning(s) from the build" in result.stdout
