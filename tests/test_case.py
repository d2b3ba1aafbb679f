import json

import pytest

from mtus_engine.case import case_to_data, derive, load_case, load_case_text, parse_item
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
    ("id: x\nrequests:\n  - item: Soma\n    quantity: sixty\n", "requests[0].quantity (line 4)"),
    ("id: x\nrequests:\n  - item: Soma\n    quantity: -5\n", "greater than or equal to 0"),
    ("id: x\nrequests:\n  - item: Soma\n    quantity: 9999999\n", "less than or equal to"),
    ("id: x\ncolour: blue\nrequests:\n  - item: Soma\n", "colour (line 2): unknown field"),
    ("id: x\ninjury_date: 2015-01-01\nrequest_date: 2014-01-01\nrequests:\n  - item: Soma\n",
     "injury_date 2015-01-01 is after request_date"),
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
