"""The start-up cache: a cleanly loaded rulebook (and its compiled rules) pickled in a user cache
directory, reused while nothing it depends on changed, and never a reason for a command to fail."""

import os
import pickle
import subprocess
import sys

import pytest

from mtus_engine.evaluation import engine as engine_module
from mtus_engine.rules import rulebook as rb_module
from mtus_engine.evaluation.case import load_case
from mtus_engine.evaluation.engine import Engine
from mtus_engine.errors import RulebookError
from mtus_engine.rules.rulebook import load_rulebook

EXAMPLE = "cases/example-chronic-cyclobenzaprine.yaml"


@pytest.fixture
def cache(tmp_path, monkeypatch):
    d = tmp_path / "cache"
    monkeypatch.setenv("MTUS_CACHE_DIR", str(d))
    monkeypatch.delenv("MTUS_NO_CACHE", raising=False)
    return d


def _fresh_process(monkeypatch):
    """What a new process sees: no rulebook in memory."""
    monkeypatch.setattr(rb_module, "_loaded", {})
    monkeypatch.setattr(rb_module, "_handed_over", None)


def _entries(cache, kind):
    return sorted(cache.glob(f"{kind}-*.pickle"))


def test_second_load_comes_from_the_cache(cache, rules_copy, monkeypatch):
    first = load_rulebook(rules_copy)
    assert len(_entries(cache, "rulebook")) == 1
    _fresh_process(monkeypatch)
    monkeypatch.setattr(rb_module, "_load_rulebook", lambda root: pytest.fail("parsed the YAML again"))
    second = load_rulebook(rules_copy)
    assert second is not first
    assert second.directory == rules_copy
    assert second.digest == first.digest
    assert [r.id for r in second.rules] == [r.id for r in first.rules]
    assert second.rules == first.rules and second.facts == first.facts and second.manifest == first.manifest
    assert second.drugs.names() == first.drugs.names()
    # what is rebuilt rather than stored: the derivation plan (closures)
    assert list(second.derivation_plan.order) == list(first.derivation_plan.order)


def test_a_changed_rule_file_invalidates_the_cache(cache, rules_copy, monkeypatch):
    before = load_rulebook(rules_copy)
    path = rules_copy / "chronic-pain" / "baclofen.yaml"
    text = path.read_text()
    assert "section: Baclofen (Lioresal)" in text
    path.write_text(text.replace("section: Baclofen (Lioresal)", "section: Baclofen (Lioresal) edited"))
    _fresh_process(monkeypatch)
    after = load_rulebook(rules_copy)
    sections = {r.citation.section for r in after.rules if r.id.startswith("baclofen")}
    assert "Baclofen (Lioresal) edited" in sections
    assert after.digest != before.digest
    assert len(_entries(cache, "rulebook")) == 1     # the stale entry was replaced


@pytest.mark.parametrize("name", ["phrases.yaml", "items.yaml"])
def test_the_digest_covers_the_vocabulary_read_outside_the_facts(cache, rules_copy, monkeypatch, name):
    # the phrasebook and the item table decide what a determination says: the digest it names
    # (and the decision log records) must change with them
    before = load_rulebook(rules_copy).digest
    path = rules_copy / "vocabulary" / name
    path.write_text(path.read_text() + "\n# edited\n")
    _fresh_process(monkeypatch)
    assert load_rulebook(rules_copy).digest != before


def test_a_corrupt_cache_file_is_ignored_and_replaced(cache, rules_copy, monkeypatch):
    expected = load_rulebook(rules_copy)
    for entry in _entries(cache, "rulebook") + _entries(cache, "compiled"):
        entry.write_bytes(b"not a pickle")
    Engine(expected)      # the compiled entry is corrupt too: compiled afresh
    _fresh_process(monkeypatch)
    got = load_rulebook(rules_copy)
    assert got.digest == expected.digest and got.rules == expected.rules
    [entry] = _entries(cache, "rulebook")
    assert isinstance(pickle.loads(entry.read_bytes()), rb_module.Rulebook)
    assert Engine(got).compiled.definition == Engine(expected).compiled.definition


def test_an_unwritable_cache_dir_still_loads(tmp_path, rules_copy, monkeypatch):
    blocker = tmp_path / "a-file"
    blocker.write_text("a file where the cache directory should be")
    monkeypatch.setenv("MTUS_CACHE_DIR", str(blocker / "cache"))
    rb = load_rulebook(rules_copy)
    assert rb.rules
    _fresh_process(monkeypatch)
    assert Engine(load_rulebook(rules_copy)).compiled.families


