import json

import pytest

from mtus_engine.evaluation.case import case_to_data, derive, load_case, load_case_text, parse_item
from mtus_engine.errors import InputError

EXAMPLE = """\
id: example-chronic-cyclobenzaprine
patient: {age: 52, sex: male}
injury_date: 2013-01-30
request_date: 2014-06-20
diagnoses: [neck pain, low back pain, muscle spasm]
findings:
  acute_exacerbation: false
medications:
  - {name: cyclobenzaprine, since: 2014-03-01}
  - {name: tramadol}
requests:
  - item: Cyclobenzaprine 7.5mg #60 refills x 3
    functional_improvement: false
"""


def test_issue_example_keeps_its_quantity_despite_yaml_comment_syntax(engine):
    case = load_case_text(EXAMPLE)
    assert case.requests[0].item == "Cyclobenzaprine 7.5mg #60 refills x 3"
    full, prov = derive(case, engine.rulebook.drugs)
    req = full.requests[0]
    assert (req.drug, req.strength, req.quantity, req.refills) == ("cyclobenzaprine", "7.5 mg", 60, 3)
    assert req.prior_use_weeks == 15 and prov[0]["prior_use_weeks"] == "medications.since"


@pytest.mark.parametrize("item,expected", [
    ("Flexeril 10 mg Qty 60", {"drug": "cyclobenzaprine", "strength": "10 mg", "quantity": 60}),
    ("Soma #60", {"drug": "carisoprodol", "quantity": 60}),
    ("Norflex 100 mg #20", {"drug": "orphenadrine", "strength": "100 mg", "quantity": 20}),
    ("Ultracet 37.5/325 mg x60 3 refills",
     {"drug": "tramadol/acetaminophen", "strength": "37.5/325 mg", "quantity": 60, "refills": 3}),
    ("One prescription for Flexeril", {"drug": "cyclobenzaprine"}),
    ("Acupuncture 2x6", {"modality": "acupuncture", "sessions": 12}),
    ("12 chiropractic manipulation treatments for the cervical, lumbar and thoracic spine",
     {"modality": "chiropractic", "sessions": 12, "body_region": ["cervical", "thoracic", "lumbar"]}),
    ("Additional acupuncture 12 sessions", {"modality": "acupuncture", "sessions": 12, "prior_treatment": True}),
    ("Unknown acupuncture sessions", {"modality": "acupuncture"}),
])
def test_item_notation(engine, item, expected):
    assert parse_item(item, engine.rulebook.drugs) == expected


def test_stated_fields_win_over_item_text(engine):
    case = load_case_text('{"id": "x", "requests": [{"item": "Flexeril #60", "quantity": 20}]}')
    full, prov = derive(case, engine.rulebook.drugs)
    assert full.requests[0].quantity == 20 and prov[0]["quantity"] == "case"


def test_json_and_yaml_round_trip(tmp_path):
    case = load_case_text(EXAMPLE)
    data = case_to_data(case)
    as_json = tmp_path / "c.json"
    as_json.write_text(json.dumps(data))
    assert load_case(as_json) == case


@pytest.mark.parametrize("text,needle", [
    ("", "empty"),
    ("id: [unclosed", "invalid YAML"),
    ('{"id": "x", "requests": [', "invalid JSON"),
    ("\x00\x01binary", "binary"),
    ("- a\n- b\n", "top level is a list"),
    ("id: x\nrequests: []\n", "no requests"),
    ("id: x\nrequests:\n  - item: Soma\n    quantity: sixty\n", "bad.yaml:4: requests[0].quantity: invalid value"),
    ("id: x\nrequests:\n  - item: Soma\n    quantity: -5\n", "greater than or equal to 0"),
    ("id: x\nrequests:\n  - item: Soma\n    quantity: 9999999\n", "less than or equal to"),
    ("id: x\ncolour: blue\nrequests:\n  - item: Soma\n", "bad.yaml:2: colour: unknown field"),
    ("id: x\ninjury_date: 2015-01-01\nrequest_date: 2014-01-01\nrequests:\n  - item: Soma\n",
     "bad.yaml:2: injury_date: 2015-01-01 is after request_date 2014-01-01"),
    ("requests:\n  - item: Soma\n", "id"),
])
def test_bad_case_input_names_file_and_field(text, needle):
    with pytest.raises(InputError) as exc:
        load_case_text(text, "bad.yaml")
    assert exc.value.message.startswith("bad.yaml")
    assert needle in exc.value.message


