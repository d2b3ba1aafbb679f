"""The plain evaluate's case reader (evaluation/plain_case.py) against the pydantic models
(evaluation/case.py): whenever the reader takes a document, the models take it too and store
the same values, of the same types, in the same field order; and the engine's output from the
plain case is the models' byte for byte. A document the reader does not take is the models' to
validate (and to report, with their messages)."""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mtus_engine.errors import InputError
from mtus_engine.evaluation import case as C
from mtus_engine.evaluation.derived import DerivedRequest
from mtus_engine.evaluation.items import CASE_FACTS
from mtus_engine.evaluation.plain_case import Plain, plain_case
from mtus_engine.interfaces.render import to_json
from mtus_engine.yamlio import parse_document

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "cases" / "example-chronic-cyclobenzaprine.yaml"


def _typed(value):
    """A value with every type made explicit (1 == 1.0 == True in Python), parts as their
    fields in order: what a model or a plain case stores, comparable."""
    if isinstance(value, (C.BaseModel, Plain)):
        return ("part", [(k, _typed(v)) for k, v in value.__dict__.items()])
    if isinstance(value, list):
        return ("list", [_typed(v) for v in value])
    return (type(value).__name__, value)


def _models(doc, source="<case>"):
    try:
        return C.case_from_data(doc, source)
    except InputError:
        return None


# ---------------------------------------------------------------- the fields

def test_a_plain_case_has_the_models_fields_in_order():
    empty = plain_case({"id": "x", "requests": [{"item": "Soma"}]})
    model = C.case_from_data({"id": "x", "requests": [{"item": "Soma"}]})
    for rec, mod in ((empty, model), (empty.patient, model.patient), (empty.findings, model.findings),
                     (empty.requests[0], model.requests[0])):
        assert list(rec.__dict__) == list(type(mod).model_fields)
    assert list(type(empty).fields) == list(C.Case.model_fields)
    # derivation's request: the Request model's fields, read from the same declarations
    import dataclasses
    assert [f.name for f in dataclasses.fields(DerivedRequest) if f.name != "given"] == list(C.Request.model_fields)


# ---------------------------------------------------------------- generated documents

def _near_misses():
    """Values a model converts or refuses that a reader checking types loosely would take."""
    return st.sampled_from(["true", "yes", "1", "1.0", "", " ", 1.0, 0.0, 2.5, -1, 0, 1, True, False, None,
                            10 ** 30, float("inf"), float("nan"), [], {}, ["x"], {"a": 1},
                            dt.datetime(2015, 1, 1), dt.datetime(2015, 1, 1, 10, 30), "2015-01-01",
                            "2015-1-1", "2015-02-30", "20150101", b"x"])


def _canonical(spec):
    """Values of a declared fact as a case writes them, bounds crossed now and then."""
    lo = spec.minimum if spec.minimum is not None else spec.exclusive_minimum
    lo = -5 if lo is None else int(lo) - 2
    hi = 100_000 if spec.maximum is None else int(spec.maximum) + 2
    if spec.values:
        one = st.sampled_from([*spec.values, *spec.values, *spec.values, "other_thing", spec.values[0].upper()])
    else:
        one = {"boolean": st.booleans(), "integer": st.integers(lo, hi),
               "number": st.integers(lo, hi) | st.floats(lo, hi), "string": st.text(max_size=8),
               "list": st.text(max_size=8)}[spec.type]
    if spec.type == "list":
        return st.lists(one, max_size=3) | one     # a lone value: body_region's validator
    return one


def _facts(source, near):
    names = [n for n, s in CASE_FACTS.items() if s.source == source]

    @st.composite
    def facts(draw):
        chosen = draw(st.lists(st.sampled_from(names), max_size=5, unique=True))
        out = {}
        for name in chosen:
            out[name] = draw(_maybe(draw, _canonical(CASE_FACTS[name]), near))
        if near and _rarely(draw, 10):
            out[draw(st.sampled_from(["unknown", "Muscle_spasm", "drugs", 3]))] = True
        return out
    return facts()


