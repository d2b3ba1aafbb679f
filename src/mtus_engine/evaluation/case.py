"""The case: a structured utilization review request, as a reviewer reads it.

Field names here are a public contract: what-if paths, letters and services address them.
A fact left out means the records are silent on it; that is different from ``false``.

These pydantic models are the validating definition of a case. What the engine reads at run
time (the item notation, the derivation of a request's fields, the fact bounds) is in
items.py, without pydantic; the names callers imported from here before the split still work.
"""

from __future__ import annotations

import datetime as dt
import math
from pathlib import Path
from typing import Any, Literal, get_args, get_origin

from pydantic import (BaseModel, ConfigDict, Field, ValidationError, ValidationInfo, create_model, field_validator,
                      model_validator)

from ..errors import InputError
from ..rules.rulebook import FactSpec
from ..yamlio import DEFAULT_MAX_BYTES, line_of, parse_document, read_bytes
from . import items as _items
# what the engine reads at run time lives in items.py (no pydantic); the names callers import
# from here before the split are re-exported (the rest: import them from items.py)
from .items import (BODY_REGIONS, CASE_FACTS, DIAGNOSIS_TYPES, GI_RISK_FACTORS, INGREDIENTS,  # noqa: F401
                    MAX_MEDICATIONS, MAX_REQUESTS, MODALITIES, DrugLookup, body_regions, date_order_problems,
                    derive_request, fact_values, modality_patterns, parse_item)

# ---------------------------------------------------------------- the fact vocabulary
# Every fact a case states (source findings, request or patient) is declared once, in
# rules/vocabulary/facts*.yaml (items.CASE_FACTS): its type, its values, its bounds and its
# meaning. The models below are built from those declarations, so a fact added there is a case
# field; only what is not a fact (ids, dates, the item as written, the medication list) is
# written here. plain_case.py reads the same declarations for the plain evaluate's case reader.

def _field(spec: FactSpec) -> tuple[Any, Any]:
    scalar: Any = {"boolean": bool, "integer": int, "number": float, "string": str, "list": str}[spec.type]
    if spec.values:
        scalar = Literal[tuple(spec.values)]
    annotation = list[scalar] if spec.type == "list" else scalar
    return annotation | None, Field(default=None, ge=spec.minimum, gt=spec.exclusive_minimum, le=spec.maximum,
                                    description=spec.meaning)


def _fact_fields(source: str) -> dict[str, Any]:
    return {name: _field(spec) for name, spec in CASE_FACTS.items() if spec.source == source}


class _CaseModel(BaseModel):
    """A case's parts: unknown fields refused; mutable, unlike the rulebook's models (what-if
    edits copies of a case)."""

    model_config = ConfigDict(extra="forbid", validate_assignment=False, frozen=False)


class _PatientBase(_CaseModel):
    sex: Literal["male", "female"] | None = None


class _FindingsBase(_CaseModel):
    """Documented clinical facts: true, false, or absent (None) when the records are silent."""


class _RequestBase(_CaseModel):
    """One requested item. Fields left out are derived from ``item`` and the medications."""

    item: str = Field(min_length=1, description="The item as written, e.g. 'Flexeril 10 mg Qty 60'.")
    strength: str | None = Field(default=None, description="e.g. '7.5 mg', '10/325 mg'.")

    # validators of declared facts (check_fields=False: the fields come from the vocabulary)
    @field_validator("body_region", mode="before", check_fields=False)
    @classmethod
    def _one_region(cls, v: Any) -> Any:
        return _items.one_region(v)

    @field_validator("drug", mode="before", check_fields=False)
    @classmethod
    def _lower_drug(cls, v: Any) -> Any:
        return _items.lower_drug(v)


def _model(name: str, base: type[_CaseModel], source: str) -> Any:
    return create_model(name, __base__=base, __module__=__name__, **_fact_fields(source))


Patient = _model("Patient", _PatientBase, "patient")
Findings = _model("Findings", _FindingsBase, "findings")
Request = _model("Request", _RequestBase, "request")


class Medication(_CaseModel):
    name: str = Field(min_length=1, description="As written; brand or generic.")
    since: dt.date | None = Field(default=None, description="Documented start of use.")
    dose: str | None = None
    intermittent: bool | None = Field(default=None, description="Taken intermittently, as needed.")


# default factories as Python functions, not `list` or the model classes: pydantic reads each
# factory's signature when it builds the model, and a builtin's or a model's costs the import
# a tokenizer (its regular expressions) and the model's whole signature
def _no_items() -> list:
    return []


def _no_patient() -> Any:
    return Patient()


def _no_findings() -> Any:
    return Findings()


