"""The engine's compiled per-request machinery: the fact plans (what a request's fact holds,
per drug and modality) and the verdicts (what a set of fired rules decides, values aside)."""

from __future__ import annotations

import sys

import pytest

from mtus_engine.evaluation.case import derive_request, load_case_text
from mtus_engine.evaluation.derivations import FactPlan, request_facts
from mtus_engine.evaluation.derived import DerivedRequest
from mtus_engine.evaluation.engine import Engine
from mtus_engine.interfaces.render import render_json
from mtus_engine.rules.compiler import flag

_ABSENT = object()


@pytest.fixture(scope="module")
def corpus(root) -> list:
    """Every case of the rule tests and the real letters' gold files: rules of every family fire
    (the engine benchmark's mix, read by its own function)."""
    sys.path.insert(0, str(root / "benchmarks"))
    try:
        from bench_engine import family_mix
    finally:
        sys.path.remove(str(root / "benchmarks"))
    cases = family_mix()
    assert len(cases) > 400
    return cases


def _rules_for(rb, drug, modality):
    """The rules that can apply to a request for this drug or modality (what Rulebook.reads reads)."""
    if drug:
        spec = rb.drugs.drugs.get(drug)
        classes = set(spec.classes) if spec else set()
        return [r for r in rb.rules if spec and (drug in r.applies_to.drugs or classes & set(r.applies_to.classes))]
    return [r for r in rb.rules if modality in r.applies_to.modalities]


def _plan_for(engine, drug, modality):
    """The plan the engine makes for a drug or modality, from a request naming just that."""
    rb = engine.rulebook
    case = load_case_text("id: probe\nrequests: [{item: probe}]\n")
    req = DerivedRequest.of({"item": "probe", **({"drug": drug} if drug else {"modality": modality})})
    return FactPlan(rb, engine.compiled, case, req, request_facts(case, req, rb))


def test_every_fact_a_rule_that_can_apply_reads_is_in_its_plan(engine):
    # for every drug and modality of the vocabulary: each key the durable rules of the rules
    # for it read is in the payload durable_rules is given, and each fact those rules read
    # (criteria, when: guards, applies_when) is carried by the working fact, as a finding, a
    # request field, the patient's age or a derived fact the plan computes
    rb, compiled = engine.rulebook, engine.compiled
    keys = [(d, None) for d in sorted(rb.drugs.drugs)]
    keys += [(None, m) for m in sorted({m for r in rb.rules for m in r.applies_to.modalities})]
    rule_keys = {r: ks for f in compiled.families for r, ks in f.rule_keys.items()}
    checked = 0
    for drug, modality in keys:
        rules = _rules_for(rb, drug, modality)
        if not rules:
            continue
        plan = _plan_for(engine, drug, modality)
        derived = {s.name for s in rb.derivation_plan.for_request(drug, modality)}
        carried = ({n for n, _ in plan.findings} | set(plan.fields) | ({"age"} if plan.age else set())
                   | derived)
        for rule in rules:
            assert rule_keys[rule.id] <= set(plan.payload), (rule.id, rule_keys[rule.id] - set(plan.payload))
            read = [f for c in rule.criteria for f in (c.fact, c.when and c.when.fact) if f]
            read += [rule.applies_when.fact] if rule.applies_when else []
            missing = [f for f in read if f not in carried]
            assert not missing, f"{rule.id} reads {missing}, which the plan for {drug or modality} leaves out"
            checked += 1
    assert checked > 100


def test_a_planned_fact_gives_every_key_the_rules_read_as_the_full_fact_does(engine, corpus):
    # on every request of the corpus, each key of the payload (what the rules that can apply
    # read) is in the planned fact exactly as in request_facts' full fact, and the planned fact
    # picks the same families and drug classes
    rb, compiled = engine.rulebook, engine.compiled
    compared = 0
    for case in corpus:
        for i in range(len(case.requests)):
            req = DerivedRequest.of(derive_request(case, i, rb.drugs)[0])
            full = request_facts(case, req, rb)
            plan = FactPlan(rb, compiled, case, req, full)
            planned = plan.facts(case, req, rb)
            assert compiled.families_for(planned) == plan.families == compiled.families_for(full)
            assert compiled.classes_on(planned) == plan.classes
            for key in plan.payload:
                assert planned.get(key, _ABSENT) == full.get(key, _ABSENT), (case.id, i, key)
                compared += 1
    assert compared > 5000