def _dates(near, early):
    """Dates; ``early`` ones before 2015, the others from 2015 (the injury and the medications
    come before the request date, but for one in twenty: out of order)."""
    real = st.dates(dt.date(2000, 1, 1), dt.date(2014, 12, 31)) if early else \
        st.dates(dt.date(2015, 1, 1), dt.date(2030, 12, 31))
    iso = real.map(dt.date.isoformat)          # JSON's dates
    return (real | iso | st.none() | _near_misses()) if near else (real | iso | st.none())


def _rarely(draw, n):
    """True one time in n (hypothesis draws the bounds of an integer range far more often)."""
    return draw(st.sampled_from([False] * (n - 1) + [True]))


def _maybe(draw, strategy, near):
    """The strategy, or now and then (one value in eight) a near miss: most documents then hold
    one or two, and the reader's every check meets documents it must refuse for that alone."""
    return _near_misses() if near and _rarely(draw, 8) else strategy


@st.composite
def documents(draw, near=True):
    """A case document; with ``near``, with near-miss types, unknown keys, missing or empty
    required fields and values out of bounds."""
    def maybe(strategy):
        return _maybe(draw, strategy, near)
    doc = {"id": draw(maybe(st.text(min_size=1, max_size=6) | st.integers(-5, 10 ** 6)))}
    if draw(st.booleans()):
        patient = draw(_facts("patient", near))
        if draw(st.booleans()):
            patient["sex"] = draw(maybe(st.sampled_from(["male", "female"])))
        doc["patient"] = patient
    for key in ("injury_date", "request_date"):
        if draw(st.booleans()):
            doc[key] = draw(_dates(near, early=key == "injury_date" and not _rarely(draw, 20)))
    if draw(st.booleans()):
        doc["diagnoses"] = draw(st.lists(maybe(st.text(max_size=10)), max_size=3))
    if draw(st.booleans()):
        doc["findings"] = draw(_facts("findings", near))
    if draw(st.booleans()):
        meds = []
        for _ in range(draw(st.integers(0, 3))):
            med = {"name": draw(maybe(st.sampled_from(["cyclobenzaprine", "Norco", "naproxen", "x"])))}
            if draw(st.booleans()):
                med["since"] = draw(_dates(near, early=not _rarely(draw, 20)))
            if draw(st.booleans()):
                med["intermittent"] = draw(maybe(st.booleans()))
            if near and _rarely(draw, 10):
                med.pop("name")
            meds.append(med)
        doc["medications"] = meds
    requests = []
    for _ in range(0 if near and _rarely(draw, 20) else draw(st.integers(1, 3))):
        req = draw(_facts("request", near))
        req["item"] = draw(maybe(st.sampled_from(["Flexeril 10 mg #60", "Soma 350mg", "PT x 6", "MRI lumbar"])))
        if draw(st.booleans()):
            req["strength"] = draw(maybe(st.sampled_from(["10 mg", "7.5 mg"])))
        if "drug" in req and draw(st.booleans()):
            req["drug"] = draw(st.sampled_from([" Cyclobenzaprine ", "NAPROXEN", "soma"]))
        if near and _rarely(draw, 10):
            req.pop("item")
        requests.append(req)
    doc["requests"] = requests
    if near and _rarely(draw, 10):
        doc[draw(st.sampled_from(["note", "Requests", "findings_", 7]))] = "x"
    if near and _rarely(draw, 20):
        doc.pop("id")
    return doc


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(documents())
def test_what_the_reader_takes_the_models_store_alike(doc):
    plain = plain_case(doc)
    if plain is None:
        return                      # the models' to validate and report
    model = _models(doc)
    assert model is not None, "the reader took a document the models refuse"
    assert _typed(plain) == _typed(model)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(documents(near=False))
