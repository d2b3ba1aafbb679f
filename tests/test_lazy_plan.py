"""A warm start's derivation plan compiles each derived fact when a request first needs it (its
order and dependencies come from the start-up cache as data): the same determinations as the
plan compiled whole, for every case of the corpus, from one thread or many."""

from __future__ import annotations

import pickle
import sys
import threading
from pathlib import Path

import pytest

from mtus_engine.errors import MtusError
from mtus_engine.evaluation.case import load_case
from mtus_engine.evaluation.derivations import Plan, _Steps
from mtus_engine.evaluation.engine import Engine
from mtus_engine.interfaces.render import render_json
from mtus_engine.rules.rulebook import load_rulebook

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def cases() -> list:
    sys.path.insert(0, str(ROOT / "benchmarks"))
    try:
        from bench_engine import family_mix
    finally:
        sys.path.remove(str(ROOT / "benchmarks"))
    found = family_mix()
    for path in sorted(ROOT.glob("cases/*.yaml")) + sorted(ROOT.glob("cases/notes/*.yaml")):
        try:
            found.append(load_case(path))
        except MtusError:
            continue
    assert len(found) > 400
    return found


def _copies():
    """(a rulebook whose plan is compiled whole, one whose plan is made from the cached shape),
    as a warm start unpickles them."""
    rb = load_rulebook(ROOT / "rules")
    rb.derivation_plan    # made: its shape goes into the pickle
    data = pickle.dumps(rb)
    eager, lazy = pickle.loads(data), pickle.loads(data)
    assert "_plan_shape" in lazy.__dict__
    del eager.__dict__["_plan_shape"]
    assert not isinstance(eager.derivation_plan.steps, _Steps)
    assert isinstance(lazy.derivation_plan.steps, _Steps)
    return eager, lazy


@pytest.fixture(scope="module")
def expected(cases) -> list[str]:
    eager, _ = _copies()
    engine = Engine(eager)
    return [render_json(engine.evaluate(case)) for case in cases]


def test_a_lazy_plan_gives_the_same_determinations(cases, expected):
    _, lazy = _copies()
    engine = Engine(lazy)
    steps = lazy.derivation_plan.steps
    first = render_json(engine.evaluate(cases[0]))
    assert first == expected[0]
    # one case compiles what its requests need, not every derived fact
    assert 0 < len(steps._made) < len(steps)
    assert [render_json(engine.evaluate(case)) for case in cases] == expected


def test_a_lazy_step_is_the_step_compiled_whole():
    eager, lazy = _copies()
    whole, lazy_plan = eager.derivation_plan, lazy.derivation_plan
    assert lazy_plan.order == whole.order
    assert set(lazy_plan.steps) == set(whole.steps) and len(lazy_plan.steps) == len(whole.steps)
    assert "no_such_fact" not in lazy_plan.steps and lazy_plan.steps.get("no_such_fact") is None
    for name in whole.order:
        a, b = whole.steps[name], lazy_plan.steps[name]
        assert (a.deps, a.reads, a.keyed, a.guard_keyed, a.is_list, a.values, a.params, a.solve) == \
               (b.deps, b.reads, b.keyed, b.guard_keyed, b.is_list, b.values, b.params, b.solve), name
    for drug, modality in [("tramadol", None), ("cyclobenzaprine", None), (None, "physical_therapy"), (None, None)]:
        assert [s.name for s in lazy_plan.for_request(drug, modality)] == \
               [s.name for s in whole.for_request(drug, modality)]


def test_a_lazy_plan_under_threads(cases, expected):
    # the service's threads start on one engine: each step is compiled once, and every
    # thread's determinations are those of the plan compiled whole
    _, lazy = _copies()
    engine = Engine(lazy)
    out: dict[int, str] = {}
    errors: list[BaseException] = []
    barrier = threading.Barrier(8)

    def work(k: int) -> None:
        try:
            barrier.wait()
            for i in range(k, len(cases), 8):
                out[i] = render_json(engine.evaluate(cases[i]))
        except BaseException as exc:   # reported below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(k,)) for k in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert [out[i] for i in range(len(cases))] == expected
    plan = lazy.derivation_plan
    for (drug, modality) in list(plan._memo):
        for step in plan.for_request(drug, modality):
            assert plan.steps[step.name] is step


def test_a_plan_made_from_declarations_still_reports_every_problem():
    rb = load_rulebook(ROOT / "rules")
    facts = dict(rb.facts)
    name = next(n for n in rb.derivation_plan.order if facts[n].formula is not None)
    facts[name] = type(facts[name])(**{**facts[name].__dict__, "formula": "no_such_name + 1"})
    with pytest.raises(ValueError, match="no_such_name"):
        Plan(facts, rb.reads)
