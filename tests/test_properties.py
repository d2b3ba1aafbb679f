"""Properties the rulebook must keep whatever the facts."""

from hypothesis import HealthCheck, given, settings, strategies as st

from mtus_engine.case import Case, case_to_data, load_case_text
from mtus_engine.render import render_json

RELAXANT_ITEMS = ["Flexeril 7.5 mg", "Robaxin 750 mg", "Skelaxin 800 mg", "Zanaflex 4 mg",
                  "Norflex 100 mg", "Soma 350 mg", "Baclofen 10 mg"]
maybe_bool = st.one_of(st.none(), st.booleans())


@st.composite
def relaxant_cases(draw):
    findings = {k: v for k, v in {
        "acute_exacerbation": draw(maybe_bool), "spasticity": draw(maybe_bool),
        "liver_function_monitored": draw(maybe_bool),
        "first_line_tried": draw(st.one_of(st.none(), st.lists(st.sampled_from(["nsaid", "physical_therapy"]), unique=True))),
    }.items() if v is not None}
    req = {"item": f"{draw(st.sampled_from(RELAXANT_ITEMS))} #{draw(st.integers(1, 120))}",
           "prior_use_weeks": draw(st.integers(0, 60)),
           "refills": draw(st.integers(0, 3))}
    if (pt := draw(maybe_bool)) is not None:
        req["prior_treatment"] = pt
    meds = draw(st.lists(st.sampled_from(["tramadol", "naproxen", "gabapentin"]), unique=True, max_size=2))
    return Case.model_validate({"id": "p", "request_date": "2014-06-20", "findings": findings,
                                "patient": {"age": draw(st.integers(18, 90))},
                                "medications": [{"name": m} for m in meds], "requests": [req]})


@st.composite
def therapy_cases(draw):
    modality = draw(st.sampled_from(["Acupuncture", "Chiropractic"]))
    region = draw(st.sampled_from(["lumbar", "cervical", "knee"]))
    req = {"item": f"{modality} {draw(st.integers(1, 24))} sessions {region}",
           "prior_sessions": draw(st.integers(0, 24))}
    return Case.model_validate({"id": "t", "request_date": "2014-06-20", "requests": [req]})


SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


@SETTINGS
@given(relaxant_cases())
def test_same_case_same_output(engine, case):
    assert render_json(engine.evaluate(case)) == render_json(engine.evaluate(case))


@SETTINGS
@given(relaxant_cases(), st.integers(1, 60))
def test_more_weeks_of_relaxant_use_never_turns_denial_into_certify(engine, case, extra):
    before = engine.evaluate(case).determinations[0].decision
    longer = case.model_copy(deep=True)
    longer.requests[0].prior_use_weeks += extra
    after = engine.evaluate(longer).determinations[0].decision
    if before == "non-certify":
        assert after == "non-certify"


@SETTINGS
@given(therapy_cases())
def test_documenting_functional_improvement_never_turns_certify_into_denial(engine, case):
    without = case.model_copy(deep=True)
    without.requests[0].functional_improvement = None
    with_fi = case.model_copy(deep=True)
    with_fi.requests[0].functional_improvement = True
    if engine.evaluate(without).determinations[0].decision == "certify":
        assert engine.evaluate(with_fi).determinations[0].decision != "non-certify"


@SETTINGS
@given(st.one_of(relaxant_cases(), therapy_cases()))
def test_case_survives_yaml_and_json_round_trip(engine, case):
    import json

    import yaml
    data = case_to_data(case)
    assert load_case_text(json.dumps(data)) == case
    assert load_case_text(yaml.safe_dump(data, sort_keys=False)) == case
