"""The drugs added to the vocabulary for the CPMTG's drug entries: the item parser and the letter
reader name them (drug, strength, quantity), and their morphine equivalents count as the
conversion tables say (a patch's rate, the opioid figure of a combined strength, buprenorphine
left out)."""

from __future__ import annotations

import pytest

from mtus_engine.evaluation.case import load_case_text, parse_item
from mtus_engine.letters.letter import letter_to_case, parse_letter

from test_letter_extract import SUMMARY, make_letter


@pytest.mark.parametrize("item, expected", [
    ("Butrans 10mcg/hr patch #4", {"drug": "buprenorphine patch", "strength": "10 mcg", "quantity": 4}),
    ("Buprenorphine 5 mcg/hr transdermal #4", {"drug": "buprenorphine patch", "strength": "5 mcg", "quantity": 4}),
    ("Belbuca 150 mcg #60", {"drug": "buprenorphine", "strength": "150 mcg", "quantity": 60}),
    # a sublingual or buccal film is the drug's form, not a radiograph
    ("Suboxone 8/2 mg sublingual film #30", {"drug": "buprenorphine/naloxone", "strength": "8/2 mg", "quantity": 30}),
    ("Belbuca 150 mcg buccal film #60", {"drug": "buprenorphine", "strength": "150 mcg", "quantity": 60}),
    ("Lumbar spine films", {"modality": "xray", "body_region": ["lumbar"]}),
    ("Duragesic 25 mcg/hr #10", {"drug": "fentanyl patch", "strength": "25 mcg", "quantity": 10}),
    ("Fentanyl 50mcg/hr #15", {"drug": "fentanyl patch", "strength": "50 mcg", "quantity": 15}),
    ("Fentora 100 mcg #28", {"drug": "fentanyl transmucosal", "strength": "100 mcg", "quantity": 28}),
    ("Fentanyl citrate 200 mcg lozenge #30", {"drug": "fentanyl transmucosal", "strength": "200 mcg", "quantity": 30}),
    ("Fentanyl 25 mcg #15", {"drug": "fentanyl patch", "strength": "25 mcg", "quantity": 15}),
    ("Toradol 60 mg IM injection", {"drug": "ketorolac", "strength": "60 mg"}),
    ("Ketorolac 10 mg #20", {"drug": "ketorolac", "strength": "10 mg", "quantity": 20}),
    ("Fioricet #30", {"drug": "butalbital/acetaminophen/caffeine", "quantity": 30}),
    ("Fiorinal 50/325/40 mg #60", {"drug": "butalbital/aspirin/caffeine", "strength": "50/325/40 mg", "quantity": 60}),
    # the brand's own number is no quantity
    ("Tylenol #3 #60", {"drug": "acetaminophen/codeine", "quantity": 60}),
    ("Tylenol #3", {"drug": "acetaminophen/codeine"}),
    ("Tylenol with Codeine #4 300/60 mg 1 tab q6h #120",
     {"drug": "acetaminophen/codeine", "strength": "300/60 mg", "quantity": 120, "units_per_day": 4.0}),
    ("Ultram ER 100 mg #30", {"drug": "tramadol ER", "strength": "100 mg", "quantity": 30}),
    ("Ultram 50 mg #60", {"drug": "tramadol", "strength": "50 mg", "quantity": 60}),
    ("Hysingla ER 20 mg #30", {"drug": "hydrocodone ER", "strength": "20 mg", "quantity": 30}),
    ("Zohydro ER 20 mg #60", {"drug": "hydrocodone ER 12-hour", "strength": "20 mg", "quantity": 60}),
    ("Vicoprofen 7.5/200 mg #60", {"drug": "hydrocodone/ibuprofen", "strength": "7.5/200 mg", "quantity": 60}),
    ("Hydrocodone 10/325 mg #60", {"drug": "hydrocodone/acetaminophen", "strength": "10/325 mg", "quantity": 60}),
    ("MS Contin 30 mg #60", {"drug": "morphine", "strength": "30 mg", "quantity": 60}),
    ("Prozac 20 mg #30", {"drug": "fluoxetine", "strength": "20 mg", "quantity": 30}),
    ("Lexapro 10 mg #30", {"drug": "escitalopram", "strength": "10 mg", "quantity": 30}),
    ("Tegretol 200 mg #60", {"drug": "carbamazepine", "strength": "200 mg", "quantity": 60}),
    ("Keppra 500 mg #60", {"drug": "levetiracetam", "strength": "500 mg", "quantity": 60}),
    ("Depakote 250 mg #60", {"drug": "divalproex", "strength": "250 mg", "quantity": 60}),
    ("Daypro 600 mg #30", {"drug": "oxaprozin", "strength": "600 mg", "quantity": 30}),
    ("Nalfon 400 mg #90", {"drug": "fenoprofen", "strength": "400 mg", "quantity": 90}),
    ("Arthrotec 75 mg #60", {"drug": "diclofenac", "strength": "75 mg", "quantity": 60}),
    ("Dantrium 25 mg #60", {"drug": "dantrolene", "strength": "25 mg", "quantity": 60}),
    # topicals judged by their ingredients: Pennsaid a topical NSAID, Medrox a salicylate/capsaicin blend
    ("Pennsaid 2% topical solution #1", {"drug": "compounded topical", "ingredients": ["diclofenac"], "quantity": 1}),
    ("Medrox patch #30", {"drug": "compounded topical", "ingredients": ["methyl_salicylate", "menthol", "capsaicin"],
                          "quantity": 30}),
])
def test_new_drug_names_in_items(engine, item, expected):
    assert parse_item(item, engine.rulebook.drugs) == expected


