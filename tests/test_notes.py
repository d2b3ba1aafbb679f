"""Progress notes (cases/notes/*.txt) read into cases: the facts each note's *.expected.yaml says
must be read, the line each was read from, and the engine's determination on the case read; and
detect_document on every letter, note and case in the repository."""

from __future__ import annotations

import datetime as dt
import json
import re
import time
from pathlib import Path

import pytest
import yaml

from mtus_engine.evaluation.case import case_from_data
from mtus_engine.errors import InputError
from mtus_engine.letters.letter import letter_to_case, parse_letter, read_letter
from mtus_engine.letters.notes import case_from_text, detect_document, extract_note, read_progress_note

ROOT = Path(__file__).resolve().parents[1]
NOTES = sorted((ROOT / "cases" / "notes").glob("*.txt"))
LETTERS = sorted((ROOT / "cases" / "letters" / "real").glob("*.pdf"))
SEED_LETTERS = sorted((ROOT / "cases" / "letters").glob("*.txt"))


def _expected(note: Path) -> dict:
    return yaml.safe_load(note.with_suffix(".expected.yaml").read_text())


def _plain(value):
    """YAML dates as the case's ISO strings."""
    if isinstance(value, dt.date):
        return value.isoformat()
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


def _contains(got, want, path: str) -> list[str]:
    """Where ``got`` differs from ``want``: mappings by the keys ``want`` names, lists of mappings
    entry by entry (same length), anything else equal."""
    if isinstance(want, dict):
        if not isinstance(got, dict):
            return [f"{path}: {got!r} is not a mapping"]
        out = []
        for k, v in want.items():
            if k not in got:
                out.append(f"{path}.{k}: not read (expected {v!r})")
            else:
                out += _contains(got[k], v, f"{path}.{k}")
        return out
    if isinstance(want, list) and want and isinstance(want[0], dict):
        if not isinstance(got, list) or len(got) != len(want):
            return [f"{path}: {got!r} has not the {len(want)} entries expected"]
        return [d for i, (g, w) in enumerate(zip(got, want)) for d in _contains(g, w, f"{path}[{i}]")]
    return [] if got == want else [f"{path}: read {got!r}, expected {want!r}"]


def _get(data, path: str):
    """A dotted path with indexes ('requests[0].prior_sessions'); KeyError if absent."""
    for part in re.findall(r"[^.\[\]]+|\[\d+\]", path):
        data = data[int(part[1:-1])] if part.startswith("[") else data[part]
    return data


def test_there_are_notes_each_with_expectations():
    assert len(NOTES) >= 6
    for note in NOTES:
        assert note.with_suffix(".expected.yaml").exists(), note.name


@pytest.mark.parametrize("note", NOTES, ids=lambda p: p.stem)
def test_note_facts(note):
    want = _expected(note)
    parsed = read_progress_note(note.read_text(), str(note), note.stem)
    case = parsed.case
    assert not _contains(case, _plain(want["case"]), "case")
    for path in want.get("absent", []):
        with pytest.raises((KeyError, IndexError)):
            _get(case, path)
    for path, values in want.get("excludes", {}).items():
        assert not set(values) & set(_get(case, path)), path
    for path, lines in want.get("provenance", {}).items():
        assert parsed.provenance.get(path) == lines, (path, parsed.provenance.get(path))
    for text in want.get("warnings", []):
        assert any(text in w for w in parsed.warnings), (text, parsed.warnings)
    if not want.get("warnings"):
        assert parsed.warnings == []
    # every line named is a line of the note, and every path names a fact of the case
    n_lines = len(note.read_text().splitlines())
    for path, lines in parsed.provenance.items():
        _get(case, path)
        assert all(1 <= n <= n_lines for n in lines), path


@pytest.mark.parametrize("note", NOTES, ids=lambda p: p.stem)
def test_note_determinations(note, engine):
    want = _expected(note)["determinations"]
    kind, case = case_from_text(note.read_text(), str(note), stem=note.stem)
    assert kind == "note"
    result = engine.evaluate(case)
    assert len(result.determinations) == len(want)
    for det, exp in zip(result.determinations, want):
        assert det.decision == exp["decision"], (det.request, det.decision, det.rationale)
        deciding = {f"{c.rule}/{c.criterion}": c.state for c in det.criteria if c.decisive}
        assert deciding.get(exp["criterion"]) == exp["state"], (det.request, deciding)


