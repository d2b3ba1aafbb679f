import json

import pytest
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings, strategies as st

from mtus_engine.evaluation.case import Case, load_case_text
from mtus_engine.interfaces.cli import main
from mtus_engine.errors import InputError
from mtus_engine.interfaces.render import render_json
from mtus_engine.evaluation.whatif import apply_changes, flip, grid, parse_grid, what_if

CHRONIC = """\
id: chronic
request_date: 2015-01-07
findings: {acute_exacerbation: false}
medications: [{name: Flexeril, since: 2014-09-05}, {name: naproxen}]
requests:
  - item: "Flexeril 7.5 mg #60 refills x 2"
  - item: "Soma 350 mg #60"
  - item: Additional acupuncture 6 sessions
    functional_improvement: false
"""


@pytest.fixture
def case():
    return load_case_text(CHRONIC)


def test_cyclobenzaprine_certifiable_with_flare_no_prior_use_short_supply(engine, case):
    res = what_if(case, engine, [("findings.acute_exacerbation", "true"), ("requests[0].prior_use_weeks", "0"),
                                 ("requests[0].quantity", "20"), ("requests[0].refills", "0")])
    ch = res.changes[0]
    assert (ch.from_, ch.to) == ("non-certify", "certify")
    changed = {c["criterion"]: (c["from"], c["to"]) for c in ch.criteria}
    assert changed["acute-exacerbation"] == ("failed", "met")
    assert changed["within-three-weeks"] == ("failed", "met")
    assert any(line.startswith("+") for line in ch.rationale_diff)


def test_flip_finds_the_guideline_flips(engine, case):
    answers = flip(case, engine)
    cbp, soma, acu = answers
    assert cbp.suggestions and all(s.verified for s in cbp.suggestions)
    paths = {p for p, _ in cbp.suggestions[0].changes}
    assert "findings.acute_exacerbation" in paths and "requests[0].prior_use_weeks" in paths
    assert soma.suggestions == [] and "not recommended" in soma.impossible
    assert acu.suggestions[0].changes == [("requests[2].functional_improvement", True)]
    assert "functional improvement" in acu.suggestions[0].documentation[0]


def test_flip_of_a_certified_request_finds_what_would_deny_it(engine):
    ok = load_case_text("id: ok\nrequest_date: 2014-06-20\nfindings: {acute_exacerbation: true}\n"
                        "medications: [{name: naproxen}]\nrequests:\n  - item: 'Flexeril 7.5 mg #20'\n")
    ans = flip(ok, engine)[0]
    assert ans.decision == "certify"
    assert any(s.changes == [("findings.acute_exacerbation", False)] for s in ans.suggestions)


@pytest.mark.parametrize("sets,needle", [
    ([("requests[0].quantiy", "2")], "did you mean requests[0].quantity"),
    ([("findings.acute_exacerbaton", "true")], "did you mean findings.acute_exacerbation"),
    ([("requests[7].quantity", "2")], "index 7 is past the last of 3 requests"),
    ([("requests[0].quantity", "sixty")], "valid integer"),
    ([("findings.acute_exacerbation", "perhaps")], "valid boolean"),
])
def test_bad_what_if_input(case, sets, needle):
    with pytest.raises(InputError) as exc:
        apply_changes(case, sets)
    assert needle in exc.value.message


def test_grid_and_plot(engine, case, tmp_path):
    axes = [parse_grid("requests[0].quantity=10..90:10", case), parse_grid("requests[0].prior_use_weeks=0..12:4", case)]
    g = grid(case, engine, axes, 0, [("findings.acute_exacerbation", "true"), ("requests[0].refills", "0")])
    assert len(g.decisions) == 9 and len(g.decisions[0]) == 4
    assert g.decisions[0][0] == "certify" and g.decisions[-1][0] == "modify" and g.decisions[0][-1] == "non-certify"
    png = tmp_path / "g.png"
    res = CliRunner().invoke(main, ["whatif", "-", "--grid", "requests[0].quantity=10,60", "--plot", str(png)],
                             input=CHRONIC)
    assert res.exit_code == 0, res.output
    assert png.read_bytes()[:4] == b"\x89PNG"


def test_cli_whatif_json_and_errors(case):
    r = CliRunner().invoke(main, ["whatif", "-", "--set", "findings.acute_exacerbation=true", "--format", "json"],
                           input=CHRONIC)
    data = json.loads(r.output)
    assert set(data) == {"baseline", "variant", "changes"}
    assert data["changes"][0]["request"] == 0
    bad = CliRunner().invoke(main, ["whatif", "-", "--set", "requests[0].quantiy=3"], input=CHRONIC)
    assert bad.exit_code == 2 and "did you mean" in bad.stderr


