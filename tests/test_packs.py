"""Knowledge packs: choosing them (-k @pack, RULEGEN_KNOWLEDGE, rulegen.toml), each pack's own lock and SID range,
the pack shown with every entry, and the author and msg prefix each pack (or site) gives its rules."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest
import yaml
from conftest import ODD_ENTRY_HEAD, ODD_PROBE_PATTERN, copy_knowledge, run_rulegen
from test_explore import _json

from rulegen.knowledge import default_knowledge_dir, load_knowledge, read_pack
from rulegen.model import SITE_SIDS

SHIPPED = load_knowledge([default_knowledge_dir()])
PACKS = {p.id: p for p in SHIPPED.packs}
ODD = ODD_ENTRY_HEAD + ODD_PROBE_PATTERN


def _site(folder: Path, text: str = ODD, pack: str | None = None) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "site.yaml").write_text(text, encoding="utf-8")
    if pack:
        (folder / "pack.yaml").write_text(pack, encoding="utf-8")
    return folder


def _sids(out: Path) -> dict[str, int]:
    rules = (out / "suricata" / "rulegen.rules").read_text()
    return {m.group(2): int(m.group(1)) for m in re.finditer(r"sid:(\d+);.*?rulegen_pattern ([\w-]+)[,;]", rules)}


def _uncovered_port() -> int:
    return next(p for p in range(65535, 0, -1) if not any(r.low <= p <= r.high for e in SHIPPED.entries
                                                              for r in e.ports))


def test_the_shipped_packs_declare_disjoint_ranges_in_the_local_range():
    assert {"article", "current"} <= set(PACKS)
    assert PACKS["article"].sids == (1000000, 1099999) and PACKS["current"].sids == (1100000, 1199999)
    assert PACKS["article"].msg_prefix == "RULEGEN"
    assert PACKS["article"].author == "rulegen (from Robert Graham's Firewall Forensics FAQ)"
    assert SITE_SIDS[0] > max(p.sids[1] for p in PACKS.values())
    lock = json.loads((default_knowledge_dir() / "article" / "rulegen.lock").read_text())
    assert all(PACKS["article"].sids[0] <= p["sid"] <= PACKS["article"].sids[1] for p in lock["patterns"].values())


def test_no_k_lists_every_shipped_pack_and_at_names_choose(tmp_path):
    everything = _json("list")
    assert [e["id"] for e in everything] == [e.id for e in SHIPPED.entries]
    assert {e["pack"] for e in everything} == {e.pack for e in SHIPPED.entries}
    assert _json("list", "-k", "@shipped") == everything
    article = _json("list", "-k", "@article")
    assert article == [e for e in everything if e["pack"] == "article"] and article
    current = [e for e in everything if e["pack"] == "current"]
    result = run_rulegen("list", "-k", "@current", "--json")
    if current:
        assert json.loads(result.stdout) == current
    else:  # a pack without entries yet, chosen alone, says so
        assert result.returncode == 2 and "pack current has no entries yet" in result.stderr
    bad = run_rulegen("list", "-k", "@nosuch")
    assert bad.returncode == 2 and "unknown pack '@nosuch'" in bad.stderr and "@article" in bad.stderr
    assert "Traceback" not in bad.stderr


def test_each_pack_keeps_its_sids_built_alone_or_together(tmp_path):
    """A pattern has the same SID whether its pack is built alone or with the other; each pack's lock holds
    its own patterns only, and a new pattern takes the first free SID of its pack's range."""
    def tree(name: str) -> Path:
        root = copy_knowledge(tmp_path / name)
        for extra in (root / "current").glob("*.yaml"):
            if extra.name != "pack.yaml":
                extra.unlink()
        (root / "current" / "rulegen.lock").unlink(missing_ok=True)
        (root / "current" / "odd.yaml").write_text(ODD, encoding="utf-8")
        return root

    sids = {}
    for name, pick in (("both", lambda r: [r]), ("article", lambda r: [r / "article"]),
                       ("current", lambda r: [r / "current"]), ("named", lambda r: [r / "article", r / "current"])):
        root = tree(name)
        args = [a for path in pick(root) for a in ("-k", str(path))]
        result = run_rulegen("build", *args, "-o", str(tmp_path / f"out-{name}"), "--no-validate", "-t", "suricata")
        assert result.returncode == 0, result.stderr
        sids[name] = _sids(tmp_path / f"out-{name}")
        locks = {pack: json.loads((root / pack / "rulegen.lock").read_text())["patterns"]
                 for pack in ("article", "current") if (root / pack / "rulegen.lock").exists()}
        assert all(pid != "odd-probe" for pid in locks.get("article", {}))
        assert set(locks.get("current", {})) <= {"odd-probe"}
    assert sids["both"] == sids["named"] == {**sids["article"], **sids["current"]}
    assert sids["current"] == {"odd-probe": PACKS["current"].sids[0]}
    shipped = json.loads((default_knowledge_dir() / "article" / "rulegen.lock").read_text())["patterns"]
    assert all(sids["article"][pid] == shipped[pid]["sid"] for pid in sids["article"])