def test_provenance_points_at_the_fact():
    """The line a fact is attributed to says it."""
    note = ROOT / "cases" / "notes" / "08-mri-lumbar-no-red-flags.txt"
    lines = note.read_text().splitlines()
    prov = read_progress_note(note.read_text()).provenance
    assert "red flags" in lines[prov["findings.red_flags"][0] - 1].lower()
    assert "MRI" in lines[prov["requests[0].modality"][0] - 1]
    assert "Injury" in lines[prov["injury_date"][0] - 1]


def test_negation_decides_red_flags():
    """The same note without "denies" documents a red flag; without any statement, none is read."""
    text = (ROOT / "cases" / "notes" / "08-mri-lumbar-no-red-flags.txt").read_text()
    silent = text.replace(" No red flags identified.", "")
    assert "red_flags" not in read_progress_note(silent).case["findings"]
    flagged = silent.replace("He denies bowel", "He reports new bowel")
    assert read_progress_note(flagged).case["findings"]["red_flags"] is True


def test_continued_drug_without_quantity_is_not_a_request():
    text = (ROOT / "cases" / "notes" / "05-pt-additional-visits.txt").read_text()
    case = read_progress_note(text).case
    assert [r.get("modality") for r in case["requests"]] == ["physical_therapy"]
    with_quantity = read_progress_note(text.replace("Continue ibuprofen.", "Continue ibuprofen 800 mg #90.")).case
    assert [r.get("drug") for r in with_quantity["requests"]] == [None, "ibuprofen"]


def test_plan_lines_that_report_are_not_requests():
    text = (ROOT / "cases" / "notes" / "09-tens-purchase.txt").read_text()
    for line in ("MRI results reviewed with the patient.", "Follow up after the MRI.", "Home exercise program.",
                 "Continue physical therapy as authorized.", "Tramadol 50 mg twice a day."):
        case = read_progress_note(text.replace("Continue home exercise program.", line)).case
        assert [r.get("modality") for r in case["requests"]] == ["tens"], line
    asked = read_progress_note(text.replace("Continue home exercise program.", "MRI of the lumbar spine.")).case
    assert [r.get("modality") for r in asked["requests"]] == ["tens", "mri"]
    more = read_progress_note(text.replace("Continue home exercise program.",
                                           "Continue physical therapy 2x4 for the low back.")).case
    assert [r.get("modality") for r in more["requests"]] == ["tens", "physical_therapy"]
    assert more["requests"][1]["sessions"] == 8


def test_planned_treatment_is_not_tried():
    text = (ROOT / "cases" / "notes" / "03-nsaid-acute-flare.txt").read_text()
    assert "home_exercise" not in read_progress_note(text).case["findings"]["first_line_tried"]
    done = text.replace("2. Home exercise program.", "2. Continue home exercise program.")
    assert "home_exercise" in read_progress_note(done).case["findings"]["first_line_tried"]


def test_allergies_name_no_medication():
    text = (ROOT / "cases" / "notes" / "03-nsaid-acute-flare.txt").read_text()
    text = text.replace("DIAGNOSIS:", "ALLERGIES: Codeine, tramadol\n\nDIAGNOSIS:")
    assert "medications" not in read_progress_note(text).case


def test_request_cues_and_bullets():
    note = """PROGRESS NOTE
Date of Service: 03/01/2017
Date of Injury: 01/05/2015
Subjective: 60-year-old woman with chronic knee pain.
Plan:
1. Request authorization for Tramadol 50 mg #60 and Lidoderm 5% patch #30
2. RFA: physical therapy 2x3 for the right knee
3. Follow up after the MRI.
4. Return to clinic in 4 weeks.
"""
    parsed = read_progress_note(note)
    reqs = parsed.case["requests"]
    assert [r.get("drug") or r.get("modality") for r in reqs] == ["tramadol", "lidocaine patch", "physical_therapy"]
    assert reqs[2]["sessions"] == 6 and reqs[2]["body_region"] == ["knee"]
    assert parsed.case["patient"] == {"age": 60, "sex": "female"}
    assert parsed.provenance["requests[1].item"] == [6] and parsed.provenance["requests[2].item"] == [7]


def test_missing_facts_are_warned_not_guessed():
    parsed = read_progress_note("Plan:\n- Request authorization for MRI of the lumbar spine\n")
    assert parsed.case["requests"][0]["modality"] == "mri"
    assert set(parsed.case) == {"id", "requests"}
    joined = " ".join(parsed.warnings)
    for what in ("request date", "age", "sex", "date of injury", "no diagnoses"):
        assert what in joined, what


