"""The phrasebook (rules/vocabulary/phrases.yaml): the engine's sentences come from it, and a
broken phrasebook is refused at load, and by `mtus rules lint`, with the file, line and key."""

from __future__ import annotations


import pytest
import yaml
from click.testing import CliRunner

from mtus_engine.evaluation.case import Case
from mtus_engine.evaluation.engine import Engine
from mtus_engine.interfaces.cli import main
from mtus_engine.errors import EngineError, RulebookError
from mtus_engine.rules.phrases import REQUIRED, load_phrases
from mtus_engine.rules.rulebook import load_rulebook


def _edit(rules, change):
    path = rules / "vocabulary" / "phrases.yaml"
    data = yaml.safe_load(path.read_text())
    change(data)
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def test_every_phrase_the_engine_uses_is_in_the_rulebook(root):
    phrases = load_phrases(root / "rules")
    for key in REQUIRED:
        assert isinstance(phrases[key], str) and phrases[key]


def test_a_reworded_phrase_changes_the_rationale(rules_copy):
    rules = rules_copy
    _edit(rules, lambda d: d["rationale"].update(certify="Certified: {item} meets the guideline."))
    engine = Engine(load_rulebook(rules))
    case = Case.model_validate({"id": "p", "request_date": "2014-06-20", "findings": {"acute_exacerbation": True},
                                "medications": [{"name": "naproxen"}],
                                "requests": [{"item": "Flexeril 7.5 mg #20", "prior_use_weeks": 0, "refills": 0}]})
    d = engine.evaluate(case).determinations[0]
    assert d.decision == "certify"
    assert d.rationale.endswith("Certified: Flexeril 7.5 mg #20 meets the guideline.")


def test_modified_request_is_fields_and_its_phrase(engine):
    case = Case.model_validate({"id": "m", "request_date": "2014-06-20",
                                "requests": [{"item": "Chiropractic 18 sessions lumbar", "prior_sessions": 0}]})
    d = engine.evaluate(case).determinations[0]
    assert d.decision == "modify", d.rationale
    m = d.modified_request
    assert m.change == f"{m.sessions} visits" and m.item == f"Chiropractic 18 sessions lumbar (modified to {m.change})"
    assert f"a modification to {m.change} is supported" in d.rationale


@pytest.mark.parametrize("change, message", [
    (lambda d: d["rationale"].pop("certify"), "rationale.certify: missing"),
    (lambda d: d["rationale"].update(certify=3), "rationale.certify: not a sentence (3; expected a sentence)"),
    (lambda d: d["rationale"].update(certify="ok {item} {dose}"), "rationale.certify: unknown placeholder(s) dose"),
    (lambda d: d["rationale"].update(extra="x"), "rationale.extra: not a phrase the engine uses"),
    (lambda d: d["rationale"].update(certify="ok {item"), "rationale.certify: "),
])
def test_a_broken_phrasebook_is_refused_naming_file_and_key(rules_copy, change, message):
    rules = rules_copy
    path = _edit(rules, change)
    with pytest.raises(EngineError) as err:
        load_phrases(rules)
    assert str(err.value).startswith(f"{path}: ") and message in str(err.value)


def test_lint_reports_a_broken_phrasebook_as_a_rulebook_problem_with_file_and_line(rules_copy):
    rules = rules_copy

    def change(d):
        d["rationale"].pop("certify")
        d["modification"]["visits"] = "{sessions} visits {dose}"
    path = _edit(rules, change)
    visits_line = next(n for n, text in enumerate(path.read_text().splitlines(), 1) if text.strip().startswith("visits:"))
    with pytest.raises(RulebookError) as err:
        load_rulebook(rules)
    assert any(p.startswith(f"{path}:") and "rationale.certify: missing" in p for p in err.value.problems)
    assert f"{path}:{visits_line}: modification.visits: unknown placeholder(s) dose (expected: sessions)" \
        in err.value.problems
    res = CliRunner().invoke(main, ["rules", "lint", "--rules", str(rules)])
    assert res.exit_code == 2 and "Traceback" not in res.stderr
    assert f"error: {path}:{visits_line}: modification.visits: unknown placeholder(s) dose" in res.stderr
    assert "rationale.certify: missing (expected a sentence)" in res.stderr