def test_lint_errors_keep_file_and_line_after_a_cached_load(cache, rules_copy, monkeypatch):
    load_rulebook(rules_copy)
    path = rules_copy / "chronic-pain" / "baclofen.yaml"
    lines = path.read_text().splitlines()
    line = next(i for i, text in enumerate(lines, 1) if "drugs: [baclofen]" in text)
    path.write_text(path.read_text().replace("drugs: [baclofen]", "drugs: [lioresalx]", 1))
    _fresh_process(monkeypatch)
    with pytest.raises(RulebookError) as exc:
        load_rulebook(rules_copy)
    assert any(f"baclofen.yaml:{line}" in p and "lioresalx" in p for p in exc.value.problems)
    # a failed load is not cached: fixing the file loads it
    path.write_text(path.read_text().replace("drugs: [lioresalx]", "drugs: [baclofen]", 1))
    _fresh_process(monkeypatch)
    assert load_rulebook(rules_copy).by_id


def _evaluate(root, env, *args):
    return subprocess.run([sys.executable, "-m", "mtus_engine", "evaluate", EXAMPLE, "--format", "json", *args],
                          cwd=root, env=env, capture_output=True, check=True).stdout


def test_cli_output_is_identical_with_and_without_the_cache(cache, rules_copy, root):
    env = {**os.environ, "MTUS_CACHE_DIR": str(cache)}
    env.pop("MTUS_NO_CACHE", None)
    uncached = _evaluate(root, {**env, "MTUS_NO_CACHE": "1"})
    assert not cache.exists()
    cold = _evaluate(root, env)              # writes the cache
    assert _entries(cache, "rulebook") and _entries(cache, "compiled")
    warm = _evaluate(root, env)              # reads it
    assert uncached == cold == warm
    # --rules DIR: its own entries, same determinations for the same rules
    assert _evaluate(root, env, "--rules", str(rules_copy)) == uncached
    assert len(_entries(cache, "rulebook")) == 2


def test_the_compiled_rules_come_from_the_cache(cache, rules_copy, root, monkeypatch):
    first = Engine(load_rulebook(rules_copy))
    assert len(_entries(cache, "compiled")) == 1
    _fresh_process(monkeypatch)
    monkeypatch.setattr(engine_module, "compile_rulebook", lambda rb: pytest.fail("compiled again"))
    second = Engine(load_rulebook(rules_copy))
    assert second.compiled.rulebook is second.rulebook       # stored as a reference, not a copy
    assert second.compiled.definition == first.compiled.definition
    case = load_case(root / EXAMPLE)
    assert second.evaluate(case).to_json_data() == first.evaluate(case).to_json_data()


def test_rulesets_are_created_on_first_use_once_durable_rules_accepted_them(cache, rules_copy, root, monkeypatch):
    created = []
    real = engine_module.RulesetHandle

    def counting(name, definition):
        created.append(name)
        return real(name, definition)

    monkeypatch.setattr(engine_module, "RulesetHandle", counting)
    first = Engine(load_rulebook(rules_copy))     # cold: every family created (refusals fail here)
    assert len(created) == len(first.compiled.families) > 2
    assert _entries(cache, "accepted")
    case = load_case(root / EXAMPLE)
    expected = first.evaluate(case).to_json_data()
    _fresh_process(monkeypatch)
    created.clear()
    second = Engine(load_rulebook(rules_copy))    # warm: none until a case needs one
    assert created == []
    assert second.evaluate(case).to_json_data() == expected
    assert 0 < len(created) < len(second.compiled.families)
    assert sorted(rs.name for rs in second._rulesets) == sorted(created)
    second.evaluate(case)
    assert len(created) == len(set(created))      # each family created once


def test_a_family_durable_rules_refuses_fails_at_start_up_until_accepted(cache, rules_copy, monkeypatch):
    from mtus_engine.errors import EngineError

    def refuse(name, definition):
        raise EngineError(f"durable_rules refused ruleset {name}")

    monkeypatch.setattr(engine_module, "RulesetHandle", refuse)
    for _ in range(2):           # not marked accepted by a failed start: the next fails alike
        _fresh_process(monkeypatch)
        with pytest.raises(EngineError, match="refused"):
            Engine(load_rulebook(rules_copy))
        assert not _entries(cache, "accepted")
    _fresh_process(monkeypatch)
    with pytest.raises(EngineError):            # the cache off: always checked at start-up
        monkeypatch.setenv("MTUS_NO_CACHE", "1")
        Engine(load_rulebook(rules_copy))