def test_missing_file_and_size_limit(tmp_path):
    with pytest.raises(InputError, match="file not found"):
        load_case(tmp_path / "nope.yaml")
    big = tmp_path / "big.yaml"
    big.write_text("id: x\n" + "# pad\n" * 100)
    with pytest.raises(InputError, match="over the 100-byte limit"):
        load_case(big, max_bytes=100)


def test_yaml_is_loaded_safely():
    with pytest.raises(InputError):
        load_case_text("!!python/object/apply:os.system ['true']\n", "evil.yaml")


# ---- request items as the real IMR letters write them (benchmarks/items_vs_gold.py measures
# the parser on every gold request; these pin each notation class with items of their own)

def _parsed(engine, item):
    return parse_item(item, engine.rulebook.drugs)


@pytest.mark.parametrize("item,sessions", [
    # a count, in digits or words, with or without an echo in parentheses
    ("Eight (8) physical therapy sessions", 8),
    ("Twelve (12) chiropractic sessions", 12),
    ("Six acupuncture visits", 6),
    ("Physical therapy, 6 visits", 6),
    ("Acupuncture for two sessions", 2),
    ("Chiropractic care for the low back; six sessions", 6),
    ("Acupuncture therapy sessions for the neck #6", 6),
    # counts for several regions add up
    ("two physical therapy sessions for the neck and eight physical therapy sessions for the wrist", 10),
    # visits a week times weeks; a range counts its upper end
    ("Physical therapy 3 visits per week for 2 weeks", 6),
    ("Physical therapy three times a week over two weeks", 6),
    ("Acupuncture two times a week times three weeks", 6),
    ("Physical therapy twice a week for six weeks", 12),
    ("Physical therapy 2x/week x 6 weeks", 12),
    ("Physical therapy 1 to 2 times per week for 4 weeks", 8),
    ("Physical therapy 2-3 times a week for 6 weeks", 18),
    ("Physical therapy for 6 weeks at 2 times a week", 12),
    # frequency by number
    ("Physical therapy 2x4", 8),
    ("Aquatic therapy 2 x 6 for the lumbar spine", 12),
    ("Spinal manipulation 1 times 8", 8),
    ("Additional physical therapy two times four visits (8)", 8),
    ("Acupuncture x 6", 6),
    ("Follow up office visit times 2", 2),
    # a stated total wins over the frequency it restates
    ("Physical therapy 2 times a week for 6 weeks (12 sessions)", 12),
    ("Four sessions of physical therapy two times a week times 2 weeks", 4),
    ("Twelve physical therapy sessions, three times weekly", 12),
    # visits already done are not asked for
    ("Physical therapy 6 sessions (previously completed 12 sessions)", 6),
])
def test_session_notations(engine, item, sessions):
    assert _parsed(engine, item).get("sessions") == sessions


@pytest.mark.parametrize("item,modality", [
    ("Occupational therapy for six sessions", "physical_therapy"),
    ("PT/OT 12 sessions left hand", "physical_therapy"),
    ("Hand therapy 6 visits", "physical_therapy"),
    ("Chirophysio therapy two times a week for four weeks", "chiropractic"),
    ("Spinal manipulation therapy 2 times a week for 4 weeks", "chiropractic"),
    ("Electrical muscle stimulation 2 times a week for 4 weeks", "tens"),
    ("Retrospective E-stim", "tens"),
    ("Twelve acupuncture visits with capsaicin patch", "acupuncture"),
    ("Pulsed ultrasound 2 times a week for 4 weeks", "ultrasound_therapeutic"),
    ("Infrared therapy 2 times a week", "thermography"),
    ("Biofeedback 6 sessions", "biofeedback"),
    ("Low level laser therapy x 8", "laser"),
    ("Functional capacity evaluation", "fce"),
    ("Work hardening 10 sessions", "work_conditioning"),
    ("H-wave unit 30-day trial", "h_wave"),
    ("IF unit rental", "interferential"),
    ("Interferential stimulator purchase", "interferential"),
    ("NMES unit", "nmes"),
    ("TENS/NMES combination unit", "nmes"),
    ("Spinal cord stimulator trial", "spinal_cord_stimulator"),
    ("Percutaneous epidural spinal cord stimulator trial", "spinal_cord_stimulator"),
    ("Psychological evaluation prior to spinal cord stimulator trial", "psych"),
    ("Consultation for spinal cord stimulator", "consultation"),
    ("Botox injection 100 units", "botulinum_toxin"),
    ("Outpatient detoxification program", "detoxification"),
    ("Inpatient detoxification", "detoxification"),
    ("Inpatient rehabilitation 7-10 days", "other"),
])
def test_therapy_modalities(engine, item, modality):
    assert _parsed(engine, item).get("modality") == modality