def test_a_request_whose_fact_sets_other_drug_classes_than_its_plan_uses_the_full_fact(engine, corpus):
    # a plan is made from the first request for its drug and modality; a request whose working
    # fact sets other drug-class flags is judged from the full fact instead
    fresh = Engine(engine.rulebook)
    case = next(c for c in corpus if c.id == "acute-ribs")
    want = render_json(engine.evaluate(case))
    fresh.evaluate(case)
    (key, plan), = [(k, p) for k, p in fresh._fact_plans.items() if k[0] == "oxycodone"]
    # as under a rulebook whose drug classes are not the drug's alone (plan.classes_fixed off)
    plan.classes, plan.classes_fixed = frozenset({flag("drug_class", "nsaid")}), False
    plan.payload, plan.findings, plan.fields, plan.families = ("kind", "id"), (), {}, []   # could not judge it
    assert render_json(fresh.evaluate(case)) == want


def test_cached_plans_and_verdicts_never_carry_one_request_into_another(engine, corpus):
    # plans and verdicts are kept per (drug, modality) and per (fired rules, parts in effect):
    # every case judged by an engine that has seen the whole corpus is judged as by one that
    # has seen nothing
    for case in corpus:
        engine.evaluate(case)
    cold = Engine(engine.rulebook)
    for case in corpus:
        cold._fact_plans.clear()
        cold._verdicts.clear()
        assert render_json(engine.evaluate(case)) == render_json(cold.evaluate(case)), case.id


SUPPLY = """\
id: acute-supply
injury_date: 2016-10-18
request_date: 2016-11-29
diagnoses: [status post rib fracture T9-10]
findings: {{analgesia_documented: true}}
medications: [{{name: Percocet}}]
requests: [{{item: "Oxycodone HCL ER 20mg #{qty}", units_per_day: 2}}]
"""


def test_one_verdict_serves_requests_with_different_values(engine):
    # the same rules fire in the same states: one verdict, and each request's finding and
    # rationale name its own supply (quantity / the drug's usual 4 a day)
    dets = [engine.evaluate(load_case_text(SUPPLY.format(qty=q))).determinations[0] for q in (20, 40, 44)]
    assert {d.decision for d in dets} == {"certify"}
    for det, days in zip(dets, ("5", "10", "11")):
        supply = next(c for c in det.criteria if c.criterion == "limited-supply")
        assert supply.value == float(days) and f"about {days} days" in supply.finding
        assert f"about {days} days" in det.rationale
    longer = engine.evaluate(load_case_text(SUPPLY.format(qty=200))).determinations[0]
    assert longer.decision == "modify" and "about 50 days" in longer.rationale


def test_engine_start_makes_no_criteria_texts(engine):
    # a rule's criteria texts are made the first time it applies, not for every rule at start-up
    fresh = Engine(engine.rulebook)
    assert fresh._criteria == {}
    fresh.evaluate(load_case_text(SUPPLY.format(qty=20)))
    assert set(fresh._criteria) == {"opioids.severe-acute-injury"}