def test_the_case_models_facts_come_from_the_cached_rulebook(cache, rules_copy, monkeypatch):
    from mtus_engine.evaluation import items as items_module   # the case facts and item tables
    from_yaml = items_module._read_case_facts(rules_copy / "vocabulary")
    assert from_yaml and set(from_yaml) < set(load_rulebook(rules_copy).facts)   # derived facts left out
    _fresh_process(monkeypatch)
    monkeypatch.setattr(items_module, "_read_case_facts", lambda vocabulary: pytest.fail("read the YAML"))
    got = items_module._case_facts(rules_copy)
    assert list(got.items()) == list(from_yaml.items())      # same facts, same order
    # nothing cached for this directory: read from the YAML (never a rulebook load from the import)
    _fresh_process(monkeypatch)
    monkeypatch.setenv("MTUS_NO_CACHE", "1")
    monkeypatch.setattr(items_module, "_read_case_facts", lambda vocabulary: {"read": vocabulary})
    assert items_module._case_facts(rules_copy) == {"read": rules_copy / "vocabulary"}


def test_the_item_tables_come_from_the_cached_rulebook(cache, rules_copy, monkeypatch):
    from mtus_engine.evaluation import items as items_module   # the case facts and item tables
    from_yaml = items_module._read_item_vocabulary(rules_copy / "vocabulary")
    assert load_rulebook(rules_copy).items == from_yaml          # checked and kept at load
    _fresh_process(monkeypatch)
    monkeypatch.setattr(items_module, "_read_item_vocabulary", lambda vocabulary: pytest.fail("read the YAML"))
    got = items_module._item_vocabulary(rules_copy)                # unpickled from the start-up cache
    assert list(got) == list(from_yaml) and got == from_yaml       # same tables, same order
    # nothing cached for this directory: read from the YAML (never a rulebook load from the import)
    _fresh_process(monkeypatch)
    monkeypatch.setenv("MTUS_NO_CACHE", "1")
    monkeypatch.setattr(items_module, "_read_item_vocabulary", lambda vocabulary: {"read": vocabulary})
    assert items_module._item_vocabulary(rules_copy) == {"read": rules_copy / "vocabulary"}


def test_the_item_needles_come_from_the_start_up_cache(cache, rules_copy, monkeypatch):
    from mtus_engine.evaluation import items as items_module   # the case facts and item tables
    first = items_module._tables_of(rules_copy, load_rulebook(rules_copy))    # worked out, then kept
    assert first.has_needles and _entries(cache, "item-needles")
    _fresh_process(monkeypatch)
    monkeypatch.setattr(items_module, "_vocabulary_needles", lambda vocabulary: pytest.fail("worked them out again"))
    again = items_module._tables_of(rules_copy, items_module.cached_rulebook(rules_copy))
    assert again.has_needles
    assert [e[3] for e in again.item_modalities] == [e[3] for e in first.item_modalities]
    # the cache off: no needles until the warm-up (then worked out), nothing written
    _fresh_process(monkeypatch)
    monkeypatch.setenv("MTUS_NO_CACHE", "1")
    assert not items_module._tables_of(rules_copy, load_rulebook(rules_copy)).has_needles


def test_a_start_walks_the_rules_directory_once(cache, rules_copy, monkeypatch):
    load_rulebook(rules_copy)          # the entry exists
    _fresh_process(monkeypatch)
    walks = []
    real = rb_module._files_key
    monkeypatch.setattr(rb_module, "_files_key", lambda root: walks.append(root) or real(root))
    monkeypatch.setattr(rb_module, "_hand_over_armed", False)
    rb_module.arm_hand_over()                                         # the command's start
    found = rb_module.cached_rulebook(rules_copy, hand_over=True)     # the case model's import
    assert load_rulebook(rules_copy) is found and len(walks) == 1   # the command's engine
    # a later load looks at the files again: an edited rule file is loaded afresh
    load_rulebook(rules_copy)
    assert len(walks) == 2
    rb_module.cached_rulebook(rules_copy)     # any other look-up hands nothing over
    load_rulebook(rules_copy)
    assert len(walks) == 4


