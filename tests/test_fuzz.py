"""Fuzzing the letter extractor and the case loader: any input ends in a result or a clean
InputError, never another exception, never a hang.

CI runs a bounded number of examples; run longer by hand with FUZZ_EXAMPLES=20000.
"""

import os
import signal
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from mtus_engine.case import case_from_data, load_case_text
from mtus_engine.errors import InputError

ROOT = Path(__file__).resolve().parents[1]
LETTERS = [p.read_text() for p in sorted((ROOT / "cases" / "letters").glob("*.txt"))]
EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "300"))
FUZZ = settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck))
NASTY = ["\x00", "\x07", "\u202e", "\ufeff", "\u00a0", "é", "日本", "🙂", "\r", "\t", "\x1b[31m", "\ud7ff"]


class Hang(Exception):
    pass


def _bounded(fn, *args, seconds=5):
    """Run fn with a wall-clock bound: a hang fails the test instead of stalling CI."""
    def alarm(*_):
        raise Hang(f"{fn.__name__} took over {seconds} s")
    old = signal.signal(signal.SIGALRM, alarm)
    signal.alarm(seconds)
    try:
        return fn(*args)
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)


@st.composite
def mutated_letters(draw):
    lines = draw(st.sampled_from(LETTERS)).split("\n")
    for _ in range(draw(st.integers(1, 6))):
        op = draw(st.sampled_from(["drop", "dup", "join", "truncate", "rewrap", "inject", "longline", "shuffle"]))
        if not lines:
            break
        i = draw(st.integers(0, len(lines) - 1))
        if op == "drop":
            del lines[i]
        elif op == "dup":
            lines.insert(i, lines[i])
        elif op == "join" and i + 1 < len(lines):
            lines[i: i + 2] = [lines[i] + lines[i + 1]]
        elif op == "truncate":
            text = "\n".join(lines)
            lines = text[: draw(st.integers(0, len(text)))].split("\n")
        elif op == "rewrap":
            width = draw(st.integers(5, 120))
            text = " ".join(l.strip() for l in lines)
            lines = [text[k: k + width] for k in range(0, len(text), width)]
        elif op == "inject":
            pos = draw(st.integers(0, len(lines[i])))
            lines[i] = lines[i][:pos] + draw(st.sampled_from(NASTY)) * draw(st.integers(1, 5)) + lines[i][pos:]
        elif op == "longline":
            lines.insert(i, draw(st.sampled_from(["Flexeril ", "x", "Page(s): 1-", " Upheld "])) * draw(st.integers(1000, 20000)))
        elif op == "shuffle" and i + 3 < len(lines):
            lines[i], lines[i + 3] = lines[i + 3], lines[i]
    return "\n".join(lines)


def _extract(text):
    from mtus_engine.letter import letter_to_case, parse_letter
    parsed = parse_letter(text, "fuzz.txt")
    return case_from_data(letter_to_case(parsed, "fuzz"), "fuzz.txt")


@FUZZ
@given(mutated_letters())
def test_mutated_letters_extract_or_fail_cleanly(text):
    try:
        case = _bounded(_extract, text)
    except InputError as exc:
        assert exc.message.startswith("fuzz.txt")
    else:
        assert case.requests


@FUZZ
@given(st.text(max_size=3000))
def test_random_text_is_not_a_letter_or_is_clean(text):
    try:
        _bounded(_extract, text)
    except InputError:
        pass


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-10**12, 10**12) | st.floats(allow_nan=True) | st.text(max_size=40),
    lambda children: st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=12), children, max_size=6),
    max_leaves=30)
case_keys = st.sampled_from(["id", "patient", "injury_date", "request_date", "diagnoses", "findings",
                             "medications", "requests", "item", "quantity", "refills", "since", "name",
                             "acute_exacerbation", "first_line_tried", "body_region", "age", "sex"])


@st.composite
def case_like(draw):
    doc = {"id": draw(st.one_of(st.text(max_size=10), json_values)),
           "requests": draw(st.one_of(json_values, st.lists(st.dictionaries(case_keys, json_values, max_size=6), max_size=3)))}
    for k in draw(st.lists(case_keys, max_size=5)):
        doc[k] = draw(json_values)
    return doc


@FUZZ
@given(case_like())
def test_random_case_documents_load_or_fail_cleanly(doc):
    import json
    try:
        text = json.dumps(doc, allow_nan=True)
    except (ValueError, TypeError):
        return
    try:
        _bounded(load_case_text, text, "fuzz.json")
    except InputError as exc:
        assert exc.message.startswith("fuzz.json")


@FUZZ
@given(st.binary(max_size=2000))
def test_random_bytes_load_or_fail_cleanly(raw):
    try:
        _bounded(load_case_text, raw, "fuzz.bin")
    except InputError as exc:
        assert exc.message.startswith("fuzz.bin")


@FUZZ
@given(case_like())
def test_loaded_random_cases_evaluate_without_crashing(engine, doc):
    try:
        case = case_from_data(doc, "fuzz")
    except InputError:
        return
    result = engine.evaluate(case)
    assert len(result.determinations) == len(case.requests)


def test_a_line_of_thousands_of_drug_names_stays_fast():
    # found by the long fuzz run: polarity scanned the whole clause for every mention (quadratic)
    import time
    text = LETTERS[0].replace("Length it use, rationale and", "Length it use, rationale and \n" + "Flexeril " * 3000)
    t0 = time.perf_counter()
    try:
        _bounded(_extract, text, seconds=10)
    except InputError:
        pass
    assert time.perf_counter() - t0 < 1.0