def test_the_reader_takes_documents_written_as_the_models_store_them(doc):
    model = _models(doc)
    plain = plain_case(doc)
    if model is None:               # a bound crossed, dates out of order: the models report it
        assert plain is None
        return
    stored = all(  # the ints the models turn into floats, a lone region they turn into a list
        not (CASE_FACTS[k].type == "number" and type(v) is int) and not (CASE_FACTS[k].type == "list"
                                                                          and isinstance(v, str))
        for part in [doc.get("patient", {}), doc.get("findings", {}), *doc["requests"]]
        for k, v in part.items() if k in CASE_FACTS)
    if stored:
        assert plain is not None, "a document in the models' stored form was not taken"
    if plain is not None:
        assert _typed(plain) == _typed(model)


@pytest.mark.parametrize("doc, why", [
    ({"id": "x", "requests": [{"item": "Soma", "quantity": True}]}, "a bool for an int"),
    ({"id": "x", "requests": [{"item": "Soma", "quantity": 60.0}]}, "a float for an int"),
    ({"id": "x", "requests": [{"item": "Soma"}], "findings": {"muscle_spasm": "true"}}, "text for a bool"),
    ({"id": "x", "requests": [{"item": "Soma"}], "request_date": dt.datetime(2015, 1, 1)}, "a datetime"),
    ({"id": "x", "requests": [{"item": "Soma", "quantity": 10 ** 6}]}, "over the bound"),
    ({"id": "x", "requests": [{"item": "Soma", "units_per_day": 0}]}, "not over the exclusive minimum"),
    ({"id": "x", "requests": [{"item": "Soma"}], "finding": {}}, "an unknown key"),
    ({"id": "x", "requests": []}, "no requests"),
    ({"id": "", "requests": [{"item": "Soma"}]}, "an empty id"),
    ({"id": True, "requests": [{"item": "Soma"}]}, "a bool id"),
    ({"id": "x", "requests": [{"item": "Soma"}], "injury_date": dt.date(2016, 1, 1),
      "request_date": dt.date(2015, 1, 1)}, "dates out of order"),
    ({"id": "x", "requests": [{"item": "Soma"}] * (C.MAX_REQUESTS + 1)}, "over the request limit"),
    ({"id": "x", "requests": [{"item": "Soma", "modality": "physio"}]}, "an undeclared value"),
    ({"id": "x", "requests": [{"item": "Soma"}], "patient": None}, "a null part"),
    # a number id is its text, but past Python's digit limit str() raises: the models report it
    ({"id": 10 ** 5000, "requests": [{"item": "Soma"}]}, "an id too long to write as text"),
])
def test_the_reader_leaves_these_to_the_models(doc, why):
    assert plain_case(doc) is None, why


def test_the_validators_effects_are_the_models():
    doc = {"id": 12, "requests": [{"item": "Soma", "drug": "  SOMA ", "body_region": "lumbar",
                                   "units_per_day": 3}]}
    plain, model = plain_case(doc), C.case_from_data(doc)
    assert plain is not None and _typed(plain) == _typed(model)
    assert (plain.id, plain.requests[0].drug, plain.requests[0].body_region, plain.requests[0].units_per_day) \
        == ("12", "soma", ["lumbar"], 3.0)


# ---------------------------------------------------------------- every case in cases/

def _case_documents():
    """(name, document) of every case in cases/: the example, the gold files' cases (synthetic
    and real letters) and the cases the progress-note reader builds from cases/notes, each as
    YAML (with its lines) and as JSON (dates as text)."""
    from mtus_engine.letters.notes import case_from_text
    out = [("example", parse_document(EXAMPLE.read_bytes(), str(EXAMPLE)))]
    for path in sorted((ROOT / "cases" / "letters").rglob("*.gold.yaml")):
        out.append((path.name, parse_document(path.read_bytes(), str(path))["case"]))
    for path in sorted((ROOT / "cases" / "notes").glob("*.txt")):
        case = case_from_text(path.read_text(), str(path), kind="note", stem=path.stem)[1]
        out.append((path.name, C.case_to_data(case)))
    return out + [(f"{name} (JSON)", json.loads(json.dumps(C.case_to_data(C.case_from_data(doc)), default=str)))
                  for name, doc in out]


