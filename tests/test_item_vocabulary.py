"""rules/vocabulary/items.yaml: the ordered modality table the item parser reads, its order
examples, and the needle prefilter that must never change what a pattern finds."""

from __future__ import annotations

import os
import random
import re
from pathlib import Path

import pytest
import yaml

from mtus_engine.evaluation import items
from mtus_engine.evaluation.case import case_from_data
from mtus_engine.errors import InputError

ROOT = Path(__file__).resolve().parents[1]
VOCAB = yaml.safe_load((ROOT / "rules" / "vocabulary" / "items.yaml").read_text())
EXAMPLES = VOCAB["order_examples"]


def _modalities():
    return items._tables().item_modalities     # (name, strong, pattern, needles), in the YAML's order


def _entries(name: str) -> list[int]:
    return [n for n, row in enumerate(_modalities()) if row[0] == name]


def _matches(n: int, item: str) -> bool:
    return bool(re.compile(*_modalities()[n][2]._args).search(item))


def _fresh_tables(monkeypatch, needles: bool) -> "items._ItemTables":
    """The rulebook in effect's tables as a new process has them: needles from the start-up
    cache or none (worked out after the warm-up), no pattern compiled, no finder."""
    vocabulary = items._tables().vocabulary
    fresh = items._ItemTables(vocabulary, items._vocabulary_needles(vocabulary) if needles else None)
    monkeypatch.setitem(items._tables_by_rules, os.environ.get("MTUS_RULES"), fresh)
    return fresh


@pytest.mark.parametrize("example", EXAMPLES, ids=[e["item"] for e in EXAMPLES])
def test_order_example_is_matched_by_both_and_won_by_the_earlier(example):
    item, wins, over = example["item"], example["wins"], example["over"]
    first_win = next(n for n in _entries(wins) if _matches(n, item))
    over_hits = [n for n in _entries(over) if _matches(n, item)]
    assert over_hits, f"{item!r} is not matched by {over}: the example shows no order"
    assert first_win < min(over_hits), f"{wins} must come before {over} in items.yaml"
    assert items.item_modality(item)[0] == wins


@pytest.mark.parametrize("warm", [False, True], ids=["first items", "after the warm-up"])
def test_the_parser_honours_the_tables_order(monkeypatch, warm):
    tables = _fresh_tables(monkeypatch, needles=True)
    original = tables.item_modalities
    if warm:
        tables.parses = items.WARM_UP_ITEMS
    monkeypatch.setattr(tables, "item_modalities", tuple(reversed(original)))
    for example in EXAMPLES:
        # reversed, the last entry that matches wins; where that is another entry of the same
        # modality (a narrower entry placed ahead of its general one), the winner stays
        last = max(n for n in range(len(original)) if bool(re.compile(*original[n][2]._args).search(example["item"])))
        assert items.item_modality(example["item"])[0] == original[last][0], example
    # and for all but such narrower entries, reversing the table hands the item to the loser
    flipped = [e for e in EXAMPLES if items.item_modality(e["item"])[0] != e["wins"]]
    assert len(flipped) >= len(EXAMPLES) - 1, "reversing the table must change the examples' winners"


def test_the_table_is_the_yaml_in_order():
    assert [(r["modality"], r.get("strong", False)) for r in VOCAB["item_modalities"]] == \
        [(name, strong) for name, strong, *_ in _modalities()]


def _corpus() -> list[str]:
    texts = {r.item for case in _cases() for r in case.requests}
    rnd = random.Random(3)
    words = " ".join(sorted(texts)).split()
    texts |= {" ".join(rnd.choice(words) for _ in range(rnd.randint(1, 6))) for _ in range(3000)}
    return sorted(texts) + [t.upper() for t in sorted(texts)][:500]


def _cases():
    for path in sorted((ROOT / "rules").rglob("*.test.yaml")):
        for entry in (yaml.safe_load(path.read_text()) or {}).get("tests") or []:
            try:
                yield case_from_data(entry["case"], str(path))
            except Exception:  # noqa: BLE001 - invalid cases are what some tests are about
                continue


def test_every_pattern_compiles():
    tables = items._tables()
    for table in (tables.item_modalities, tables.text_modalities, tables.text_regions, tables.item_regions):
        for _, _, pattern, _ in table:
            re.compile(*pattern._args)


@pytest.mark.parametrize("warm", [False, True], ids=["needles checked one by one", "the needle finder"])
def test_needles_never_change_a_match(monkeypatch, warm):
    tables = _fresh_tables(monkeypatch, needles=True)
    if warm:
        tables.parses = items.WARM_UP_ITEMS
    plain = [(n, s, re.compile(*p._args)) for n, s, p, _ in tables.item_modalities]
    regions = [(n, re.compile(*p._args)) for n, _, p, _ in tables.text_regions]
    for text in _corpus():
        expect = next(((n, s) for n, s, rx in plain if rx.search(text)), (None, False))
        assert items.item_modality(text) == expect, text
        assert items.body_regions(text) == [n for n, rx in regions if rx.search(text)], text
        if not warm:
            tables.parses = 0     # stays before the warm-up
    assert (tables.finder is not None) == warm


