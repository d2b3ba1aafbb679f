"""What a warm start builds when a case first needs it, not for the whole rulebook: the
derivation plan compiles each derived fact when a request first needs it (its order and
dependencies come from the start-up cache as data), and the compiled rules unpickle a family's
definitions when its ruleset is first made. The same determinations as built whole, for every
case of the corpus, from one thread or many."""

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
from mtus_engine.rules.compiler import compile_rulebook
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


def _round_trip(compiled, rb):
    """compiled pickled and read back as the start-up cache does (the rulebook by reference)."""
    import io

    class Out(pickle.Pickler):
        def persistent_id(self, obj):
            return "rulebook" if obj is rb else None

    class In(pickle.Unpickler):
        def persistent_load(self, pid):
            return rb

    buf = io.BytesIO()
    Out(buf, pickle.HIGHEST_PROTOCOL).dump(compiled)
    return In(io.BytesIO(buf.getvalue())).load()


def test_compiled_definitions_are_unpickled_when_read():
    rb = load_rulebook(ROOT / "rules")
    whole = compile_rulebook(rb)
    back = _round_trip(whole, rb)
    assert not any("definition" in f.__dict__ for f in back.families) and "definition" not in back.__dict__
    # pickled again before any is read: the same values (the kept pickles written as they are)
    again = _round_trip(back, rb)
    assert back.families[3].definition == whole.families[3].definition
    assert "definition" in back.families[3].__dict__ and "definition" not in back.families[4].__dict__
    for copy in (back, again, _round_trip(back, rb)):
        assert [f.definition for f in copy.families] == [f.definition for f in whole.families]
        assert list(copy.definition.items()) == list(whole.definition.items())
        assert [f.rule_keys for f in copy.families] == [f.rule_keys for f in whole.families]
        assert copy.actions == whole.actions and copy.name == whole.name
    with pytest.raises(AttributeError):
        back.families[0].no_such_field


def test_a_warm_engine_unpickles_the_families_its_cases_need(cases, expected):
    rb = load_rulebook(ROOT / "rules")
    if not rb.caches:
        pytest.skip("the start-up cache is off")
    Engine(rb)          # writes the cache entry, when missing
    engine = Engine(rb)  # reads it
    families = engine.compiled.families
    assert not any("definition" in f.__dict__ for f in families)
    assert render_json(engine.evaluate(cases[0])) == expected[0]
    assert 0 < sum("definition" in f.__dict__ for f in families) < len(families)
    assert [render_json(engine.evaluate(case)) for case in cases] == expected