PATHS = ["requests[0].quantity", "requests[0].refills", "requests[0].prior_use_weeks",
         "findings.acute_exacerbation", "requests[2].functional_improvement", "requests[2].sessions"]


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.sampled_from(PATHS))
def test_setting_a_field_to_its_current_value_changes_nothing(engine, path):
    case = load_case_text(CHRONIC)
    from mtus_engine.evaluation.case import derive
    full, _ = derive(case, engine.rulebook.drugs)
    from mtus_engine.evaluation.whatif import _current
    current = _current(full, path)
    if current is None:
        return
    base = engine.evaluate(full)
    same = engine.evaluate(apply_changes(full, [(path, current)]))
    assert render_json(base) == render_json(same)


@st.composite
def relaxant_cases(draw):
    item = draw(st.sampled_from(["Flexeril 7.5 mg", "Robaxin 750 mg", "Zanaflex 4 mg", "Baclofen 10 mg"]))
    findings = {}
    if (v := draw(st.one_of(st.none(), st.booleans()))) is not None:
        findings["acute_exacerbation"] = v
    req = {"item": f"{item} #{draw(st.integers(5, 150))}", "refills": draw(st.integers(0, 3))}
    if (w := draw(st.one_of(st.none(), st.integers(0, 40)))) is not None:
        req["prior_use_weeks"] = w
    therapy = {"item": draw(st.sampled_from(["Acupuncture", "Chiropractic"])) + f" {draw(st.integers(1, 20))} sessions lumbar"}
    if (fi := draw(st.one_of(st.none(), st.booleans()))) is not None:
        therapy["functional_improvement"] = fi
    if (ps := draw(st.one_of(st.none(), st.integers(0, 20)))) is not None:
        therapy["prior_sessions"] = ps
    return Case.model_validate({"id": "h", "request_date": "2014-06-20", "findings": findings,
                                "medications": [{"name": "naproxen"}], "requests": [req, therapy]})


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(relaxant_cases())
def test_every_suggested_flip_really_flips(engine, case):
    for ans in flip(case, engine):
        for s in ans.suggestions:
            variant = apply_changes(case, [(p, v) for p, v in s.changes if v is not None],
                                    [p for p, v in s.changes if v is None])
            got = engine.evaluate(variant).determinations[ans.request].decision
            if s.to == "certify":
                assert got == "certify"
            else:
                assert got in ("non-certify", "modify")


def test_a_derived_ceiling_is_inverted_through_its_declaration(engine):
    """supply_days is declared as a formula with solve: {vary: quantity}; what-if proposes the
    largest quantity whose supply meets the rule's ceiling, and one more would not."""
    from mtus_engine.evaluation.case import derive_request
    from mtus_engine.rules.compiler import test_holds
    from mtus_engine.evaluation.derivations import DerivedRequest, derive_value
    case = load_case_text("id: q\nrequest_date: 2014-06-20\nfindings: {acute_exacerbation: true}\n"
                          "medications: [{name: naproxen}]\nrequests:\n  - item: 'Flexeril 7.5 mg #90 refills x 2'\n")
    ans = flip(case, engine)[0]
    quantity = next(v for s in ans.suggestions for p, v in s.changes if p == "requests[0].quantity")
    assert any(("requests[0].refills", 0) in s.changes for s in ans.suggestions)
    rb = engine.rulebook
    ceiling = next(c.test for r in rb.rules if "cyclobenzaprine" in r.applies_to.drugs
                   for c in r.criteria if c.fact == "supply_days")
    fields = dict(derive_request(case, 0, rb.drugs)[0], refills=0)

    def supply(q):
        return derive_value(case, DerivedRequest.of({**fields, "quantity": q}), rb, "supply_days")
    assert test_holds(ceiling, supply(quantity)) and not test_holds(ceiling, supply(quantity + 1))