def test_a_drug_item_compiles_no_modality_pattern(monkeypatch):
    # with the needles from the start-up cache, a cold evaluate of a drug request tries none of
    # the ~40 item patterns (compiling them was a fifth of its first evaluate)
    tables = _fresh_tables(monkeypatch, needles=True)
    assert items.item_modality("Cyclobenzaprine 7.5mg #60 refills x 3") == (None, False)
    assert all(pattern._compiled is None for _, _, pattern, _ in tables.item_modalities)
    assert tables.finder is None


def test_the_first_items_take_the_plain_path_and_agree(monkeypatch):
    tables = _fresh_tables(monkeypatch, needles=False)     # no needles cached: worked out later
    corpus = _corpus()[:items.WARM_UP_ITEMS]
    plain = [(items.item_modality(t), items.item_regions(t)) for t in corpus]
    assert not tables.has_needles and tables.finder is None     # nothing built for a one-case command
    items.item_modality("x")
    assert tables.has_needles and tables.finder is not None
    assert plain == [(items.item_modality(t), items.item_regions(t)) for t in corpus]


def test_needles_are_lower_case_and_found_in_what_they_guard(monkeypatch):
    tables = _fresh_tables(monkeypatch, needles=True)
    for table in (tables.item_modalities, tables.text_regions, tables.item_regions):
        for *_, needles in table:
            assert needles and all(n == n.lower() for n in needles)
    # "Knee" with a Kelvin sign matches \bknees?\b case-insensitively: non-ASCII text skips needles
    assert items.item_regions("\u212anee brace") == ["knee"]


def test_a_broken_item_vocabulary_names_the_file_and_entry(tmp_path):
    (tmp_path / "items.yaml").write_text(
        "item_modalities:\n  - {modality: x, pattern: 3}\ntext_modalities: []\n")
    with pytest.raises(InputError) as err:
        items._read_item_vocabulary(tmp_path)
    assert "items.yaml" in str(err.value) and "item_modalities[0]" in str(err.value)


def test_a_broken_item_entry_is_a_rulebook_lint_error(rules_copy):
    """items.yaml is part of the rulebook: `mtus rules lint` names the file, line and entry of a
    malformed entry and of a pattern that does not compile, and exits 2."""
    from click.testing import CliRunner

    from mtus_engine.interfaces.cli import main
    rules = rules_copy
    path = rules / "vocabulary" / "items.yaml"
    text = path.read_text()
    fce, bone = "pattern: 'functional capacity|", "pattern: 'bone scan|scintigra"
    assert fce in text and bone in text
    text = text.replace(fce, "pattern: 3\n    unused: '", 1).replace(bone, "pattern: 'bone scan(|scintigra", 1)
    path.write_text(text)
    lines = text.splitlines()
    bad_line = next(n for n, line in enumerate(lines, 1) if "pattern: 3" in line) - 2    # the entry's first line
    bone_line = next(n for n, line in enumerate(lines, 1) if "bone scan(" in line) - 2
    bone_index = next(n for n, row in enumerate(VOCAB["item_modalities"]) if row["modality"] == "bone_scan")
    res = CliRunner().invoke(main, ["rules", "lint", "--rules", str(rules)])
    assert res.exit_code == 2, res.output
    assert f"{path}:{bad_line}: item_modalities[0]: invalid entry (expected modality: a name" in res.stderr
    assert f"{path}:{bone_line}: item_modalities[{bone_index}]: pattern does not compile" in res.stderr
    assert "Traceback" not in res.stderr


def test_an_unknown_name_or_key_in_the_item_table_is_a_lint_error(rules_copy):
    """A modality or region the fact vocabulary does not declare ("fcee") would reach the engine
    as a request no rule covers, and a misspelt key ("stong") would be dropped: both are lint
    problems naming the file, line and entry (exit 2), not a silent change of what items mean."""
    from click.testing import CliRunner

    from mtus_engine.interfaces.cli import main
    rules = rules_copy
    path = rules / "vocabulary" / "items.yaml"
    text = path.read_text()
    fce, knee = "  - modality: fce\n    strong: true\n", "  - region: lumbar\n    pattern: '(?<!upper )"
    assert fce in text and knee in text
    text = text.replace(fce, "  - modality: fcee\n    stong: true\n", 1).replace(knee, "  - region: lumbr\n    pattern: '(?<!upper )", 1)
    path.write_text(text)
    lines = text.splitlines()
    fce_line = next(n for n, line in enumerate(lines, 1) if "modality: fcee" in line)
    region_line = next(n for n, line in enumerate(lines, 1) if "region: lumbr" in line)
    region_index = next(n for n, row in enumerate(VOCAB["item_regions"]) if row["region"] == "lumbar")
    res = CliRunner().invoke(main, ["rules", "lint", "--rules", str(rules)])
    assert res.exit_code == 2, res.output
    assert f"{path}:{fce_line}: item_modalities[0]: unknown key stong" in res.stderr
    assert f"{path}:{fce_line}: item_modalities[0]: unknown modality 'fcee'" in res.stderr
    assert f"{path}:{region_line}: item_regions[{region_index}]: unknown region 'lumbr'" in res.stderr
    assert "Traceback" not in res.stderr
    # a fresh process without the start-up cache: the case model's import reads the table before
    # the lint does, and says the same, with the lines
    import os
    import subprocess
    import sys
    run = subprocess.run([sys.executable, "-m", "mtus_engine", "rules", "lint", "--rules", str(rules)],
                         capture_output=True, text=True, env={**os.environ, "MTUS_NO_CACHE": "1"})
    assert run.returncode == 2 and "Traceback" not in run.stderr, run.stderr
    assert f"{path}:{fce_line}: item_modalities[0]: unknown key stong" in run.stderr
    assert f"{path}:{region_line}: item_regions[{region_index}]: unknown region 'lumbr'" in run.stderr