def test_without_a_command_start_an_edit_after_the_case_model_import_is_loaded(cache, rules_copy, monkeypatch):
    # a library user imports the case model, edits a rule file, then loads: the hand-over of
    # the import's files key (a command's start only) would give the rulebook from before the edit
    load_rulebook(rules_copy)
    _fresh_process(monkeypatch)
    monkeypatch.setattr(rb_module, "_hand_over_armed", False)
    before = rb_module.cached_rulebook(rules_copy, hand_over=True)
    path = rules_copy / "acoem" / "shoulder-special-studies.yaml"
    text = path.read_text()
    old_title = before.by_id["imaging.shoulder"].title
    path.write_text(text.replace(f"title: {old_title}", "title: Shoulder imaging, edited"))
    assert load_rulebook(rules_copy).by_id["imaging.shoulder"].title == "Shoulder imaging, edited"


def test_the_plain_evaluate_walks_the_rules_once(root, tmp_path):
    code = ("import atexit, sys\n"
            "import mtus_engine.rules.rulebook as rb\n"
            "walks = []\n"
            "real = rb._files_key\n"
            "rb._files_key = lambda root: walks.append(root) or real(root)\n"
            "atexit.register(lambda: sys.__stderr__.write(str(len(walks))))\n"
            "from mtus_engine.interfaces.front import main\n"
            "main(['evaluate', sys.argv[1], '--format', 'json'])\n")
    env = {**os.environ, "MTUS_CACHE_DIR": str(tmp_path)}
    env.pop("MTUS_RULES", None)
    for _ in range(2):     # the second with the start-up cache written
        res = subprocess.run([sys.executable, "-c", code, str(root / "cases/example-chronic-cyclobenzaprine.yaml")],
                             capture_output=True, text=True, timeout=120, env=env)
    assert res.returncode == 0 and res.stdout.startswith("{") and res.stderr == "1"


def _python(code, **env):
    run_env = {k: v for k, v in os.environ.items() if k != "PYDANTIC_DISABLE_PLUGINS"}
    return subprocess.run([sys.executable, "-c", code], env={**run_env, **env}, capture_output=True,
                          text=True, check=True).stdout.split()


_PLUGIN_PROBE = """
import sys
import mtus_engine.interfaces.cli
from pydantic import BaseModel
class M(BaseModel):
    x: int
assert M(x=1).x == 1
print("metadata" if "importlib.metadata" in sys.modules else "none")
import os
os.environ["PYDANTIC_DISABLE_PLUGINS"] = "some-plugin"      # plugins back on: the real loader answers
stand_in = sys.modules["pydantic.plugin._loader"]
print(list(stand_in.get_plugins()), sys.modules["pydantic.plugin._loader"].get_plugins.__module__)
"""


def test_the_cli_never_imports_importlib_metadata_for_pydantic_plugins_it_turned_off():
    # plugins off (the command's default): no entry-point scan and not even its import
    assert _python(_PLUGIN_PROBE)[0] == "none"
    # the stand-in hands over to pydantic's loader when plugins are turned on again
    assert _python(_PLUGIN_PROBE)[1:] == ["[]", "pydantic.plugin._loader"]
    # a user's own setting (one plugin off, the others on): pydantic's loader from the start
    assert _python(_PLUGIN_PROBE, PYDANTIC_DISABLE_PLUGINS="some-plugin")[0] == "metadata"


def test_facts_read_per_drug_and_modality_worked_out_when_asked_equal_the_rules(root):
    rb = load_rulebook(root / "rules")
    rb.__dict__.pop("_reads", None)

    def read(rules):
        return frozenset([f for r in rules for c in r.criteria for f in (c.fact, c.when and c.when.fact) if f]
                         + [r.applies_when.fact for r in rules if r.applies_when])

    for generic, spec in rb.drugs.drugs.items():
        expected = read([r for r in rb.rules if generic in r.applies_to.drugs
                         or set(spec.classes) & set(r.applies_to.classes)])
        assert rb.reads(generic, None) == expected, generic
    modalities = {m for r in rb.rules for m in r.applies_to.modalities}
    assert len(modalities) > 5
    for m in modalities:
        assert rb.reads(None, m) == read([r for r in rb.rules if m in r.applies_to.modalities]), m
    assert any(rb.reads(None, m) for m in modalities)
    assert rb.reads("no-such-drug", None) == rb.reads(None, "no-such-modality") == rb.reads(None, None) == frozenset()