@pytest.mark.parametrize("case", ["overlap", "used up", "not a range"])
def test_a_bad_pack_range_is_an_error_naming_its_pack_yaml(case, tmp_path):
    sids = {"overlap": "1050000-1250000", "used up": "1300000-1300001", "not a range": "1300000"}[case]
    pack = f"pack:\n  id: acme\n  title: ACME\n  author: ACME SOC\n  sids: \"{sids}\"\n"
    second = ODD_PROBE_PATTERN.replace("odd-probe", "odd-probe-2").replace("Probe of", "Second probe of")
    third = ODD_PROBE_PATTERN.replace("odd-probe", "odd-probe-3").replace("Probe of", "Third probe of")
    site = _site(tmp_path / "site", ODD + second + third, pack)
    result = run_rulegen("build", "-k", "@shipped", "-k", str(site), "-o", str(tmp_path / "out"), "--no-validate")
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert f"{site / 'pack.yaml'}:" in result.stderr, result.stderr
    expected = {"overlap": "overlaps pack article's 1000000-1099999", "used up": "SID range 1300000-1300001 is used up",
                "not a range": "'sids' must be a range"}[case]
    assert expected in result.stderr, result.stderr
    assert not (tmp_path / "out").exists() and not (site / "rulegen.lock").exists()


def test_a_site_with_pack_yaml_signs_its_rules_and_takes_its_range(tmp_path):
    pack = ("pack:\n  id: acme\n  title: ACME's own\n  author: ACME SOC team\n  msg_prefix: ACME\n"
            "  sids: \"1300000-1309999\"\n")
    site = _site(tmp_path / "site", pack=pack)
    out = tmp_path / "out"
    result = run_rulegen("build", "-k", "@shipped", "-k", str(site), "-o", str(out), "-t", "suricata,sigma")
    assert result.returncode == 0, result.stderr
    rules = (out / "suricata" / "rulegen.rules").read_text()
    alerts = [line for line in rules.splitlines() if line.startswith("alert ")]
    [odd] = [line for line in alerts if re.search(r"rulegen_pattern odd-probe[,;]", line)]
    assert 'msg:"ACME SCAN Probe of the odd port"' in odd and "sid:1300000;" in odd
    assert all('(msg:"RULEGEN ' in line for line in alerts if line != odd)
    authors = {yaml.safe_load(p.read_text())["author"] for p in (out / "sigma").rglob("*.yml")}
    odd_sigma = yaml.safe_load(next((out / "sigma").glob("*odd_probe*.yml")).read_text())
    assert odd_sigma["author"] == "ACME SOC team"
    assert odd_sigma["falsepositives"] == ["Scanners."]
    assert {"ACME SOC team", PACKS["article"].author} <= authors
    assert authors <= {"ACME SOC team", *(p.author for p in PACKS.values())}
    manifest = json.loads((out / "manifest.json").read_text())
    assert {r["id"]: r["pack"] for r in manifest["patterns"]}["odd-probe"] == "acme"