@pytest.mark.parametrize("item,expected", [
    ("MRI of the lumbar spine", {"modality": "mri", "body_region": ["lumbar"]}),
    ("MRI L-spine without contrast", {"modality": "mri", "body_region": ["lumbar"]}),
    ("Right shoulder MR arthrogram", {"modality": "mri", "body_region": ["shoulder"]}),
    ("Magnetic resonance imaging (MRI) of the right knee", {"modality": "mri", "body_region": ["knee"]}),
    ("C-spine CT scan", {"modality": "ct", "body_region": ["cervical"]}),
    ("CT scan of the head", {"modality": "ct"}),
    ("X-rays of the right shoulder", {"modality": "xray", "body_region": ["shoulder"]}),
    ("Xray of the pelvis", {"modality": "xray", "body_region": ["hip"]}),
    ("One (1) x-ray of the thoracic spine", {"modality": "xray", "quantity": 1, "body_region": ["thoracic"]}),
    ("MRI of the cervical spine without contrast, #1", {"modality": "mri", "quantity": 1, "body_region": ["cervical"]}),
    ("Three phase bone scan of the left foot", {"modality": "bone_scan", "body_region": ["foot"]}),
    # electrodiagnostics of the limbs name no spine region
    ("EMG/NCV of the bilateral upper extremities", {"modality": "emg_ncs"}),
    ("EMG (electromyography)/NCV (nerve conduction velocity) of the bilateral lower extremities",
     {"modality": "emg_ncs"}),
    ("NCS/EMG RUE", {"modality": "emg_ncs"}),
    ("Electrodiagnostic studies of the left upper extremity", {"modality": "emg_ncs"}),
    ("NCV bilateral lower extremities QTY: 2", {"modality": "emg_ncs", "quantity": 2}),
    ("EMG/NCS of the bilateral hands", {"modality": "emg_ncs", "body_region": ["hand"]}),
    ("Diagnostic ultrasound of the right shoulder", {"modality": "ultrasound_diagnostic", "body_region": ["shoulder"]}),
])
def test_imaging_and_electrodiagnostics(engine, item, expected):
    assert _parsed(engine, item) == expected


@pytest.mark.parametrize("item,modality", [
    ("Follow-up visit", "office_visit"),
    ("Office visit in 4 weeks", "office_visit"),
    ("Re-evaluation with the treating physician", "office_visit"),
    # a chiropractic re-exam is an office visit, unless it is for a flare-up (manual therapy's own)
    ("Re-exam with chiropractor", "office_visit"),
    ("Re-exam with chiropractor for the lumbar spine flare-up", "chiropractic"),
    ("Physical therapy evaluation, cervical spine", "office_visit"),
    ("Initial exam", "office_visit"),
    ("Consult with pain management", "consultation"),
    ("Referral to a spine specialist", "consultation"),
    ("Evaluation with an orthopedic surgeon", "surgical_consultation"),
    ("Spine surgery evaluation for the lumbar", "surgical_consultation"),
    ("Neurosurgeon evaluation for the low back", "surgical_consultation"),
    ("Consult with hip replacement specialist to evaluate for a total hip arthroplasty", "surgical_consultation"),
    ("TOC to ortho spine surgeon eval and treatment", "surgical_consultation"),
    ("Referral to orthopedic surgeon for the right knee", "surgical_consultation"),
    ("Ortho consult", "surgical_consultation"),
    ("Pre-operative medical clearance", "preop_clearance"),
    ("Pre-op Clearance", "preop_clearance"),
    ("Pre-op H&P with internist", "preop_clearance"),
    ("Pre-operative CBC", "lab_test"),
    ("Medication management consultation", "consultation"),
    ("Physical therapy evaluation after knee surgery", "office_visit"),
    ("Functional capacity evaluation (FCE)", "fce"),
    ("Functional capacity evaluation", "fce"),
    ("Comprehensive psychological testing", "psych"),
    ("Cognitive behavioral therapy 6 sessions", "psych"),
    ("Partial hospitalization day treatment", "psych"),
])
def test_visits_and_consultations(engine, item, modality):
    assert _parsed(engine, item).get("modality") == modality


