"""The 129 real 2016-2017 IMR letters against their hand-checked gold files.

Letters are parsed once per session (PDF text is cached in a temporary folder for the session
only); thresholds are the rates measured with benchmarks/extraction_vs_gold.py, slightly below.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from mtus_engine.letters.letter import letter_to_case, parse_letter, read_letter

REAL = Path(__file__).resolve().parents[1] / "cases" / "letters" / "real"
GOLDS = sorted(REAL.glob("*.gold.yaml"))


def _norm(name: str) -> str:
    return " ".join(str(name).split()).strip(" .:").lower()


@pytest.fixture(scope="session")
def corpus():
    """(case id, gold, parsed letter or the error, case) for every real letter, parsed once."""
    out = []
    for gpath in GOLDS:
        gold = yaml.safe_load(gpath.read_text())
        case_id = gpath.name[: -len(".gold.yaml")]
        try:
            parsed = parse_letter(read_letter(REAL / gold["letter"]), gold["letter"])
            case = letter_to_case(parsed, f"letter-{case_id}")
        except Exception as exc:  # noqa: BLE001 - reported by the test below
            parsed, case = exc, None
        out.append((case_id, gold, parsed, case))
    return out


def _pairs(corpus):
    for case_id, gold, parsed, _ in corpus:
        if isinstance(parsed, Exception):
            continue
        for k, gi in enumerate(gold["items"]):
            yield case_id, gi, (parsed.items[k] if k < len(parsed.items) else None)


def test_corpus_is_there():
    assert len(GOLDS) >= 129


def test_every_real_letter_extracts(corpus):
    failed = [(c, str(p)) for c, _, p, _ in corpus if isinstance(p, Exception)]
    assert not failed


def test_item_counts_match(corpus):
    wrong = [c for c, g, p, _ in corpus if not isinstance(p, Exception) and len(p.items) != len(g["items"])]
    assert not wrong


def test_outcomes_agree(corpus):
    pairs = list(_pairs(corpus))
    ok = sum(1 for _, gi, it in pairs if it is not None and it.outcome == gi["outcome"])
    assert ok / len(pairs) >= 0.99


def test_item_names_agree(corpus):
    pairs = list(_pairs(corpus))
    ok = sum(1 for _, gi, it in pairs if it is not None and _norm(it.item) == _norm(gi["item"]))
    assert ok / len(pairs) >= 0.98  # measured 292/292


def test_citation_parts_agree(corpus):
    pairs = list(_pairs(corpus))
    ok = sum(1 for _, gi, it in pairs if it is not None
             and [c.part for c in it.citations] == [c["part"] for c in gi.get("citations") or []])
    assert ok / len(pairs) >= 0.98  # measured 291/292


def test_mtus_flag_agrees(corpus):
    pairs = list(_pairs(corpus))
    ok = sum(1 for _, gi, it in pairs if it is not None and it.mtus == gi.get("mtus"))
    assert ok / len(pairs) >= 0.98  # measured 292/292


def test_request_dates_agree(corpus):
    rows = [(g["case"].get("request_date"), c.get("request_date")) for _, g, _, c in corpus if c]
    ok = sum(1 for gd, cd in rows if gd and str(gd) == cd)
    assert ok / len(rows) >= 0.93  # measured 123/129


def test_sections_with_commas_stay_whole(corpus):
    sections = {s for _, _, it in _pairs(corpus) if it is not None for c in it.citations for s in c.sections}
    for name in ("NSAIDs, GI symptoms & cardiovascular risk",
                 "TENS, chronic pain (transcutaneous electrical nerve stimulation)",
                 "Knee, Forearm, Wrist, & Hand"):
        assert name in sections
    assert "GI symptoms & cardiovascular risk" not in sections and "& Hand" not in sections


def test_ragged_letter_is_read_with_a_warning(corpus):
    parsed = next(p for c, _, p, _ in corpus if c == "CM17-0009887")
    assert not isinstance(parsed, Exception)
    assert parsed.warnings and "full stop" in parsed.warnings[0]
    assert [i.outcome for i in parsed.items] == ["upheld", "upheld"]


def test_partly_authorized_item_is_the_disputed_remainder(corpus):
    parsed = next(p for c, _, p, _ in corpus if c == "CM16-0233904")
    item = parsed.items[0]
    assert item.item == "Baclofen 100mg #3"
    assert item.original_request == "Baclofen 100mg #30"
    assert item.authorized == "Baclofen 100mg #27"
    case = next(c for cid, _, _, c in corpus if cid == "CM16-0233904")
    assert case["requests"][0]["quantity"] == 3


def _pr(pairs):
    """(precision, recall) of extracted values against gold values (None = not given)."""
    given = sum(1 for g, c in pairs if c is not None)
    gold = sum(1 for g, c in pairs if g is not None)
    tp = sum(1 for g, c in pairs if g is not None and g == c)
    return (tp / given if given else 1.0), (tp / gold if gold else 1.0)


# measured with benchmarks/extraction_vs_gold.py (precision, recall); floors a few points below
FINDING_FLOORS = {
    "neurologic_deficit": (0.80, 0.93),     # measured 83.8 / 96.6
    "red_flags": (0.82, 0.90),              # 85.7 / 94.7
    "surgery_considered": (0.80, 0.88),     # 85.0 / 94.4
    "conservative_care_failed": (0.75, 0.85),  # 78.6 / 89.2
    "analgesia_documented": (0.95, 0.70),   # 100 / 75 (gold 4)
    "invasive_procedure_planned": (0.95, 0.95),  # 100 / 100 (gold 1)
    "surgical_lesion_imaging": (0.95, 0.95),     # 100 / 100 (gold 1)
    "return_to_work": (0.92, 0.95),         # 96.0 / 100
    "muscle_spasm": (0.95, 0.95),           # 100 / 100
    "radiculopathy_exam": (0.88, 0.81),     # 92.0 / 85.2
    # where: exact lists; a deficit one sentence places nowhere stays case-wide (left out)
    "neurologic_deficit_regions": (0.75, 0.62),  # 78.9 / 65.2
    "invasive_procedure_regions": (0.95, 0.95),  # 100 / 100 (gold 1)
    "red_flags_regions": (0.85, 0.95),  # 90.9 / 100 (gold 10; a skull and a femur fracture have no region)
    "surgery_considered_regions": (0.95, 0.30),  # 100 / 33.3 (gold 3; the hernia repair of a fourth has no region)
}


@pytest.mark.parametrize("key", sorted(FINDING_FLOORS))
def test_findings_agree(corpus, key):
    pairs = [((g["case"].get("findings") or {}).get(key), (c.get("findings") or {}).get(key))
             for _, g, _, c in corpus if c]
    precision, recall = _pr(pairs)
    floor_p, floor_r = FINDING_FLOORS[key]
    assert precision >= floor_p and recall >= floor_r, (precision, recall)


def test_first_line_tried_agrees(corpus):
    tp = given = gold = 0
    for _, g, _, c in corpus:
        if not c:
            continue
        gs = set((g["case"].get("findings") or {}).get("first_line_tried") or [])
        cs = set((c.get("findings") or {}).get("first_line_tried") or [])
        tp, given, gold = tp + len(gs & cs), given + len(cs), gold + len(gs)
    assert tp / given >= 0.92 and tp / gold >= 0.93  # measured 95.6 / 96.2


def test_first_line_tried_excludes_planned_and_authorized(corpus):
    case = next(c for cid, _, _, c in corpus if cid == "CM17-0021656")  # "the plan is for physical therapy"
    assert "physical_therapy" not in ((case.get("findings") or {}).get("first_line_tried") or [])
    case = next(c for cid, _, _, c in corpus if cid == "CM16-0231706")  # 6 visits authorized by the CA
    assert not (case.get("findings") or {}).get("first_line_tried")


def test_diagnoses_agree(corpus):
    tp = given = gold = 0
    for _, g, _, c in corpus:
        if not c:
            continue
        gs = {_norm(d) for d in g["case"].get("diagnoses") or []}
        cs = {_norm(d) for d in c.get("diagnoses") or []}
        tp, given, gold = tp + len(gs & cs), given + len(cs), gold + len(gs)
    assert tp / given >= 0.86 and tp / gold >= 0.79  # measured 90.1 / 83.3


def test_diagnoses_keep_internal_commas(corpus):
    case = next(c for cid, _, _, c in corpus if cid == "CM16-0235869")
    assert case["diagnoses"] == ["other specific injury of the muscle, fascia, tendon of the right hip"]


@pytest.mark.parametrize("field, floors", [
    # measured 77.5 / 81.6 (was 83.3 / 65.8): most "false" ones the letter states and the gold omits
    # (CM16-0235869 manual therapy, CM17-0015957 Motrin, CM17-0019120 "with some benefit")
    ("functional_improvement", (0.75, 0.78)),
    ("prior_sessions", (0.75, 0.74)),           # 78.1 / 78.1
    ("prior_treatment", (0.53, 0.50)),          # 57.1 / 54.3 (was 49.4 / 48.1)
    ("authorized_sessions", (0.95, 0.95)),      # 100 / 100 (gold 17)
    ("body_region", (0.83, 0.75)),              # 86.7 / 78.8 (was 94.5 / 73.3)
    ("sessions", (0.95, 0.81)),                 # 100 / 85.3
])
def test_request_fields_agree(corpus, field, floors):
    pairs = []
    for _, g, _, c in corpus:
        if not c:
            continue
        for k, gr in enumerate(g["case"].get("requests") or []):
            cr = c["requests"][k] if k < len(c["requests"]) else {}
            pairs.append((gr.get(field), cr.get(field)))
    precision, recall = _pr(pairs)
    assert precision >= floors[0] and recall >= floors[1], (precision, recall)