def test_every_case_judged_plain_is_judged_as_from_the_models(engine):
    docs = _case_documents()
    taken = 0
    for name, doc in docs:
        model = C.case_from_data(doc, name)
        plain = plain_case(doc)
        if plain is None:
            continue
        taken += 1
        assert _typed(plain) == _typed(model), name
        assert to_json(engine.evaluate(plain).to_json_data()) == to_json(engine.evaluate(model).to_json_data()), name
        assert [engine.fire(plain, i) for i in range(len(plain.requests))] == \
            [engine.fire(model, i) for i in range(len(model.requests))], name
    assert taken == len(docs)       # all written in the stored form: every one read by the reader


# ---------------------------------------------------------------- the plain evaluate, end to end

_WRAPPED = """
import atexit, sys
atexit.register(lambda: sys.__stderr__.write(repr(sorted(m for m in sys.modules
    if m == "pydantic" or m == "mtus_engine.evaluation.case"))))
from mtus_engine.interfaces.front import main
main(["evaluate", *sys.argv[1:], "--format", "json"])
"""


def _evaluate(args, cache, *flags, **env):
    run_env = {k: v for k, v in os.environ.items() if k not in ("MTUS_RULES", "MTUS_NO_CACHE")}
    run_env.update(MTUS_CACHE_DIR=str(cache), **env)
    return subprocess.run([sys.executable, *flags, "-c", _WRAPPED, *args], capture_output=True, env=run_env,
                          cwd=ROOT, timeout=120)


def _importers_of_pydantic(importtime: str) -> set[str]:
    """Our modules whose import first imported pydantic (-X importtime lists a module after the
    modules its import imported, indented deeper)."""
    rows = []
    for line in importtime.splitlines():
        if line.startswith("import time:") and "|" in line:
            name = line.rsplit("|", 1)[1]
            rows.append((len(name) - len(name.lstrip()), name.strip()))
    found = set()
    for i, (depth, name) in enumerate(rows):
        if name != "pydantic" and not name.startswith("pydantic."):
            continue
        for d, parent in rows[i + 1:]:
            if d < depth:
                depth = d
                if parent.startswith("mtus_engine"):
                    found.add(parent)
                    break
    return found


def test_the_plain_evaluate_reads_its_case_without_the_models(tmp_path):
    cache = tmp_path / "cache"
    first = _evaluate([str(EXAMPLE)], cache)      # writes the start-up cache
    warm = _evaluate([str(EXAMPLE)], cache, "-X", "importtime")
    off = _evaluate([str(EXAMPLE)], cache, MTUS_NO_CACHE="1")
    assert first.returncode == warm.returncode == off.returncode == 0
    assert warm.stdout == off.stdout == first.stdout and warm.stdout.startswith(b"{")
    imported = warm.stderr.decode().rsplit("\n", 1)[-1]
    assert "mtus_engine.evaluation.case" not in imported        # no case model built
    assert _importers_of_pydantic(warm.stderr.decode()) == set()    # neither the case nor the rulebook


def test_a_plain_evaluate_on_a_warm_cache_never_imports_pydantic(tmp_path):
    cache = tmp_path / "cache"
    assert _evaluate([str(EXAMPLE)], cache).returncode == 0
    warm, off = _evaluate([str(EXAMPLE)], cache), _evaluate([str(EXAMPLE)], cache, MTUS_NO_CACHE="1")
    assert warm.returncode == off.returncode == 0 and warm.stdout == off.stdout
    assert warm.stderr.decode().endswith("[]"), warm.stderr.decode()[-200:]


def test_a_bad_case_on_the_plain_path_is_reported_by_the_models(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("id: x\nrequests:\n  - item: Soma 350 mg\n    quantity: 'sixty'\n    refils: 2\n")
    run = _evaluate([str(bad)], tmp_path / "cache")
    assert run.returncode == 2
    err = run.stderr.decode()
    assert f"{bad}:4: requests[0].quantity: invalid value 'sixty'" in err
    assert f"{bad}:5: requests[0].refils: unknown field" in err and "did you mean 'refills'?" in err