@pytest.mark.parametrize("item,expected", [
    ("Wrist braces #2", {"modality": "brace", "quantity": 2, "body_region": ["wrist"]}),
    ("Elbow braces #2", {"modality": "brace", "quantity": 2, "body_region": ["elbow"]}),
    ("Right knee brace", {"modality": "brace", "body_region": ["knee"]}),
    ("Thumb spica splint for the left hand", {"modality": "brace", "body_region": ["hand"]}),
    ("Purchase of a hinged knee brace", {"modality": "brace", "purchase": True, "body_region": ["knee"]}),
    ("Back brace", {"modality": "lumbar_support", "body_region": ["lumbar"]}),
])
def test_braces(engine, item, expected):
    assert _parsed(engine, item) == expected


@pytest.mark.parametrize("item,modality", [
    ("Right shoulder arthroscopy with subacromial decompression and rotator cuff repair", "surgery"),
    ("Left knee arthroscopy with partial meniscectomy", "surgery"),
    ("Right carpal tunnel release", "surgery"),
    ("L4-5 posterior fusion", "surgery"),
    ("Neuroplasty, lumbar spine", "surgery"),
    ("Total knee arthroplasty", "surgery"),
    ("Bilateral L4-5 facet injections", "injection_facet"),
    ("Lumbar medial branch block at L3-4", "injection_facet"),
    ("Radiofrequency ablation L4-5", "injection_facet"),
    ("Right knee intra-articular injection", "injection_joint"),
    ("Cortisone injection to the right shoulder", "injection_joint"),
    ("Platelet-rich plasma injection to the right knee", "injection_joint"),
    ("Synvisc injection series, left knee", "injection_joint"),
    ("Right L5-S1 epidural steroid injection", "epidural_steroid_injection"),
    ("Trigger points impedance imaging (TPII)", "other"),
    ("Injection of neurolytic substance, lumbar spine", "other"),
])
def test_procedures_and_injections(engine, item, modality):
    assert _parsed(engine, item).get("modality") == modality


@pytest.mark.parametrize("item", [
    "Steroid knee injection with lidocaine",
    "Retrospective injection 5cc of lidocaine hcl 1percent and 1cc of dexamethasone 120mg to the right knee",
    "Right hip injection with Kenalog 40mg and lidocaine 1%",
])
def test_a_joint_injection_naming_its_drugs_is_no_drug_request(engine, item):
    parsed = _parsed(engine, item)
    assert parsed["modality"] == "injection_joint" and "drug" not in parsed


@pytest.mark.parametrize("item,expected", [
    ("TENS unit", {"modality": "tens"}),
    ("TENS unit, daily trial, cervical spine, #30",
     {"modality": "tens", "quantity": 30, "purchase": False, "body_region": ["cervical"]}),
    ("Interferential unit purchase", {"modality": "interferential", "purchase": True}),
    ("H-wave unit 30-day trial", {"modality": "h_wave", "purchase": False, "rental_days": 30}),
    ("Home H-wave device, 3 month rental", {"modality": "h_wave", "purchase": False, "rental_days": 90}),
    ("IF unit rental for one month", {"modality": "interferential", "purchase": False, "rental_days": 30}),
    ("Lumbar support", {"modality": "lumbar_support", "body_region": ["lumbar"]}),
    ("Back brace", {"modality": "lumbar_support", "body_region": ["lumbar"]}),
    ("Wrist braces #2", {"modality": "brace", "quantity": 2, "body_region": ["wrist"]}),
    ("Right wrist splint", {"modality": "brace", "body_region": ["wrist"]}),
    ("Cervical pillow", {"modality": "dme", "body_region": ["cervical"]}),
    ("Single point cane", {"modality": "dme"}),
    ("Front wheeled walker", {"modality": "dme"}),
    ("Cold therapy unit 7 day rental", {"modality": "hot_cold", "purchase": False}),
    ("Associated surgical service: cold therapy unit", {"modality": "hot_cold"}),
    ("Hot/cold therapy wrap", {"modality": "hot_cold"}),
    ("Purchase of a bedside commode", {"modality": "dme", "purchase": True}),
])
def test_devices(engine, item, expected):
    assert _parsed(engine, item) == expected