def test_a_site_without_pack_yaml_gets_a_neutral_author_and_keeps_its_words(tmp_path):
    words = "Expected from our own vulnerability scanner, 10.1.2.3; no other source."
    site = _site(tmp_path / "mysite", ODD.replace("false_positives: Scanners.", f"false_positives: {words}"))
    out = tmp_path / "out"
    result = run_rulegen("build", "-k", "@shipped", "-k", str(site), "-o", str(out), "-t", "suricata,sigma")
    assert result.returncode == 0, result.stderr
    odd_sigma = yaml.safe_load(next((out / "sigma").glob("*odd_probe*.yml")).read_text())
    assert odd_sigma["author"] == "rulegen site knowledge (mysite)"
    assert odd_sigma["falsepositives"] == [words]
    assert 'msg:"RULEGEN SCAN Probe of the odd port"' in (out / "suricata" / "rulegen.rules").read_text()
    shown = run_rulegen("show", "odd", "-k", "@shipped", "-k", str(site))
    assert re.search(r"^pack:\s+mysite$", shown.stdout, re.M), shown.stdout
    assert _json("show", "odd-probe", "-k", "@shipped", "-k", str(site))[0]["pack"] == "mysite"
    coverage = _json("coverage", "-k", "@shipped", "-k", str(site))
    assert {r["pack"] for r in coverage if r["entry"] == "odd"} == {"mysite"}


@pytest.mark.parametrize("words, message", [
    ("None expected.", "uses the word 'None'"),
    ("scanners on the Internet.", "must start with a capital letter"),
])
def test_false_positives_sigmahq_refuses_are_refused_at_load_not_rewritten(words, message, tmp_path):
    site = _site(tmp_path / "site", ODD.replace("false_positives: Scanners.", f"false_positives: {words}"))
    result = run_rulegen("build", "-k", "@shipped", "-k", str(site), "-o", str(tmp_path / "out"), "--no-validate")
    assert result.returncode == 2 and message in result.stderr, result.stderr
    assert re.search(r"site\.yaml:\d+: odd: pattern odd-probe: ", result.stderr)


def test_show_says_what_knowledge_it_searched_and_how_to_choose(tmp_path):
    port = str(_uncovered_port())
    result = run_rulegen("show", port)
    assert result.returncode == 2 and f"no entry covers port {port}" in result.stderr
    assert f"searched the knowledge @shipped (from the built-in default), packs {', '.join(PACKS)};" in result.stderr
    for way in ("-k DIR", "-k @pack", "RULEGEN_KNOWLEDGE", "rulegen.toml"):
        assert way in result.stderr, result.stderr
    listed = run_rulegen("list", "--port", port)
    assert listed.returncode == 0 and "no entry matches these filters; searched the knowledge" in listed.stderr
    via_env = run_rulegen("show", port, env={"RULEGEN_KNOWLEDGE": "@article"})
    assert "searched the knowledge @article (from RULEGEN_KNOWLEDGE)" in via_env.stderr


def test_default_knowledge_comes_from_k_then_environment_then_rulegen_toml(tmp_path):
    work = tmp_path / "work"
    _site(work / "site")
    (work / "rulegen.toml").write_text('knowledge = ["@shipped", "site"]  # paths relative to this file\n')
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    from_file = run_rulegen("show", "4444", cwd=work)
    assert from_file.returncode == 0 and re.search(r"^pack:\s+site$", from_file.stdout, re.M), from_file.stderr
    env = {"RULEGEN_KNOWLEDGE": f"@shipped:{work / 'site'}"}
    assert run_rulegen("show", "4444", cwd=elsewhere, env=env).returncode == 0
    port = str(_uncovered_port())
    missing = run_rulegen("show", port, cwd=work)
    assert f"(from {work / 'rulegen.toml'}), packs {', '.join(PACKS)}, site;" in missing.stderr, missing.stderr
    over_file = run_rulegen("show", "4444", cwd=work, env={"RULEGEN_KNOWLEDGE": "@article"})
    assert over_file.returncode == 2 and "(from RULEGEN_KNOWLEDGE)" in over_file.stderr
    over_env = run_rulegen("show", "4444", "-k", "@article", cwd=work, env=env)
    assert over_env.returncode == 2 and "searched the knowledge @article (from -k)" in over_env.stderr
    built = run_rulegen("build", "-o", str(tmp_path / "out"), "--no-validate", "-t", "suricata", cwd=work)
    assert built.returncode == 0, built.stderr
    assert "rulegen_pattern odd-probe" in (tmp_path / "out" / "suricata" / "rulegen.rules").read_text()
    assert (work / "site" / "rulegen.lock").exists()