def test_note_without_a_request_is_refused():
    with pytest.raises(InputError) as exc:
        read_progress_note("SUBJECTIVE: back pain.\nPLAN: Return in 4 weeks.\n", "visit.txt")
    assert "visit.txt" in str(exc.value) and "no requested item" in str(exc.value)
    with pytest.raises(InputError):
        read_progress_note("   \n", "empty.txt")


def test_extract_note_shape_is_deterministic():
    note = NOTES[0]
    a = extract_note(note.read_text(), str(note), "n1")
    b = extract_note(note.read_text(), str(note), "n1")
    assert json.dumps(a, sort_keys=False) == json.dumps(b, sort_keys=False)
    assert a["kind"] == "note" and a["case"]["id"] == "n1" and a["note"]["provenance"]
    case_from_data(a["case"])  # the case data validates as written


def test_note_reading_is_fast():
    texts = [p.read_text() for p in NOTES]
    for t in texts:
        read_progress_note(t, provenance=False)
    start = time.perf_counter()
    for t in texts:
        read_progress_note(t, provenance=False)
    per_note = (time.perf_counter() - start) / len(texts)
    assert per_note < 0.05  # a few ms each; generous for a loaded machine


# ------------------------------------------------------------------ detection

def test_real_letters_are_detected_as_letters():
    assert len(LETTERS) == 129
    kinds = {p.name: detect_document(read_letter(p)) for p in LETTERS}
    assert {k for k in kinds.values()} == {"letter"}, [n for n, k in kinds.items() if k != "letter"]


def test_seed_letters_are_letters_and_read_as_before():
    for p in SEED_LETTERS:
        text = read_letter(p)
        assert detect_document(text) == "letter", p.name
        kind, case = case_from_text(text, str(p), stem=p.stem)
        expected = case_from_data(letter_to_case(parse_letter(text, str(p)), f"letter-{p.stem}"), str(p))
        assert kind == "letter" and case == expected


def test_notes_are_detected_as_notes():
    assert {detect_document(p.read_text()) for p in NOTES} == {"note"}


def test_cases_are_detected_as_cases():
    paths = list((ROOT / "cases").glob("*.yaml"))
    assert paths
    for p in paths:
        assert detect_document(p.read_text()) == "case", p.name
        data = yaml.safe_load(p.read_text())
        assert detect_document(json.dumps(data, default=str)) == "case"
        assert detect_document(json.dumps(data, default=str, indent=2)) == "case"
    # the gold cases of the seed letters, as YAML and JSON
    for gold in sorted((ROOT / "cases" / "letters").glob("*.gold.yaml")):
        case = yaml.safe_load(gold.read_text())["case"]
        assert detect_document(yaml.safe_dump(case, sort_keys=False)) == "case", gold.name
        assert detect_document(json.dumps(case, default=str)) == "case", gold.name


def test_detect_other_kinds():
    assert detect_document('{"resourceType": "Bundle", "entry": []}') == "fhir"
    assert detect_document("hello, nothing here") == "unknown"
    with pytest.raises(InputError) as exc:
        case_from_text("hello, nothing here", "paste")
    assert "paste" in str(exc.value)
    # a note that quotes a letter's words stays a note
    quoted = (NOTES[0].read_text()
              + "\nThe prior Independent Medical Review Final Determination upheld the denial.\n")
    assert detect_document(quoted) == "note"


def test_other_layouts_of_the_same_note():
    """Headings named otherwise, CRLF line ends and a page break read as the same case."""
    note = ROOT / "cases" / "notes" / "05-pt-additional-visits.txt"
    text = note.read_text()
    base = read_progress_note(text).case
    other = (text.replace("\n\nObjective", "\f\nObjective")
                 .replace("Subjective:", "HISTORY OF PRESENT ILLNESS / SUBJECTIVE COMPLAINTS:")
                 .replace("Medications:", "Current Meds:")
                 .replace("Objective:", "PHYSICAL EXAM:")
                 .replace("Diagnoses:", "IMPRESSION:")
                 .replace("Plan:", "TREATMENT PLAN/REQUESTS:")
                 .replace("\n", "\r\n"))
    assert read_progress_note(other).case == base