@pytest.mark.parametrize("item,modality", [
    ("Pre-operative PT/PTT", "lab_test"),      # a clotting test, not physical therapy
    ("Pre-op labs: CBC", "lab_test"),
    ("BMP", "lab_test"),
    ("Pre-op urinalysis", "lab_test"),
    ("Urine drug testing", "urine_drug_test"),
    ("Urine toxicology screen", "urine_drug_test"),
    ("Pre-op chest x-ray", "xray"),
    ("Electrocardiogram", "other"),
    ("Gym membership", "other"),
    ("Transportation to and from medical appointments", "other"),
])
def test_tests_and_other_items(engine, item, modality):
    assert _parsed(engine, item).get("modality") == modality


def test_a_test_counted_times_n_is_a_quantity_not_visits(engine):
    assert _parsed(engine, "Electrocardiogram times 3") == {"modality": "other", "quantity": 3}


@pytest.mark.parametrize("item,expected", [
    ("Diclofenac/misoprostol 75-0.2mg #60 with 2 refills",
     {"drug": "diclofenac", "strength": "75-0.2 mg", "quantity": 60, "refills": 2}),
    ("Lidocaine 5% patch #1", {"drug": "lidocaine patch", "strength": "5%", "quantity": 1}),
    ("Two refills of Ibuprofen 600mg #90", {"drug": "ibuprofen", "strength": "600 mg", "quantity": 90, "refills": 2}),
    ("Pantoprazole 40mg #60 with one refill", {"drug": "pantoprazole", "strength": "40 mg", "quantity": 60,
                                               "refills": 1}),
    ("Oxycodone HCL ER 20mg #60 day supply: 30",
     {"drug": "oxycodone", "strength": "20 mg", "quantity": 60, "units_per_day": 2.0}),
    ("Norco 10/325mg #90 for post-op pain after knee arthroscopy",
     {"drug": "hydrocodone/acetaminophen", "strength": "10/325 mg", "quantity": 90}),
    # compounded topicals named by their ingredients, and blends the vocabulary files as compounds
    ("Flurbiprofen 20%/Lidocaine 5% cream", {"drug": "compounded topical", "ingredients": ["flurbiprofen", "lidocaine"]}),
    ("Dextromethorphan 5%/Amitriptyline 5%/Lidocaine/Capsaicin 0.025%, 120grams #1",
     {"drug": "compounded topical", "ingredients": ["dextromethorphan", "amitriptyline", "lidocaine", "capsaicin"],
      "quantity": 1}),
    ("LidoPro 4%-27.5%-0.0325% 121gm #1", {"drug": "compounded topical",
                                            "ingredients": ["lidocaine", "methyl_salicylate", "capsaicin", "menthol"],
                                            "quantity": 1}),
    ("Lidocaine ointment 5% #1", {"drug": "compounded topical", "ingredients": ["lidocaine"], "quantity": 1}),
    # an oral drug in percent is its topical form; in mg it stays oral; a topical product of its own stays itself
    ("Diclofenac sodium 3% 300mg/g #1", {"drug": "compounded topical", "ingredients": ["diclofenac"], "quantity": 1}),
    ("Diclofenac sodium 75mg #60", {"drug": "diclofenac", "strength": "75 mg", "quantity": 60}),
    ("Flector 1.3% patch #30", {"drug": "diclofenac epolamine patch", "strength": "1.3%", "quantity": 30}),
    # a drug the vocabulary does not name still has its strength and quantity
    ("Zyxoprofen 20mg #30", {"strength": "20 mg", "quantity": 30}),
])
def test_drug_notations(engine, item, expected):
    assert _parsed(engine, item) == expected


