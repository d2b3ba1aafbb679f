"""A case read without pydantic, for the plain `mtus evaluate` (issue 12: importing pydantic and
building the case models was about a third of a cold evaluate).

``plain_case(data)`` takes a parsed case document and returns it as plain objects (the same
attribute names, values and field order as the pydantic models in case.py) only when every
value is already in the form the model would store: exact types (a bool is a bool, an int is
not a bool, a number field takes an int or a float and stores a float), declared values,
bounds, required fields, no unknown keys, dates in order. Anything else, valid or not, is
"not mine" (None): the caller validates with the models as before, so every error message,
field path, line and "did you mean" stays pydantic's. The fact fields come from the same
declarations (items.CASE_FACTS) as the models'; tests/test_plain_case.py checks both agree.

The engine reads a case by attribute (duck typing): a plain case or a model gives the same output.
(Named "plain", not "records": in this domain a case's records are the medical records.)
"""

from __future__ import annotations

import datetime as dt
import math
import re
from typing import Any, Callable

from .items import CASE_FACTS, MAX_MEDICATIONS, MAX_REQUESTS, date_order_problems, id_text, lower_drug, one_region


class _NotMine(Exception):
    """A value the models might convert or refuse: the models decide."""


class Plain:
    """A case part as plain data: every field in its model's order in the instance dict (the
    engine reads ``findings.__dict__`` and ``request.__dict__`` as it reads a model's)."""

    fields: tuple[str, ...] = ()

    def __eq__(self, other: object) -> bool:
        return type(other) is type(self) and self.__dict__ == other.__dict__

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"{type(self).__name__}({', '.join(f'{k}={v!r}' for k, v in self.__dict__.items())})"


# plain classes, not dataclasses: a dataclass's generated code costs about a millisecond each at import
class PlainPatient(Plain):
    pass


class PlainFindings(Plain):
    pass


class PlainRequest(Plain):
    pass


class PlainMedication(Plain):
    pass


class PlainCase(Plain):
    pass


_new = object.__new__


# ---------------------------------------------------------------- one value, as the model stores it

def _bounded(lo: Any, above: Any, hi: Any) -> Callable[[Any], bool]:
    def within(v: Any) -> bool:
        return (lo is None or v >= lo) and (above is None or v > above) and (hi is None or v <= hi)
    return within


def _boolean(v: Any) -> Any:
    if type(v) is not bool:
        raise _NotMine
    return v


def _integer(within: Callable[[Any], bool]) -> Callable[[Any], Any]:
    def check(v: Any) -> Any:
        if type(v) is not int or not within(v):
            raise _NotMine
        return v
    return check


def _number(within: Callable[[Any], bool]) -> Callable[[Any], Any]:
    def check(v: Any) -> Any:
        if type(v) is int:
            try:
                v = float(v)
            except OverflowError:
                raise _NotMine from None
        elif type(v) is not float:
            raise _NotMine
        if not math.isfinite(v) or not within(v):
            raise _NotMine
        return v
    return check


def _text(min_length: int = 0) -> Callable[[Any], Any]:
    def check(v: Any) -> Any:
        if type(v) is not str or len(v) < min_length:
            raise _NotMine
        return v
    return check


def _one_of(values: Any) -> Callable[[Any], Any]:
    allowed = frozenset(values)

    def check(v: Any) -> Any:
        if type(v) is not str or v not in allowed:
            raise _NotMine
        return v
    return check


def _list_of(item: Callable[[Any], Any]) -> Callable[[Any], Any]:
    def check(v: Any) -> Any:
        if not isinstance(v, list):
            raise _NotMine
        return [item(x) for x in v]
    return check


_ISO_DATE = re.compile(r"\d{4}-\d{2}-\d{2}").fullmatch


def _date(v: Any) -> Any:
    if type(v) is dt.date:
        return v
    if type(v) is str and _ISO_DATE(v):    # JSON's dates
        try:
            return dt.date.fromisoformat(v)
        except ValueError:
            raise _NotMine from None
    raise _NotMine


def _optional(check: Callable[[Any], Any]) -> Callable[[Any], Any]:
    def optional(v: Any) -> Any:
        return None if v is None else check(v)
    return optional


def _before(transform: Callable[[Any], Any], check: Callable[[Any], Any]) -> Callable[[Any], Any]:
    def transformed(v: Any) -> Any:
        try:
            v = transform(v)
        except ValueError:      # the models' validator raises it too, and they report it
            raise _NotMine from None
        return check(v)
    return transformed