# ---------------------------------------------------------------- through the CLI

def _mtus(*args: str):
    import subprocess
    import sys
    return subprocess.run([sys.executable, "-m", "mtus_engine", *args], capture_output=True, text=True, cwd=ROOT)


@pytest.mark.parametrize("note", NOTES[:3] + NOTES[-2:], ids=lambda p: p.stem)
def test_cli_evaluates_a_note_as_its_expected_determination(note):
    run = _mtus("evaluate", str(note), "--format", "json")
    assert run.returncode in (0, 1), run.stderr
    out = json.loads(run.stdout)
    assert out["case_id"] == f"note-{note.stem}"
    want = _expected(note)["determinations"]
    got = out["determinations"]
    assert [d["decision"] for d in got] == [w["decision"] for w in want]


def test_cli_extract_writes_the_note_and_its_case(tmp_path):
    note = NOTES[0]
    run = _mtus("extract", str(note), SEED_LETTERS[0].as_posix(), "-o", str(tmp_path), "--quiet")
    assert run.returncode == 0, run.stderr
    names = sorted(p.name for p in tmp_path.iterdir())
    assert f"{note.stem}.note.json" in names and f"{note.stem}.case.yaml" in names
    assert f"{SEED_LETTERS[0].stem}.letter.json" in names     # a letter beside it stays a letter
    doc = json.loads((tmp_path / f"{note.stem}.note.json").read_text())
    assert doc["case"]["requests"]


def test_cli_extract_kind_note_on_a_letter_is_one_clear_error():
    run = _mtus("extract", "--kind", "note", str(SEED_LETTERS[0]))
    assert run.returncode == 2
    assert run.stderr.startswith(f"error: {SEED_LETTERS[0]}")


def test_the_readers_vocabulary_follows_the_rules_dir_in_one_process(root, flexmax_rules, monkeypatch):
    """Read under one rulebook, then under a copy with an added brand, in one process: the second
    read uses the copy's drugs (the reader's tables are kept per rulebook, not the first's for
    good), and going back gives the first rulebook's reading again."""
    from mtus_engine.api import extract_letter
    rules, note = flexmax_rules

    monkeypatch.setenv("MTUS_RULES", str(root / "rules"))
    with pytest.raises(InputError, match="no requested item"):
        extract_letter(str(note))
    monkeypatch.setenv("MTUS_RULES", str(rules))
    requests = extract_letter(str(note))["case"]["requests"]
    assert [(r["item"].split()[0], r.get("drug")) for r in requests] == [("Flexmax", "cyclobenzaprine")]
    monkeypatch.setenv("MTUS_RULES", str(root / "rules"))
    with pytest.raises(InputError, match="no requested item"):
        extract_letter(str(note))


# ---------------------------------------------------------------- where a finding was found

_TWO_PARTS = ROOT / "cases" / "notes" / "10-mri-shoulder-and-lumbar-deficit-of-the-back.txt"


def _regions(text: str) -> list[str] | None:
    return read_progress_note(text).case.get("findings", {}).get("neurologic_deficit_regions")


def test_a_body_parts_label_places_the_findings_under_it():
    """The examination's "Lumbar spine:" label places the sentences under it that name no part;
    without it the weakness of the great toe's extensor still names the leg (the low back's), and
    a deficit the note places nowhere is case-wide."""
    text = _TWO_PARTS.read_text()
    assert _regions(text) == ["lumbar", "foot"]
    # a deficit that names no part: the label decides
    plain = text.replace("Extensor hallucis\nlongus weakness 4/5 on the right.", "Weakness 4/5 on the right.")
    assert plain != text and _regions(plain) == ["lumbar", "foot"]
    assert _regions(plain.replace("Lumbar spine: ", "")) is None      # placed nowhere: case-wide
    # the label says the shoulder: the weakness is the shoulder's, the straight-leg raise still the low back's
    moved = plain.replace("Lumbar spine: Tenderness over the lower lumbar paraspinals.", "Right shoulder:")
    assert _regions(moved) == ["lumbar", "shoulder", "foot"]
    # a part of that examination ("Sensation:", "Motor:") keeps the label; a limb's label places by the limb
    sub = plain.replace("Weakness 4/5 on the right.", "Motor: weakness 4/5 on the right.")
    assert sub != plain and _regions(sub) == ["lumbar", "foot"]
    assert _regions(sub.replace("Lumbar spine: ", "")) is None
    limb = plain.replace("Lumbar spine: ", "").replace("Weakness 4/5 on the right.",
                                                       "\nNeurological exam of the lower extremities: Weakness 4/5.")
    assert _regions(limb) == ["lumbar", "foot"]
    # a label that names no part ends the one before it: the neurologic examination is the whole body's
    neuro = plain.replace("Decreased sensation over the dorsum of the right foot. ", "").replace(
        "Weakness 4/5 on the right.", "\nNeurologic: Weakness 4/5 on the right.")
    assert _regions(neuro) is None