@pytest.mark.parametrize("item,expected", [
    # partially authorized items arrive as the disputed remainder
    ("Norco 10/325mg #35", {"drug": "hydrocodone/acetaminophen", "strength": "10/325 mg", "quantity": 35}),
    ("Two physical therapy sessions for the lumbar",
     {"modality": "physical_therapy", "sessions": 2, "body_region": ["lumbar"]}),
    ("Continue physical therapy 3 times a week for 2 weeks",
     {"modality": "physical_therapy", "sessions": 6, "prior_treatment": True}),
])
def test_disputed_remainders(engine, item, expected):
    assert _parsed(engine, item) == expected


@pytest.mark.parametrize("item,regions", [
    ("Physical therapy for the C-spine and L-spine 2x6", ["cervical", "lumbar"]),
    ("Chiropractic 8 visits for the neck and low back", ["cervical", "lumbar"]),
    ("Cervical ESI C6-7", ["cervical"]),
    ("Left L5-S1 epidural steroid injection", ["lumbar"]),
    ("Thoracic facet injection T7-8", ["thoracic"]),
    ("MRI of the fingers of the right hand", ["hand"]),
    ("Physical therapy 2x4 for the right hip and foot", ["hip", "foot"]),
    ("MRI of the left lower extremity", None),
])
def test_item_regions(engine, item, regions):
    assert _parsed(engine, item).get("body_region") == regions


def test_home_health_days_a_week_and_personal_care(engine):
    parsed = _parsed(engine, "Home aide 6 hours per day, 5 times a week for 4 weeks to assist with mobility and ADLs")
    assert (parsed["modality"], parsed["hours_per_week"], parsed["homemaker_only"]) == ("home_health", 30, True)
    assert _parsed(engine, "Daily RN for 4 weeks for wound care")["homemaker_only"] is False


def test_compound_ingredient_order_does_not_depend_on_hashing(engine):
    # a vocabulary blend's ingredients come in its name's order, run after run
    assert _parsed(engine, "Terocin lotion #1")["ingredients"] == [
        "lidocaine", "methyl_salicylate", "capsaicin", "menthol"]


# ---- every problem of a bad case, each with its file, line and field

SEVERAL_PROBLEMS = """\
id: several
request_date: 2014-13-45
findings:
  acute_exacerbaton: true
  muscle_spasm: maybe
  first_line_tried: [nsiad]
requests:
  - item: Soma
    quantity: sixty
    modality: acupunture
"""


def test_a_case_with_several_problems_reports_every_one_in_line_order():
    with pytest.raises(InputError) as exc:
        load_case_text(SEVERAL_PROBLEMS, "bad.yaml")
    lines = exc.value.message.splitlines()
    assert [p.line for p in exc.value.problems] == [2, 4, 5, 6, 9, 10]
    assert lines[0] == ("bad.yaml:2: request_date: invalid date '2014-13-45' "
                        "(expected a real date, YYYY-MM-DD: month value is outside expected range of 1-12)")
    assert lines[1].startswith("bad.yaml:4: findings.acute_exacerbaton: unknown field")
    assert lines[1].endswith("did you mean 'acute_exacerbation'?)")
    assert lines[2].startswith("bad.yaml:5: findings.muscle_spasm: invalid value 'maybe' (expected input should be a valid boolean")
    assert lines[3].startswith("bad.yaml:6: findings.first_line_tried[0]: invalid value 'nsiad'")
    assert lines[3].endswith("did you mean 'nsaid'?)")
    assert lines[4].startswith("bad.yaml:9: requests[0].quantity: invalid value 'sixty'")
    assert lines[5].endswith("did you mean 'acupuncture'?)")
    assert str(exc.value) == exc.value.message


def test_a_misspelt_section_is_named_with_the_section_it_resembles():
    with pytest.raises(InputError) as exc:
        load_case_text("id: x\nfindngs:\n  acute_exacerbation: true\nrequests:\n  - item: Soma\n", "bad.yaml")
    assert exc.value.message == ("bad.yaml:2: findngs: unknown field (expected a case field documented in "
                                 "docs/case-fields.md; did you mean 'findings'?)")
    assert len(exc.value.problems) == 1


