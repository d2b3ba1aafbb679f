"""The breadth rule families' case handling: compounds, prescription directions, new
modalities, morphine equivalents, and items the MTUS leaves to other guidelines."""

import pytest

from mtus_engine.evaluation.case import (DIAGNOSIS_TYPES, GI_RISK_FACTORS, INGREDIENTS, MODALITIES, case_from_data,
                              derive_request, parse_item)
from mtus_engine.evaluation.engine import DerivedRequest, request_facts


@pytest.mark.parametrize("item,expected", [
    ("Compound cream: flurbiprofen 20%, cyclobenzaprine 10%, lidocaine 5%",
     {"drug": "compounded topical", "ingredients": ["flurbiprofen", "cyclobenzaprine", "lidocaine"]}),
    ("Flurbiprofen 20%/Tramadol 20% in Mediderm base 210gm",
     {"drug": "compounded topical", "ingredients": ["flurbiprofen", "tramadol"]}),
    ("Gabapentin 10% cream #1", {"drug": "compounded topical", "ingredients": ["gabapentin"], "quantity": 1}),
    ("Lidocaine 5% ointment", {"drug": "compounded topical", "ingredients": ["lidocaine"]}),
    ("Compound: menthol 10%, xyzzol 5% cream", {"drug": "compounded topical", "ingredients": ["menthol", "other"]}),
    ("Compounded cream #1", {"drug": "compounded topical", "quantity": 1}),
    # a topical product of its own stays itself
    ("Menthoderm gel 120 g", {"drug": "methyl salicylate/menthol", "strength": "120 g"}),
    ("Capsaicin 0.075% cream #1", {"drug": "capsaicin", "strength": "0.075%", "quantity": 1}),
    ("Lidoderm 5% patch #30", {"drug": "lidocaine patch", "strength": "5%", "quantity": 30}),
    # oral drugs are not compounds
    ("Gabapentin 600 mg #90", {"drug": "gabapentin", "strength": "600 mg", "quantity": 90}),
])
def test_compounds_are_one_topical_with_their_ingredients(engine, item, expected):
    assert parse_item(item, engine.rulebook.drugs) == expected


@pytest.mark.parametrize("item,per_day", [
    ("Norco 10/325 mg #120 1-2 tabs q4-6h", 12.0),
    ("Ultram 50 mg 2 tabs QID #240", 8.0),
    ("OxyContin 40 mg BID #60", 2.0),
    ("Omeprazole 20 mg daily #30", 1.0),
    ("Tramadol 50 mg one tablet 3 times a day #90", 3.0),
    ("Norco 10/325 mg #120", None),
    ("Norco 10/325 mg Qty 60 tablets", None),      # a quantity, not a dose
])
def test_units_a_day_from_directions(engine, item, per_day):
    assert parse_item(item, engine.rulebook.drugs).get("units_per_day") == per_day


@pytest.mark.parametrize("item,expected", [
    ("TENS unit purchase", {"modality": "tens", "purchase": True}),
    ("TENS unit 30-day rental", {"modality": "tens", "purchase": False}),
    ("Lumbar epidural steroid injection L4-5 under fluoroscopy",
     {"modality": "epidural_steroid_injection", "body_region": ["lumbar"], "fluoroscopy": True}),
    ("Trigger point injections x 4", {"modality": "trigger_point_injection", "sessions": 4, "injections_per_session": 4}),
    ("Urine drug screen", {"modality": "urine_drug_test"}),
    ("Functional restoration program x 10 days", {"modality": "functional_restoration", "sessions": 10}),
    ("Home health care 4 hours a day, 5 days a week for wound care",
     {"modality": "home_health", "hours_per_week": 20, "homemaker_only": False}),
    ("Homemaker services 10 hours per week", {"modality": "home_health", "hours_per_week": 10, "homemaker_only": True}),
    ("Aquatic therapy 2x4", {"modality": "aquatic_therapy", "sessions": 8}),
    ("Repeat lumbar ESI", {"modality": "epidural_steroid_injection", "body_region": ["lumbar"], "prior_treatment": True}),
    ("TPI with lidocaine 1% and bupivacaine 0.25% x 3", {"modality": "trigger_point_injection", "sessions": 3,
                                                         "injections_per_session": 3}),
])
def test_new_modalities(engine, item, expected):
    assert parse_item(item, engine.rulebook.drugs) == expected


def test_case_constants_match_the_fact_vocabulary(engine):
    facts = engine.rulebook.facts
    assert tuple(facts["ingredients"].values) == INGREDIENTS
    assert tuple(facts["gi_risk_factors"].values) == GI_RISK_FACTORS
    assert set(DIAGNOSIS_TYPES) <= set(facts["diagnosis_type"].meaning.replace(",", " ").replace("(", " ")
                                           .replace(")", " ").replace(".", " ").split())
    covered = {m for r in engine.rulebook.rules for m in r.applies_to.modalities}
    assert covered <= set(MODALITIES)


def _facts(engine, data):
    case = case_from_data(data)
    fields, _ = derive_request(case, 0, engine.rulebook.drugs)
    return request_facts(case, DerivedRequest.of(fields), engine.rulebook)


def test_morphine_equivalent_sums_every_opioid(engine):
    base = {"id": "m", "request_date": "2014-06-20", "requests": [{"item": "Norco 10/325 mg #120"}]}
    assert _facts(engine, base)["morphine_equivalent_total"] == 40          # 10 mg x 4 a day x 1
    with_oxy = {**base, "medications": [{"name": "Norco"}, {"name": "OxyContin", "dose": "40 mg BID"}]}
    assert _facts(engine, with_oxy)["morphine_equivalent_total"] == 160     # + 40 x 2 x 1.5
    both_requested = {**base, "requests": [{"item": "Norco 10/325 mg 1 tab q6h #120"},
                                           {"item": "Tramadol 50 mg QID #120"}]}
    assert _facts(engine, both_requested)["morphine_equivalent_total"] == 60  # + 50 x 4 x 0.1
    no_dose = {**base, "medications": [{"name": "methadone"}]}
    assert "morphine_equivalent_total" not in _facts(engine, no_dose)
    stated = {**no_dose, "findings": {"morphine_equivalent_dose": 90}}
    assert _facts(engine, stated)["morphine_equivalent_total"] == 90


def test_a_listed_compound_is_prior_use_of_the_compound(engine):
    data = {"id": "c", "request_date": "2014-06-20",
            "medications": [{"name": "Compound cream: ketoprofen 20%", "since": "2014-01-01"}],
            "requests": [{"item": "Compound cream: ketoprofen 20%, knee"}]}
    facts = _facts(engine, data)
    assert facts["prior_treatment"] is True and facts["prior_use_weeks"] == 24 and facts["topical_nsaid"] is True


@pytest.mark.parametrize("item,klass", [("Ambien 10 mg #30", "sleep_aid"), ("Lunesta 2 mg #30", "sleep_aid"),
                                        ("Theramine #120", "medical_food"), ("Sentra PM #60", "medical_food")])
def test_sleep_aids_and_medical_foods_stay_no_rule_naming_the_gap(engine, item, klass):
    det = engine.evaluate(case_from_data({"id": "x", "request_date": "2014-06-20",
                                          "requests": [{"item": item}]})).determinations[0]
    assert det.decision == "no-rule" and klass in det.reason and "ODG" in det.reason