def test_a_label_holds_across_lines_bullets_and_headings():
    """The label on its own line, in capitals, over a bulleted list, or as an examination
    heading ("Right shoulder exam:"), reads as the same place."""
    text = (ROOT / "cases" / "notes" / "11-mri-shoulder-and-lumbar-deficit-of-the-shoulder.txt").read_text()
    assert _regions(text) == ["shoulder"]
    own_line = text.replace("Right shoulder: Tenderness", "RIGHT SHOULDER:\nTenderness")
    assert _regions(own_line) == ["shoulder"]
    bullets = text.replace("Right shoulder: Tenderness over the anterior acromion. Diminished sensation to light "
                           "touch over\nthe lateral aspect. Abduction strength 4/5 on the right.",
                           "Right shoulder:\n- Tenderness over the anterior acromion.\n"
                           "- Diminished sensation to light touch over the lateral aspect.\n"
                           "- Abduction strength 4/5 on the right.")
    assert bullets != text and _regions(bullets) == ["shoulder"]
    heading = text.replace("OBJECTIVE:\nRight shoulder: ", "RIGHT SHOULDER EXAM:\n")
    assert heading != text and _regions(heading) == ["shoulder"]
    longer = text.replace("OBJECTIVE:\nRight shoulder: ", "PHYSICAL EXAMINATION OF THE RIGHT SHOULDER:\n")
    assert longer != text and _regions(longer) == ["shoulder"]
    # the label gone, the same sentences are placed nowhere
    assert _regions(text.replace("Right shoulder: ", "")) is None


def test_placement_decides_the_other_body_parts_imaging(engine):
    """The two notes, each with the engine: a deficit of the low back is no evidence for the
    shoulder's imaging, nor the shoulder's for the low back's; case-wide, it was for both."""

    def deficit(text: str) -> dict[str, str]:
        _, case = case_from_text(text, "note")
        return {r.body_region[0]: next(c.state for c in d.criteria if c.criterion == "neurologic-deficit")
                for r, d in zip(case.requests, engine.evaluate(case).determinations)}

    back = _TWO_PARTS.read_text()
    assert deficit(back) == {"lumbar": "met", "shoulder": "failed"}
    shoulder = (ROOT / "cases" / "notes" / "11-mri-shoulder-and-lumbar-deficit-of-the-shoulder.txt").read_text()
    assert deficit(shoulder) == {"shoulder": "met", "lumbar": "failed"}
    unplaced = back.replace("Lumbar spine: ", "").replace("Extensor hallucis\nlongus weakness", "Weakness").replace(
        "Positive straight leg raise on the\nright at 45 degrees. ", "").replace(
        "Decreased sensation over the dorsum of the right foot. ", "")
    assert "neurologic_deficit_regions" not in read_progress_note(unplaced).case["findings"]
    assert deficit(unplaced) == {"lumbar": "met", "shoulder": "met"}


def test_an_emg_of_a_limb_takes_the_deficit_of_its_own_spine(engine):
    """The low back's deficit, placed by the note's label, supports an EMG of the legs and not one
    of the arms (tested_regions: the arm's study is the neck's, the leg's the low back's)."""
    text = _TWO_PARTS.read_text()
    plan = ("1. Request authorization for MRI of the lumbar spine.\n"
            "2. Request authorization for MRI of the right shoulder.\n")
    assert plan in text
    text = text.replace(plan, "1. Request authorization for EMG/NCV bilateral upper extremities.\n"
                              "2. Request authorization for EMG/NCV bilateral lower extremities.\n")
    _, case = case_from_text(text, "note")
    assert [r.modality for r in case.requests] == ["emg_ncs", "emg_ncs"]
    states = [next(c.state for c in d.criteria if c.criterion == "neurologic-deficit")
              for d in engine.evaluate(case).determinations]
    assert states == ["failed", "met"]