def test_json_problems_have_no_lines_but_are_all_reported():
    data = {"id": "x", "patient": {"age": 200}, "findings": {"spasm": True},
            "requests": [{"item": "Soma", "refills": -1}, {"item": ""}]}
    with pytest.raises(InputError) as exc:
        load_case_text(json.dumps(data), "bad.json")
    lines = exc.value.message.splitlines()
    assert len(lines) == 4 and all(line.startswith("bad.json: ") for line in lines)
    assert {line.split(": ")[1] for line in lines} == {"patient.age", "findings.spasm", "requests[0].refills",
                                                       "requests[1].item"}


def test_dates_after_the_request_date_are_all_reported_with_their_lines():
    text = ("id: x\ninjury_date: 2015-01-01\nrequest_date: 2014-01-01\nmedications:\n  - name: Soma\n"
            "    since: 2014-02-01\nrequests:\n  - item: Soma\n")
    with pytest.raises(InputError) as exc:
        load_case_text(text, "bad.yaml")
    assert exc.value.message.splitlines() == [
        "bad.yaml:2: injury_date: 2015-01-01 is after request_date 2014-01-01",
        "bad.yaml:6: medications[0].since: 2014-02-01 is after request_date 2014-01-01",
    ]


def test_derived_values_out_of_bounds_are_reported_for_every_request(engine):
    from mtus_engine.evaluation.case import case_from_data, derived_error
    case = case_from_data({"id": "x", "requests": [{"item": "Cyclobenzaprine 7.5mg #999999"}, {"item": "Soma"},
                                                    {"item": "Norco 10/325 #60 refills x 99"}]})
    err = derived_error(case, engine.rulebook.drugs, "c.yaml")
    assert [p.location for p in err.problems] == ["requests[0].quantity", "requests[2].refills"]
    assert "at most 10000" in err.message.splitlines()[0] and "at most 24" in err.message.splitlines()[1]


def test_the_cli_exits_2_with_every_problem(tmp_path):
    from click.testing import CliRunner

    from mtus_engine.interfaces.cli import main
    bad = tmp_path / "bad.yaml"
    bad.write_text(SEVERAL_PROBLEMS)
    res = CliRunner().invoke(main, ["evaluate", str(bad)])
    assert res.exit_code == 2
    assert len([line for line in res.output.splitlines() if f"{bad}:" in line]) == 6


# ---- the case model is built from the fact vocabulary

def test_case_fields_are_the_declared_facts():
    from mtus_engine.evaluation.case import CASE_FACTS, Findings, Patient, Request
    from mtus_engine.rules.rulebook import load_rulebook
    facts = load_rulebook().facts
    for model, source, own in ((Findings, "findings", set()), (Request, "request", {"item", "strength"}),
                               (Patient, "patient", {"sex"})):
        declared = {name for name, spec in facts.items() if spec.source == source}
        assert set(model.model_fields) == declared | own
        for name in declared:
            assert model.model_fields[name].description == facts[name].meaning
    assert {spec.source for spec in CASE_FACTS.values()} == {"findings", "request", "patient"}


def test_a_fact_added_to_the_vocabulary_is_a_case_field(tmp_path, root, rules_copy):
    import subprocess
    import sys
    rules = rules_copy
    (rules / "vocabulary" / "facts-zz-test.yaml").write_text(
        "facts:\n"
        "  night_pain:\n    type: boolean\n    source: findings\n    meaning: Pain at night.\n"
        "  brace_side:\n    type: string\n    values: [left, right]\n    source: request\n    meaning: Side.\n"
        "  night_pain_score:\n    type: integer\n    minimum: 0\n    maximum: 10\n    source: findings\n"
        "    meaning: Score.\n"
        "  night_pain_known:\n    type: boolean\n    source: derived\n    meaning: Derived.\n")
    script = """
import json
from mtus_engine.evaluation.case import Findings, Request, case_from_data
from mtus_engine.errors import InputError
case = case_from_data({"id": "x", "findings": {"night_pain": True, "night_pain_score": 3},
                       "requests": [{"item": "Knee brace", "brace_side": "left"}]})
try:
    case_from_data({"id": "x", "findings": {"night_pain_score": 11, "night_pain_known": True},
                    "requests": [{"item": "Knee brace", "brace_side": "lfet"}]}, "c.json")
except InputError as exc:
    problems = exc.message.splitlines()
print(json.dumps({"night_pain": case.findings.night_pain, "side": case.requests[0].brace_side,
                  "meaning": Findings.model_fields["night_pain"].description, "problems": problems}))
"""
    env = {**__import__("os").environ, "MTUS_RULES": str(rules)}
    out = json.loads(subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True,
                                    check=True).stdout)
    assert out["night_pain"] is True and out["side"] == "left" and out["meaning"] == "Pain at night."
    problems = out["problems"]
    assert any(p.startswith("c.json: findings.night_pain_score: invalid value 11") for p in problems)
    assert any(p.startswith("c.json: findings.night_pain_known: unknown field") for p in problems)
    assert any(p.startswith("c.json: requests[0].brace_side: invalid value 'lfet'") and "did you mean 'left'?" in p
               for p in problems)