class Case(_CaseModel):
    id: str = Field(min_length=1)
    patient: Patient = Field(default_factory=_no_patient)
    injury_date: dt.date | None = None
    request_date: dt.date | None = None
    diagnoses: list[str] = Field(default_factory=_no_items)
    findings: Findings = Field(default_factory=_no_findings)
    medications: list[Medication] = Field(default_factory=_no_items)
    requests: list[Request] = Field(min_length=1)

    @field_validator("id", mode="before")
    @classmethod
    def _id_text(cls, v: Any) -> Any:
        return _items.id_text(v)

    @model_validator(mode="after")
    def _dates_in_order(self, info: ValidationInfo) -> "Case":
        if not (info.context or {}).get("dates_checked_by_caller"):
            problems = date_order_problems(self)
            if problems:
                raise ValueError("; ".join(msg for _, msg in problems))
        return self


# ---------------------------------------------------------------- loading

def _dotted(path: tuple) -> str:
    return "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in path).lstrip(".")


def _model_at(path: tuple) -> Any:
    """The case model that holds the field at ``path`` (None when the path leaves the models)."""
    model: Any = Case
    for part in path:
        if isinstance(part, int):
            continue
        info = model.model_fields.get(part) if model is not None else None
        if info is None:
            return None
        model = next((t for t in _types_in(info.annotation) if isinstance(t, type) and issubclass(t, BaseModel)),
                     None)
    return model


def _types_in(annotation: Any) -> list[Any]:
    """An annotation with Optional, list and unions taken apart."""
    args = get_args(annotation)
    if not args or get_origin(annotation) is Literal:
        return [annotation]
    return [t for a in args for t in _types_in(a)]


def _allowed_values(path: tuple) -> list[str]:
    """The declared values of the field at ``path`` (a Literal), else []."""
    names = [p for p in path if not isinstance(p, int)]
    model = _model_at(tuple(names[:-1]))
    info = model.model_fields.get(names[-1]) if model is not None and names else None
    if info is None:
        return []
    return [v for t in _types_in(info.annotation) if get_origin(t) is Literal for v in get_args(t)]


def _did_you_mean(word: Any, choices: list[str]) -> str:
    import difflib    # bad input only: not on every start
    near = difflib.get_close_matches(str(word), choices, n=1, cutoff=0.6) if isinstance(word, str) else []
    return f"did you mean {near[0]!r}?" if near else ""


def _with_hint(expected: str | None, hint: str) -> str | None:
    if not hint:
        return expected
    return f"{expected}; {hint}" if expected else hint


def _problem(err: dict, source: str, data: Any) -> InputError:
    """One pydantic error as a problem naming the file, line and field, and what was expected."""
    path = tuple(err["loc"])
    loc = _dotted(path) or "document"
    line = line_of(data, path)
    kind = err["type"]
    value = err.get("input")
    if kind == "extra_forbidden":
        model = _model_at(path[:-1])
        hint = _did_you_mean(path[-1], list(model.model_fields) if model is not None else [])
        return InputError(source, "unknown field", location=loc, line=line,
                          expected=_with_hint("a case field documented in docs/case-fields.md", hint))
    if kind == "missing":
        return InputError(source, "required field is missing", location=loc, line=line)
    if kind == "too_short" and path and path[-1] == "requests":
        return InputError(source, "no requests", location=loc, line=line, expected="at least one request")
    if kind == "value_error":
        return InputError(source, str(err["msg"]).removeprefix("Value error, "), location=loc, line=line)
    shown = repr(value) if not isinstance(value, (dict, list)) else type(value).__name__
    if len(shown) > 60:
        shown = shown[:57] + "..."
    if kind.startswith("date") and isinstance(value, str):
        return InputError(source, f"invalid date {shown}", location=loc, line=line,
                          expected="a real date, YYYY-MM-DD: " + err["msg"].lower().split(", ", 1)[-1])
    hint = _did_you_mean(value, [str(v) for v in _allowed_values(path)]) if kind == "literal_error" else ""
    return InputError(source, f"invalid value {shown}", location=loc, line=line,
                      expected=_with_hint(err["msg"].lower(), hint))


def _ordered(problems: list[InputError]) -> InputError:
    """Every problem in one error, in the order of the file's lines."""
    return InputError.of(sorted(problems, key=lambda p: p.line if p.line is not None else math.inf))


