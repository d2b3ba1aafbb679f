"""Fuzzing the letter extractor and the case loader: any input ends in a result or a clean
InputError, never another exception, never a hang.

CI runs a bounded number of examples; run longer by hand with FUZZ_EXAMPLES=20000.
"""

import os
import signal
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from mtus_engine.evaluation.case import case_from_data, load_case_text
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
    from mtus_engine.letters.letter import letter_to_case, parse_letter
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


# ------------------------------------------------- issue 10: each class of hostile input

import datetime  # noqa: E402
import json  # noqa: E402

from mtus_engine.api import case_error  # noqa: E402
from mtus_engine.evaluation.case import MAX_REQUESTS  # noqa: E402
from mtus_engine.yamlio import MAX_DEPTH  # noqa: E402

HOSTILE = settings(max_examples=max(20, EXAMPLES // 5), deadline=None, suppress_health_check=list(HealthCheck))


def _judge(engine, text, source="fuzz.yaml"):
    """Load and evaluate like `mtus evaluate` does: a result, or one clean line naming the
    source. Only InputError, or a derived value out of bounds, may fail a case."""
    from pydantic import ValidationError
    case = None
    try:
        case = _bounded(load_case_text, text, source)
        return _bounded(engine.evaluate, case, seconds=20)
    except InputError as exc:
        message = exc.message
    except ValidationError as exc:   # a value derived from the item text: reported, per request
        assert case is not None
        message = case_error(source, exc, case, engine).message
        assert "requests[" in message, message
    # one line per problem, each naming the source
    assert all(line.startswith(source) for line in message.splitlines()), message
    return message


@st.composite
def deep_documents(draw):
    depth = draw(st.integers(1, 3000))
    field = draw(st.sampled_from(["diagnoses", "findings", "requests", "patient", "medications"]))
    style = draw(st.sampled_from(["flow", "block", "compact", "json", "mapping"]))
    if style == "json":
        return '{"id": "x", "requests": [{"item": "Soma"}], "%s": %s}' % (field, "[" * depth + "]" * depth)
    if style == "flow":
        return f"id: x\nrequests: [{{item: Soma}}]\n{field}: " + "[" * depth + "]" * depth + "\n"
    if style == "compact":
        return f"id: x\nrequests:\n  - item: Soma\n{field}:\n  " + "- " * depth + "x\n"
    if style == "mapping":
        return f"id: x\nrequests: [{{item: Soma}}]\n{field}: " + "{a: " * depth + "1" + "}" * depth + "\n"
    return (f"id: x\nrequests:\n  - item: Soma\n{field}:\n"
            + "".join("  " * (i + 1) + "-\n" for i in range(depth)) + "  " * (depth + 1) + "x\n")


@HOSTILE
@given(deep_documents())
def test_any_nesting_depth_loads_or_fails_on_one_line(engine, text):
    result = _judge(engine, text)
    if isinstance(result, str) and "nested" in result:
        assert f"more than {MAX_DEPTH} levels" in result


numbers = st.one_of(st.integers(0, 100), st.integers(0, 10**7), st.integers(10**7, 10**40),
                    st.just(999999), st.just(9999))


@st.composite
def derived_numbers(draw):
    drug = draw(st.sampled_from(["Cyclobenzaprine 7.5mg", "Norco 10/325 mg", "Soma 350 mg", "Ibuprofen 800 mg",
                                 "Physical therapy", "Acupuncture", "Chiropractic"]))
    parts = [drug]
    for form in draw(st.lists(st.sampled_from(["#{}", "qty {}", "x {}", "refills x {}", "{} refills",
                                                "{} sessions", "{}x{}"]), max_size=3)):
        parts.append(form.format(draw(numbers), draw(numbers)))
    year = draw(st.integers(1900, 9999))
    since = draw(st.dates(min_value=datetime.date(1900, 1, 1)))
    med = draw(st.booleans())
    doc = {"id": "n", "request_date": f"{year:04}-06-20", "requests": [{"item": " ".join(parts)}]}
    if med:
        doc["medications"] = [{"name": drug, "since": since.isoformat()}]
    return json.dumps(doc)


@HOSTILE
@given(derived_numbers())
def test_numbers_read_from_the_item_text_are_validated(engine, text):
    _judge(engine, text, "fuzz.json")


@st.composite
def bad_scalars(draw):
    kind = draw(st.sampled_from(["date", "int", "json-int", "float"]))
    if kind == "date":
        y, m, d = draw(st.integers(0, 9999)), draw(st.integers(0, 99)), draw(st.integers(0, 99))
        return f"id: x\nrequest_date: {y:04}-{m:02}-{d:02}\nrequests:\n  - item: Soma\n"
    digits = "9" * draw(st.integers(1, 8000))
    if kind == "int":
        return f"id: x\nrequests:\n  - item: Soma\n    quantity: {digits}\n"
    if kind == "float":
        return f"id: x\nrequests:\n  - item: Soma\n    quantity: 1e{digits[:6]}\n"
    return '{"id": "x", "requests": [{"item": "Soma", "refills": %s}]}' % digits


@HOSTILE
@given(bad_scalars())
def test_bad_dates_and_huge_numbers_fail_on_one_line(engine, text):
    _judge(engine, text)


@st.composite
def alias_bombs(draw):
    fan, levels = draw(st.integers(2, 12)), draw(st.integers(1, 8))
    lines = ["l0: &l0 [" + ", ".join(["x"] * fan) + "]"]
    for k in range(1, levels + 1):
        lines.append(f"l{k}: &l{k} [" + ", ".join([f"*l{k - 1}"] * fan) + "]")
    return "\n".join(lines) + f"\nid: x\nrequests: [{{item: Soma}}]\ndiagnoses: *l{levels}\n"


@HOSTILE
@given(alias_bombs())
def test_alias_bombs_are_refused_not_expanded(engine, text):
    _judge(engine, text)


@settings(max_examples=8, deadline=None, suppress_health_check=list(HealthCheck))
@given(n=st.integers(1, MAX_REQUESTS + 200), item=st.sampled_from(
    ["Norco 10/325 mg #60", "Naproxen 550 mg #60", "Physical therapy 6 sessions", "Tramadol 50 mg #90"]))
def test_many_requests_are_capped_and_bounded_in_time(engine, n, item):
    text = json.dumps({"id": "many", "request_date": "2014-06-20", "requests": [{"item": item}] * n})
    result = _judge(engine, text, "fuzz.json")
    if n > MAX_REQUESTS:
        assert isinstance(result, str) and f"over the limit of {MAX_REQUESTS}" in result
    else:
        assert len(result.determinations) == n


@settings(max_examples=10, deadline=None, suppress_health_check=list(HealthCheck))
@given(st.lists(st.one_of(st.just("good"), deep_documents(), derived_numbers(), bad_scalars(),
                          st.binary(max_size=200).map(lambda b: b.decode("latin-1"))), min_size=1, max_size=12))
def test_a_batch_with_poison_lines_processes_every_line(tmp_path_factory, docs):
    from mtus_engine.evaluation.batch import run_batch
    good = json.dumps({"id": "g", "request_date": "2014-06-20", "requests": [{"item": "Soma 350 mg #20"}]})
    lines = [good if d == "good" else " ".join(d.splitlines()) for d in docs]
    lines = [line for line in lines if line.strip()]
    d = tmp_path_factory.mktemp("poison")
    (d / "in.jsonl").write_text("".join(line + "\n" for line in lines), errors="surrogateescape")
    summary = _bounded(lambda: run_batch(str(d / "in.jsonl"), output=str(d / "out.jsonl")), seconds=120)
    out = (d / "out.jsonl").read_text().splitlines()
    assert summary["cases"] == len(lines) == len(out) - 2
    assert summary["cases"] == summary["evaluated"] + summary["errors"]
    assert summary["errors"] >= sum(1 for x in docs if x != "good" and "[" * (MAX_DEPTH + 1) in x)