def _letter_case(summary: str, item: str, rationale: str) -> dict:
    return letter_to_case(parse_letter(make_letter(summary, [(item, "Upheld", rationale)])), "t")


@pytest.mark.parametrize("item, fields", [
    ("Butrans 10mcg/hr patch #4", {"drug": "buprenorphine patch", "strength": "10 mcg", "quantity": 4}),
    ("Duragesic 25 mcg/hr #10", {"drug": "fentanyl patch", "strength": "25 mcg", "quantity": 10}),
    ("Toradol 60 mg IM injection", {"drug": "ketorolac", "strength": "60 mg"}),
    ("Fioricet #30", {"drug": "butalbital/acetaminophen/caffeine", "quantity": 30}),
])
def test_letter_reader_reads_new_drug_items(item, fields):
    req = _letter_case(SUMMARY, item, "The request is not medically necessary.")["requests"][0]
    for key, value in fields.items():
        assert req.get(key) == value, key


def test_letter_reader_lists_new_drugs_and_their_first_line_class():
    summary = SUMMARY.replace("and naproxen.", "and a Toradol injection. Current medications include Butrans "
                                              "and Keppra.")
    case = _letter_case(summary, "Butrans 10mcg/hr patch #4", "The patient is on Butrans.")
    names = [m["name"] for m in case["medications"]]
    assert {"ketorolac", "buprenorphine patch", "levetiracetam"} <= set(names)
    assert {"nsaid", "anticonvulsant"} <= set(case["findings"]["first_line_tried"])
    assert case["requests"][0].get("prior_treatment") is True   # Butrans is taken


def _med_total(engine, medications: str, item: str) -> int | None:
    case = load_case_text(f'{{"id": "m", "request_date": "2014-06-20", "medications": {medications}, '
                          f'"requests": [{{"item": "{item}"}}]}}')
    det = engine.evaluate(case)
    for crit in det.determinations[0].criteria:
        if crit.fact == "morphine_equivalent_total":
            return crit.value
    return None


@pytest.mark.parametrize("medications, item, total", [
    ("[]", "Duragesic 25 mcg/hr #10", 60),                              # 25 mcg/hr x 2.4
    ("[]", "Fentanyl 100 mcg/hr patch #10", 240),
    ('[{"name": "Norco", "dose": "10/325 mg"}]', "Duragesic 50 mcg/hr #10", 160),   # 120 + 40
    ("[]", "Tylenol #3 300/30 mg #120", 18),                            # codeine 30 mg x 4 x 0.15
    ('[{"name": "Butrans", "dose": "20 mcg/hr"}]', "Norco 10/325 mg #120", 40),      # buprenorphine adds nothing
    ("[]", "Ultram ER 300 mg #30", 30),                                 # once a day x 0.1
    ("[]", "Vicoprofen 7.5/200 mg #60", 30),                            # hydrocodone 7.5 x 4
])
def test_morphine_equivalents_of_new_opioids(engine, medications, item, total):
    assert _med_total(engine, medications, item) == total


def test_buprenorphine_is_not_judged_by_the_dosing_ceiling(engine):
    case = load_case_text('{"id": "b", "request_date": "2014-06-20", '
                          '"requests": [{"item": "Butrans 10 mcg/hr #4"}]}')
    rules = set(engine.evaluate(case).determinations[0].rules_fired)
    assert "buprenorphine.chronic-pain" in rules and "opioids.dosing-ceiling" not in rules


def test_a_section_cited_with_pages_is_not_cited_again_without(engine):
    """Ketorolac's own entry (the NSAIDs' specific drug list, p. 72) and the NSAID class, which
    also cites that list without pages: the list is cited once, with its page."""
    case = load_case_text('{"id": "k", "request_date": "2014-03-20", "findings": {"post_operative": true}, '
                          '"requests": [{"item": "Ketorolac 10 mg #20", "prior_use_weeks": 0}]}')
    citations = engine.evaluate(case).determinations[0].citations
    listed = [(c.section, c.pages) for c in citations if c.section.startswith("NSAIDs, specific drug list")]
    assert len(listed) == 1 and listed[0][1] in ("72", ["72"], ("72",))
    assert any(c.section.startswith("NSAIDs (non-steroidal") for c in citations)


@pytest.mark.parametrize("sentence, expected", [
    ("She is undergoing treatment for major depressive disorder and anxiety.", True),
    ("The diagnoses include lumbar strain and depression.", True),
    ("There is no documentation of depression.", False),
    ("There was pain with shoulder depression and elevation.", None),   # a motion, not a mood
    ("She reports pain of 7/10.", None),
])
def test_letter_reader_reads_depression(sentence, expected):
    case = _letter_case(SUMMARY + " " + sentence, "Prozac 20 mg #30", "The request is not medically necessary.")
    assert (case.get("findings") or {}).get("depression") is expected