def test_the_next_stage_is_kept_per_names_fired_per_then_and_per_session(monkeypatch):
    # the backend keeps stage two's facts as JSON per names fired: asked again, ``then`` is not
    # called; another ``then`` or a new session (the JSON names it) starts afresh
    from mtus_engine.evaluation import backend
    from mtus_engine.evaluation.backend import RulesetHandle

    def rule(kind, cond):
        return {"all": [{"m": {"$and": [{"kind": kind}, cond]}}]}
    rs = RulesetHandle("chain-kept", {"a": rule("request", {"x": 1}), "b": rule("next", {"y": 1}),
                                      "c": rule("next", {"y": 2})})
    calls = []

    def then(y):
        def chain(fired):
            calls.append(y)
            return [{"kind": "next", "id": "n", "y": y}] if "a" in fired else []
        return chain
    one, two = then(1), then(2)
    try:
        assert rs.evaluate([{"kind": "request", "x": 1}], one) == ["a", "b"]
        assert rs.evaluate([{"kind": "request", "x": 1}], one) == ["a", "b"]
        assert rs.evaluate([{"kind": "request", "x": 2}], one) == []
        assert calls == [1, 1]            # once per names fired
        assert rs.evaluate([{"kind": "request", "x": 1}], two) == ["a", "c"]
        assert calls == [1, 1, 2]
        # every evaluation now ends its session: the first still has the kept JSON, then each
        # new session asks ``then`` again
        monkeypatch.setattr(backend, "RECYCLE_AFTER", 1)
        for _ in range(3):
            assert rs.evaluate([{"kind": "request", "x": 1}], two) == ["a", "c"]
        assert calls == [1, 1, 2, 2, 2] and rs.session_facts() == []
    finally:
        rs.close()


def test_a_fact_a_plan_works_out_once_depends_on_the_drug_and_modality_alone(engine, corpus):
    # Step.keyed: the plan gives every request the value it found for the first; on every
    # request of the corpus that value is what request_facts derives for it, and what it
    # derives for a request naming only the drug or modality
    rb = engine.rulebook
    steps = rb.derivation_plan.steps
    keyed = {n for n, s in steps.items() if s.keyed}
    assert "drug_class" in keyed and "sedating" in keyed
    assert not steps["morphine_equivalent_total"].keyed          # a registered derivation reads the case
    assert not steps["supply_days"].keyed                       # reads the quantity
    assert steps["opioid_wean_indicated"].guard_keyed           # only_if: 'opioid' in drug.classes
    probe_case = load_case_text("id: probe\nrequests: [{item: probe}]\n")
    seen = 0
    for case in corpus:
        for i in range(len(case.requests)):
            req = DerivedRequest.of(derive_request(case, i, rb.drugs)[0])
            probe = DerivedRequest.of({"item": "probe", **{k: v for k, v in (("drug", req.drug),
                                                                            ("modality", req.modality)) if v}})
            full, alone = request_facts(case, req, rb), request_facts(probe_case, probe, rb)
            for step in rb.derivation_plan.for_request(req.drug, req.modality):
                if step.keyed:
                    keys = [k for _, k in rb.derivation_plan.flags[step.name]] if step.is_list else [step.name]
                    assert [full.get(k, _ABSENT) for k in keys] == [alone.get(k, _ABSENT) for k in keys]
                    seen += 1
    assert seen > 600


def test_expressions_keep_three_valued_logic(engine):
    # the closures compiled from declared expressions: and/or/not/if over True, False and None
    # (not documented), arithmetic and comparisons with a constant or a None operand
    import itertools

    from mtus_engine.evaluation.derivations import Compiler, Ctx, request_fields
    comp = Compiler(engine.rulebook.facts, request_fields())

    def run(text, **facts):
        fn, _ = comp.compile(text)
        return fn(Ctx(None, None, engine.rulebook, None, facts))

    def kleene_or(a, b):
        return True if True in (a, b) else (None if None in (a, b) else False)

    def kleene_and(a, b):
        return False if False in (a, b) else (None if None in (a, b) else True)
    for a, b in itertools.product((True, False, None), repeat=2):
        facts = {k: v for k, v in (("red_flags", a), ("full_thickness_cuff_tear", b)) if v is not None}
        assert run("red_flags or full_thickness_cuff_tear", **facts) is kleene_or(a, b)
        assert run("red_flags and full_thickness_cuff_tear", **facts) is kleene_and(a, b)
        assert run("not red_flags", **facts) is (None if a is None else not a)
        assert run("1 if red_flags else 2", **facts) == (None if a is None else (1 if a else 2))
    for age, want in ((70, True), (65, False), (None, None)):
        facts = {"age": age} if age is not None else {}
        assert run("age > 65", **facts) is want
        assert run("65 < age", **facts) is want
        assert run("age + 1", **facts) == (None if age is None else age + 1)
        assert run("age / 0", **facts) is None
        assert run("age * 2 - 1", **facts) == (None if age is None else age * 2 - 1)