def _fact(spec: Any) -> Callable[[Any], Any]:
    """A declared fact's check (case._field's annotation and bounds)."""
    within = _bounded(spec.minimum, spec.exclusive_minimum, spec.maximum)
    if spec.values:
        scalar = _one_of(spec.values)
    else:
        scalar = {"boolean": _boolean, "integer": _integer(within), "number": _number(within), "string": _text(),
                  "list": _text()}[spec.type]
    return _optional(_list_of(scalar) if spec.type == "list" else scalar)


# the models' validators (case._RequestBase, case.Case), by field
_BEFORE = {"request": {"body_region": one_region, "drug": lower_drug}}


def _facts(source: str) -> dict[str, Callable[[Any], Any]]:
    checks = {}
    for name, spec in CASE_FACTS.items():
        if spec.source == source:
            check = _fact(spec)
            before = _BEFORE.get(source, {}).get(name)
            checks[name] = _before(before, check) if before else check
    return checks


# ---------------------------------------------------------------- the parts, in the models' field order

_REQUIRED = object()


class _Part:
    """One model's fields: name -> check, in order, the required ones and each default."""

    def __init__(self, cls: type[Plain], checks: dict[str, Callable[[Any], Any]],
                 defaults: dict[str, Any] | None = None, required: tuple[str, ...] = ()):
        self.cls = cls
        self.checks = checks
        self.required = required
        cls.fields = tuple(checks)
        defaults = defaults or {}
        # the instance dict of a part given nothing: every field's default, in order
        self.empty = {name: defaults.get(name) for name in checks}

    def read(self, data: Any) -> Plain:
        if not isinstance(data, dict):
            raise _NotMine
        checks = self.checks
        values = dict(self.empty)
        for key, value in data.items():
            check = checks.get(key) if type(key) is str else None
            if check is None:       # an unknown field (or a key that is no text)
                raise _NotMine
            values[key] = check(value)
        for name in self.required:
            if name not in data:
                raise _NotMine
        for name, value in values.items():    # fresh lists: a plain part owns its lists, as a model does
            if value is _FRESH_LIST:
                values[name] = []
        obj = _new(self.cls)
        obj.__dict__ = values
        return obj

    def default(self) -> Plain:
        obj = _new(self.cls)
        obj.__dict__ = dict(self.empty)
        return obj


_FRESH_LIST = object()   # a default of [] (each plain part its own list)

PATIENT = _Part(PlainPatient, {"sex": _optional(_one_of(("male", "female"))), **_facts("patient")})
FINDINGS = _Part(PlainFindings, _facts("findings"))
REQUEST = _Part(PlainRequest, {"item": _text(1), "strength": _optional(_text()), **_facts("request")},
                required=("item",))
MEDICATION = _Part(PlainMedication, {"name": _text(1), "since": _optional(_date), "dose": _optional(_text()),
                                      "intermittent": _optional(_boolean)}, required=("name",))


def _list_of_parts(part: _Part, limit: int) -> Callable[[Any], Any]:
    def check(v: Any) -> Any:
        if not isinstance(v, list) or len(v) > limit:
            raise _NotMine     # over the limit: case_from_data's own message
        return [part.read(x) for x in v]
    return check


def _requests(v: Any) -> Any:
    found = _list_of_parts(REQUEST, MAX_REQUESTS)(v)
    if not found:
        raise _NotMine         # min_length=1: "no requests"
    return found


CASE = _Part(PlainCase, {
    "id": _before(id_text, _text(1)),
    "patient": PATIENT.read,
    "injury_date": _optional(_date),
    "request_date": _optional(_date),
    "diagnoses": _list_of(_text()),
    "findings": FINDINGS.read,
    "medications": _list_of_parts(MEDICATION, MAX_MEDICATIONS),
    "requests": _requests,
}, defaults={"diagnoses": _FRESH_LIST, "medications": _FRESH_LIST}, required=("id", "requests"))


def plain_case(data: Any) -> PlainCase | None:
    """The case document as a plain case when every value is as the models would store it; None
    (the models decide, and report any problem) otherwise."""
    try:
        case = CASE.read(data)
        d = case.__dict__
        if type(d["patient"]) is not PlainPatient:
            d["patient"] = PATIENT.default()
        if type(d["findings"]) is not PlainFindings:
            d["findings"] = FINDINGS.default()
    except (_NotMine, RecursionError):
        return None
    if date_order_problems(case):
        return None
    return case