def test_the_item_tables_follow_the_rulebook_in_effect(rules_copy, monkeypatch):
    """A process that switches rulebook (MTUS_RULES, --rules) reads the second one's items.yaml,
    as the letter reader takes its vocabulary: the item parser, the region finder and the
    letter extractor's therapies alike."""
    from mtus_engine.letters import letter
    from mtus_engine.rules.rulebook import load_rulebook
    path = rules_copy / "vocabulary" / "items.yaml"
    text = path.read_text()
    fce, knee, pt = ("pattern: 'functional capacity|", "pattern: '\\bknees?\\b|",
                     "pattern: '\\b(?i:physical therap\\w*|physiotherap\\w*)|\\bPT\\b'")
    assert fce in text and knee in text and pt in text
    path.write_text(text.replace(fce, "pattern: 'work tolerance screen|functional capacity|", 1)
                    .replace(knee, "pattern: '\\bknees?\\b|\\bkneecaps?\\b|", 1)
                    .replace(pt, "pattern: '\\b(?i:physical therap\\w*|physiotherap\\w*|kinesiotherap\\w*)|\\bPT\\b'", 1))
    item, region, therapy = "Work tolerance screen", "pain over the kneecap", "kinesiotherapy twice a week"
    monkeypatch.delenv("MTUS_RULES", raising=False)
    assert items.item_modality(item) == (None, False) and items.body_regions(region) == []
    assert not letter._therapy_patterns()["physical_therapy"].search(therapy)
    drugs = load_rulebook(rules_copy).drugs
    monkeypatch.setenv("MTUS_RULES", str(rules_copy))
    assert items.item_modality(item) == ("fce", True)
    assert items.parse_item(item, drugs)["modality"] == "fce"
    assert items.body_regions(region) == ["knee"] and items.item_regions("brace for the kneecap") == ["knee"]
    assert letter._therapy_patterns()["physical_therapy"].search(therapy)
    monkeypatch.delenv("MTUS_RULES")      # and back
    assert items.item_modality(item) == (None, False) and items.body_regions(region) == []
    assert not letter._therapy_patterns()["physical_therapy"].search(therapy)


def test_threads_warming_the_tables_at_once_build_a_finder_of_every_needle():
    # the service's worker threads parse items at once: one thread setting the needles while
    # another built the finder from the entries still without needles left a finder that missed
    # them, and every item after the warm-up parsed as no modality
    import threading
    import time

    class Slow(items._ItemTables):
        def __setattr__(self, name, value):
            if name == "item_modalities" and getattr(self, "has_needles", False):
                time.sleep(0.2)    # the window between the needles' flag and the entries
            super().__setattr__(name, value)

    tables = Slow(items._tables().vocabulary)
    tables.parses = items.WARM_UP_ITEMS + 10
    threads = [threading.Thread(target=tables.warm) for _ in range(2)]
    threads[0].start()
    time.sleep(0.05)
    threads[1].start()
    for t in threads:
        t.join()
    wanted = {n for *_, needles in tables.item_modalities if needles for n in needles}
    assert wanted and tables.finder is not None
    assert tables.needles_in(" ".join(sorted(wanted))) >= wanted


def test_a_medication_is_named_when_another_thread_empties_the_item_cache(monkeypatch):
    # the item cache is emptied when it grows past its bound, by whichever of the service's
    # threads parses then: a medication's name parsed and stored by one thread may be gone
    # before that thread reads it back (simulated: a cache that keeps nothing)
    from mtus_engine.rules.rulebook import load_rulebook

    class Forgetful(dict):
        def __setitem__(self, key, value):
            pass

    drugs = load_rulebook().drugs
    monkeypatch.setattr(items, "_item_cache", Forgetful())
    assert items.medication_generic("Flexeril 10 mg", drugs) == "cyclobenzaprine"
    assert items.medication_generic("compounded ketoprofen 20% cream", drugs) == items.COMPOUND