def case_from_data(data: Any, source: str = "<case>") -> Case:
    """Validate case data; an invalid case raises one InputError listing every problem found."""
    if not isinstance(data, dict):
        kind = "list" if isinstance(data, list) else type(data).__name__
        raise InputError(source, f"top level is a {kind}",
                         expected="a mapping with id, requests and the other case fields")
    for key, limit in (("requests", MAX_REQUESTS), ("medications", MAX_MEDICATIONS)):
        items = data.get(key)
        if isinstance(items, list) and len(items) > limit:
            raise InputError(source, f"{len(items)} {key}, over the limit of {limit} per case",
                             location=key, line=line_of(data, (key,)),
                             expected=f"at most {limit} {key} (split the case)")
    try:
        case = Case.model_validate(data, context={"dates_checked_by_caller": True})
    except ValidationError as exc:
        raise _ordered([_problem(err, source, data) for err in exc.errors()]) from None
    except (ValueError, RecursionError) as exc:
        raise InputError(source, f"invalid case ({type(exc).__name__}: {str(exc)[:120]})") from None
    problems = date_order_problems(case)
    if problems:
        raise _ordered([InputError(source, msg.removeprefix(_dotted(path) + " "), location=_dotted(path),
                                   line=line_of(data, path)) for path, msg in problems])
    return case


def derived_error(case: Case, drugs: "DrugLookup", source: str) -> InputError | None:
    """Every request whose derived fields are invalid, in one error, or None.

    Fields left out of a request are derived from its item text and the medications (see
    ``derive_request``): "#999999" is a quantity, ``since`` and ``request_date`` give weeks of
    use. Those values meet the same bounds as values written in the case, and a failure names
    the request, the field, where the value came from and the bound.
    """
    problems: list[InputError] = []
    for idx, req in enumerate(case.requests):
        try:
            derive_request(case, idx, drugs)
        except ValidationError as exc:
            parsed = parse_item(req.item, drugs)
            for err in exc.errors():
                field = ".".join(str(p) for p in err["loc"]) or "item"
                value = err.get("input")
                if field in parsed:
                    origin = f"read from the item {req.item[:80]!r}"
                elif field == "prior_use_weeks":
                    origin = f"weeks from medications[].since to request_date {case.request_date}"
                else:
                    origin = "derived from the case"
                shown = repr(value) if not isinstance(value, (dict, list)) else type(value).__name__
                ctx = err.get("ctx") or {}
                expected = (f"at most {ctx['le']}" if "le" in ctx else f"at least {ctx['ge']}" if "ge" in ctx
                            else str(err["msg"]).lower())
                problems.append(InputError(source, f"invalid value {shown[:60]} ({origin})",
                                           location=f"requests[{idx}].{field}", expected=expected))
        except (ValueError, ArithmeticError, RecursionError) as exc:
            problems.append(InputError(source, f"the item {req.item[:80]!r} cannot be read ({type(exc).__name__}: "
                                               f"{str(exc)[:100]})", location=f"requests[{idx}].item"))
    return InputError.of(problems) if problems else None


def load_case(path: str | Path, *, max_bytes: int = DEFAULT_MAX_BYTES) -> Case:
    """Load and validate a case from a YAML or JSON file."""
    source = str(path)
    return case_from_data(parse_document(read_bytes(path, max_bytes=max_bytes), source), source)


def load_case_text(text: str | bytes, source: str = "<stdin>") -> Case:
    raw = text.encode("utf-8") if isinstance(text, str) else text
    return case_from_data(parse_document(raw, source), source)


def derive(case: Case, drugs: DrugLookup) -> tuple[Case, dict[int, dict[str, str]]]:
    """The case with every request's derivable fields filled in (see derive_request)."""
    provenance: dict[int, dict[str, str]] = {}
    requests = []
    for idx in range(len(case.requests)):
        filled, provenance[idx] = derive_request(case, idx, drugs)
        requests.append(Request.model_validate(filled))
    return case.model_copy(update={"requests": requests}), provenance


def case_to_data(case: Case) -> dict[str, Any]:
    """The case as plain JSON-able data, leaving out what the records do not say."""
    return case.model_dump(mode="json", exclude_none=True, exclude_defaults=False)


def fact_fields_markdown() -> str:
    """The table rows of docs/case-fields.md for the declared facts (scripts/case_fields.py)."""
    rows = ["| field | type | meaning |", "|---|---|---|"]
    for source, prefix in (("patient", "patient."), ("findings", "findings."), ("request", "requests[].")):
        for name, spec in CASE_FACTS.items():
            if spec.source == source:
                rows.append(f"| `{prefix}{name}` | {_kind(spec)} | {spec.meaning} |")
    return "\n".join(rows) + "\n"


def _kind(spec: FactSpec) -> str:
    values = ", ".join(f"`{v}`" for v in spec.values or ())
    if spec.type == "list":
        return f"list of {values}" if values else "list"
    if spec.type == "string":
        return values or "string"
    high = spec.maximum
    if spec.minimum is not None and high is not None:
        return f"{spec.type} {spec.minimum}-{high}"
    if spec.exclusive_minimum is not None:
        return f"{spec.type} over {spec.exclusive_minimum}" + (f", at most {high}" if high is not None else "")
    return spec.type + (f" up to {high}" if high is not None else "")