@pytest.mark.parametrize("text, message", [
    ('knowledge = ["@shipped", ', "rulegen.toml:1: not valid TOML"),
    ('knowledge = "site"\n', "must be a non-empty list"),
    ('knowledge = ["@shipped"]\ncolour = "red"\n', "unknown key 'colour'"),
])
def test_a_bad_rulegen_toml_exits_2_naming_it(text, message, tmp_path):
    (tmp_path / "rulegen.toml").write_text(text)
    result = run_rulegen("list", cwd=tmp_path)
    assert result.returncode == 2 and message in result.stderr and "Traceback" not in result.stderr, result.stderr


def test_packs_come_before_sites_and_entries_live_in_packs(tmp_path):
    site = _site(tmp_path / "site")
    result = run_rulegen("build", "-k", str(site), "-k", "@shipped", "-o", str(tmp_path / "out"), "--no-validate")
    assert result.returncode == 2 and "a site folder must come after the packs" in result.stderr
    tree = copy_knowledge(tmp_path / "tree")
    with (tree / "common.yaml").open("a") as handle:
        handle.write("\n" + ODD)
    loose = run_rulegen("list", "-k", str(tree))
    assert loose.returncode == 2 and "entries belong in a pack folder" in loose.stderr
    assert f"{tree / 'common.yaml'}:" in loose.stderr


def test_a_pack_without_entries_chosen_alone_says_so(tmp_path):
    tree = copy_knowledge(tmp_path / "tree")
    shutil.rmtree(tree / "current")
    (tree / "current").mkdir()
    shutil.copy(default_knowledge_dir() / "current" / "pack.yaml", tree / "current" / "pack.yaml")
    result = run_rulegen("build", "-k", str(tree / "current"), "-o", str(tmp_path / "out"))
    assert result.returncode == 2 and "pack current has no entries yet" in result.stderr
    assert f"{tree / 'current' / 'pack.yaml'}:" in result.stderr
    assert read_pack(tree / "current").id == "current"


def test_the_manifest_and_the_report_name_each_patterns_pack(manifest, built):
    assert {r["id"]: r["pack"] for r in manifest["patterns"]} == {p.id: SHIPPED.pack_of(p).id
                                                                  for p in SHIPPED.patterns}
    assert "<dt>pack</dt><dd>article</dd>" in (built / "REPORT.html").read_text()


@pytest.mark.parametrize("pack, message", [
    ("pack:\n  id: acme\n  title: ACME\n  sids: \"1300000-1309999\"\n", "pack is missing the required key 'author'"),
    ("pack:\n  id: acme\n  title: ACME\n  author: A\n  sids: \"1300000-1309999\"\n  colour: red\n",
     "unknown key 'colour' in pack"),
    ("pack:\n  id: acme\n  title: ACME\n  author: A\n  msg_prefix: two words\n  sids: \"1300000-1309999\"\n",
     "'msg_prefix' must be one word"),
    ("pack:\n  id: article\n  title: ACME\n  author: A\n  sids: \"1300000-1309999\"\n",
     "pack id 'article' is already used by"),
])
def test_a_broken_pack_yaml_exits_2_naming_it(pack, message, tmp_path):
    site = _site(tmp_path / "site", pack=pack)
    result = run_rulegen("list", "-k", "@shipped", "-k", str(site))
    assert result.returncode == 2 and message in result.stderr and "Traceback" not in result.stderr, result.stderr
    assert f"{site / 'pack.yaml'}:" in result.stderr