def test_the_documented_facts_are_the_vocabulary(root):
    from mtus_engine.evaluation.case import fact_fields_markdown
    doc = (root / "docs" / "case-fields.md").read_text()
    section = doc.split("do not edit -->\n", 1)[1].split("<!-- end of generated facts -->", 1)[0]
    assert section == fact_fields_markdown(), "regenerate: PYTHONPATH=src python scripts/case_fields.py"


def test_derived_request_has_exactly_the_request_fields():
    """DerivedRequest is built from the Request model (itself from the vocabulary): no field is
    listed twice by hand, and a typo raises instead of reading as undocumented."""
    import pytest as _pytest

    from mtus_engine.evaluation.case import Request
    from mtus_engine.evaluation.derived import DerivedRequest
    assert set(DerivedRequest.__dataclass_fields__) - {"given"} == set(Request.model_fields)
    req = DerivedRequest.of({"item": "Norco 10/325 #60", "drug": "hydrocodone/acetaminophen"})
    assert dict(req.items()) == {"item": "Norco 10/325 #60", "drug": "hydrocodone/acetaminophen"}
    assert req.quantity is None
    with _pytest.raises(AttributeError):
        req.quantiy  # noqa: B018 - the typo must raise
    with _pytest.raises(TypeError):
        DerivedRequest.of({"item": "x", "quantiy": 3})


# ---- region-bound findings: where a deficit was found or a procedure is planned

REGIONED = ("id: x\nfindings:\n  neurologic_deficit: true\n  neurologic_deficit_regions: {regions}\n"
            "requests:\n  - item: MRI of the right shoulder\n")


def test_finding_regions_take_the_body_region_vocabulary():
    from mtus_engine.evaluation.case import BODY_REGIONS, fact_values
    case = load_case_text(REGIONED.format(regions="[lumbar, foot]"), "c.yaml")
    assert case.findings.neurologic_deficit_regions == ["lumbar", "foot"]
    # one vocabulary: the regions a finding is placed in are the requests' body regions
    for name in ("neurologic_deficit_regions", "invasive_procedure_regions", "surgery_considered_regions",
                 "red_flags_regions"):
        assert fact_values(name) == BODY_REGIONS


@pytest.mark.parametrize("regions", ["[lumber]", "[low back]", "[[lumbar]]"])
def test_a_bad_finding_region_names_the_field(regions):
    with pytest.raises(InputError) as exc:
        load_case_text(REGIONED.format(regions=regions), "bad.yaml")
    assert exc.value.message.startswith("bad.yaml:4: findings.neurologic_deficit_regions")


def test_a_bad_red_flag_region_names_the_field():
    text = REGIONED.format(regions="[lumbar]").replace("neurologic_deficit_regions: [lumbar]",
                                                       "red_flags_regions: [spine]")
    with pytest.raises(InputError) as exc:
        load_case_text(text, "bad.yaml")
    assert exc.value.message.startswith("bad.yaml:4: findings.red_flags_regions")


def test_the_cli_exits_2_on_a_bad_finding_region(tmp_path):
    from click.testing import CliRunner

    from mtus_engine.interfaces.cli import main
    bad = tmp_path / "bad.yaml"
    bad.write_text(REGIONED.format(regions="[lumbar]").replace("neurologic_deficit_regions: [lumbar]",
                                                                 "invasive_procedure_regions: [spine]"))
    res = CliRunner().invoke(main, ["evaluate", str(bad)])
    assert res.exit_code == 2
    assert f"{bad}:4: findings.invasive_procedure_regions" in res.stderr and "Traceback" not in res.output