def test_sessions_are_inverted_through_total_sessions(engine):
    case = load_case_text("id: s\nrequest_date: 2014-06-20\nrequests:\n  - item: Physical therapy x 12\n"
                          "    prior_sessions: 4\n    functional_improvement: true\n")
    ans = flip(case, engine)[0]
    assert ans.decision != "certify"
    sessions = [v for s in ans.suggestions for p, v in s.changes if p == "requests[0].sessions"]
    assert sessions and all(s.verified for s in ans.suggestions)
    # the largest count that keeps the total (4 completed + the new visits) within the ceiling
    assert what_if(case, engine, [("requests[0].sessions", str(sessions[0]))]).changes[0].to == "certify"
    assert what_if(case, engine, [("requests[0].sessions", str(sessions[0] + 1))]).changes == [] \
        or what_if(case, engine, [("requests[0].sessions", str(sessions[0] + 1))]).changes[0].to != "certify"


@pytest.mark.parametrize("findings, change", [
    # nothing documented: document the planned procedure (the criterion's own words)
    ("{conservative_care_failed: false}", ("findings.invasive_procedure_planned", True)),
    # planned for the low back: place it at the shoulder as well
    ("{conservative_care_failed: false, invasive_procedure_planned: true, invasive_procedure_regions: [lumbar]}",
     ("findings.invasive_procedure_regions", ["lumbar", "shoulder"])),
])
def test_flip_of_a_region_bound_finding_documents_it_for_the_body_part(engine, findings, change):
    case = load_case_text(f"id: r\nrequest_date: 2016-12-15\nfindings: {findings}\n"
                          "requests:\n  - item: MRI of the right shoulder\n")
    ans = flip(case, engine)[0]
    assert ans.decision == "non-certify"
    assert any(s.changes == [change] and s.verified for s in ans.suggestions), ans.suggestions
    # and a certification on a finding placed at the shoulder is denied by its opposite
    ok = apply_changes(case, [("findings.invasive_procedure_planned", True),
                              ("findings.invasive_procedure_regions", ["shoulder"])])
    assert any(s.changes == [("findings.invasive_procedure_planned", False)] for s in flip(ok, engine)[0].suggestions)


def test_flip_offers_each_alternative_that_alone_certifies(engine):
    # the neck's alternatives guard each other: a deficit placed in the low back and no planned
    # procedure both block a cervical MRI, and either one fixed alone certifies it; minimising
    # the two fixed together kept only one of them
    case = load_case_text("id: r\nrequest_date: 2016-11-10\n"
                          "findings: {neurologic_deficit: true, neurologic_deficit_regions: [lumbar], "
                          "conservative_care_failed: true, red_flags: false, invasive_procedure_planned: false}\n"
                          "requests:\n  - {item: MRI of the cervical spine, body_region: [cervical]}\n")
    ans = flip(case, engine)[0]
    assert ans.decision == "non-certify"
    found = [s.changes for s in ans.suggestions if s.verified]
    assert [("findings.invasive_procedure_planned", True)] in found, found
    assert [("findings.neurologic_deficit_regions", ["cervical", "lumbar"])] in found, found
    placed = next(s for s in ans.suggestions if s.changes[0][0] == "findings.neurologic_deficit_regions")
    assert placed.documentation == ["document that the neurologic deficit concerns the body part requested (cervical)"]


def test_flip_goes_through_a_combination_of_findings_member_by_member(engine):
    # an EMG's indication is any_of [a deficit for the limb's spine, a suspected entrapment]: a
    # lumbar deficit does not indicate a study of the arms; placing it at the neck would (through
    # finding_in_region's inverse); the entrapment, read from the diagnoses, has no field to set
    case = load_case_text("id: r\nrequest_date: 2016-10-01\n"
                          "findings: {neurologic_deficit: true, neurologic_deficit_regions: [lumbar], "
                          "conservative_care_failed: true}\n"
                          "requests:\n  - item: EMG/NCV bilateral upper extremities\n")
    ans = flip(case, engine)[0]
    assert ans.decision == "non-certify" and ans.impossible is None, ans.impossible
    found = [s.changes for s in ans.suggestions if s.verified]
    assert [("findings.neurologic_deficit_regions", ["cervical", "lumbar"])] in found, found
    # certified on a cervical deficit: documenting no deficit denies it (every member of the
    # any_of not already false: the entrapment is not suspected, so the deficit alone)
    ok = apply_changes(case, [("findings.neurologic_deficit_regions", ["cervical"])])
    denials = [s for s in flip(ok, engine)[0].suggestions if s.to == "non-certify" and s.verified]
    assert any(s.changes == [("findings.neurologic_deficit", False)] for s in denials), denials
    assert any(s.documentation == ["records showing no neurologic deficit"] for s in denials), denials
