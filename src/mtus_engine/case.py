"""The case: a structured utilization review request, as a reviewer reads it.

Field names here are a public contract: what-if paths, letters and services address them.
A fact left out means the records are silent on it; that is different from ``false``.
"""

from __future__ import annotations

import datetime as dt
import re
from pathlib import Path
from typing import Any, Literal, Protocol

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from .errors import InputError
from .yamlio import DEFAULT_MAX_BYTES, line_of, parse_document, read_bytes

# Bounds above which a number is a data-entry error, not a request.
MAX_QUANTITY = 10_000
MAX_REFILLS = 24
MAX_SESSIONS = 200
MAX_WEEKS = 52 * 80

FIRST_LINE_TREATMENTS = (
    "nsaid", "physical_therapy", "home_exercise", "acupuncture", "chiropractic",
    "antidepressant", "anticonvulsant", "acetaminophen", "trigger_point_injection",
    "epidural_steroid_injection",
)
BODY_REGIONS = (
    "cervical", "thoracic", "lumbar", "shoulder", "elbow", "forearm", "wrist", "hand",
    "carpal_tunnel", "hip", "knee", "ankle", "foot",
)
MODALITIES = ("chiropractic", "acupuncture", "physical_therapy", "massage", "aquatic_therapy")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=False, frozen=False)


class Patient(_Strict):
    age: int | None = Field(default=None, ge=0, le=120, description="Age in years.")
    sex: Literal["male", "female"] | None = None


class Findings(_Strict):
    """Documented clinical facts: true, false, or absent (None) when the records are silent."""

    acute_exacerbation: bool | None = Field(
        default=None, description="An acute exacerbation or flare-up beyond chronic baseline is documented.")
    muscle_spasm: bool | None = Field(default=None, description="Muscle spasm on examination.")
    first_line_tried: list[Literal[FIRST_LINE_TREATMENTS]] | None = Field(  # type: ignore[valid-type]
        default=None, description="First-line treatments already tried.")
    spasticity: bool | None = Field(
        default=None, description="Spasticity from multiple sclerosis or spinal cord injury.")
    return_to_work: bool | None = Field(default=None, description="The worker has returned to work.")
    liver_function_monitored: bool | None = Field(
        default=None, description="Liver function tests are documented (tizanidine monitoring).")


class Medication(_Strict):
    name: str = Field(min_length=1, description="As written; brand or generic.")
    since: dt.date | None = Field(default=None, description="Documented start of use.")
    dose: str | None = None
    intermittent: bool | None = Field(default=None, description="Taken intermittently, as needed.")


class Request(_Strict):
    """One requested item. Fields left out are derived from ``item`` and the medications."""

    item: str = Field(min_length=1, description="The item as written, e.g. 'Flexeril 10 mg Qty 60'.")
    drug: str | None = Field(default=None, description="Generic drug name.")
    strength: str | None = Field(default=None, description="e.g. '7.5 mg', '10/325 mg'.")
    quantity: int | None = Field(default=None, ge=0, le=MAX_QUANTITY, description="Units (tablets) per fill.")
    refills: int | None = Field(default=None, ge=0, le=MAX_REFILLS)
    sessions: int | None = Field(default=None, ge=0, le=MAX_SESSIONS, description="Visits requested.")
    prior_sessions: int | None = Field(default=None, ge=0, le=MAX_SESSIONS * 5,
                                       description="Visits of this treatment already completed.")
    prior_treatment: bool | None = Field(
        default=None, description="Prior use of this same treatment is documented (duration or count may be unknown).")
    prior_use_weeks: int | None = Field(default=None, ge=0, le=MAX_WEEKS,
                                        description="Weeks this drug has already been used.")
    functional_improvement: bool | None = Field(
        default=None, description="Objective functional improvement documented from prior use of this same treatment.")
    modality: Literal[MODALITIES] | None = None  # type: ignore[valid-type]
    body_region: list[Literal[BODY_REGIONS]] | None = None  # type: ignore[valid-type]
    incomplete: bool | None = Field(default=None, description="The request states no dosage or quantity.")

    @field_validator("body_region", mode="before")
    @classmethod
    def _one_region(cls, v: Any) -> Any:
        return [v] if isinstance(v, str) else v

    @field_validator("drug", mode="before")
    @classmethod
    def _lower_drug(cls, v: Any) -> Any:
        return v.strip().lower() if isinstance(v, str) else v


class Case(_Strict):
    id: str = Field(min_length=1)
    patient: Patient = Field(default_factory=Patient)
    injury_date: dt.date | None = None
    request_date: dt.date | None = None
    diagnoses: list[str] = Field(default_factory=list)
    findings: Findings = Field(default_factory=Findings)
    medications: list[Medication] = Field(default_factory=list)
    requests: list[Request] = Field(min_length=1)

    @field_validator("id", mode="before")
    @classmethod
    def _id_text(cls, v: Any) -> Any:
        return str(v) if isinstance(v, int) and not isinstance(v, bool) else v

    @model_validator(mode="after")
    def _dates_in_order(self) -> "Case":
        if self.injury_date and self.request_date and self.injury_date > self.request_date:
            raise ValueError(
                f"injury_date {self.injury_date} is after request_date {self.request_date}")
        for i, med in enumerate(self.medications):
            if med.since and self.request_date and med.since > self.request_date:
                raise ValueError(
                    f"medications[{i}].since {med.since} is after request_date {self.request_date}")
        return self


# ---------------------------------------------------------------- loading

def _format_validation_error(exc: ValidationError, source: str, data: Any) -> InputError:
    err = exc.errors()[0]
    path = tuple(err["loc"])
    dotted = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in path).lstrip(".")
    line = line_of(data, path)
    loc = (dotted or "document") + (f" (line {line})" if line else "")
    kind = err["type"]
    value = err.get("input")
    if kind == "extra_forbidden":
        return InputError(source, "unknown field", location=loc,
                          expected="one of the documented case fields (docs/case-fields.md)")
    if kind == "missing":
        return InputError(source, "required field is missing", location=loc)
    if kind == "too_short" and path and path[-1] == "requests":
        return InputError(source, "no requests", location=loc, expected="at least one request")
    if kind == "value_error":
        msg = str(err["msg"]).removeprefix("Value error, ")
        return InputError(source, msg, location=loc)
    shown = repr(value) if not isinstance(value, (dict, list)) else type(value).__name__
    if len(shown) > 60:
        shown = shown[:57] + "..."
    return InputError(source, f"invalid value {shown}", location=loc, expected=err["msg"].lower())


def case_from_data(data: Any, source: str = "<case>") -> Case:
    if not isinstance(data, dict):
        kind = "list" if isinstance(data, list) else type(data).__name__
        raise InputError(source, f"top level is a {kind}",
                         expected="a mapping with id, requests and the other case fields")
    try:
        return Case.model_validate(data)
    except ValidationError as exc:
        raise _format_validation_error(exc, source, data) from None


def load_case(path: str | Path, *, max_bytes: int = DEFAULT_MAX_BYTES) -> Case:
    """Load and validate a case from a YAML or JSON file."""
    source = str(path)
    return case_from_data(parse_document(read_bytes(path, max_bytes=max_bytes), source), source)


def load_case_text(text: str | bytes, source: str = "<stdin>") -> Case:
    raw = text.encode("utf-8") if isinstance(text, str) else text
    return case_from_data(parse_document(raw, source), source)


# ------------------------------------------------------ item notation

class DrugLookup(Protocol):
    def find_in_text(self, text: str) -> str | None: ...
    def generic(self, name: str) -> str | None: ...


_STRENGTH = re.compile(r"(\d+(?:\.\d+)?(?:\s*/\s*\d+(?:\.\d+)?)?)\s*(mg|mcg|g|%|ml)\b", re.I)
# tried in order; "x" must stand alone ("Norflex 100 mg" is not "x 100")
_QTY = (
    re.compile(r"#\s*(\d+)"),
    re.compile(r"\b(?:qty|quantity)\s*:?\s*(\d+)", re.I),
    re.compile(r"(?<![\w.])x\s*(\d+)\b(?!\s*refill)", re.I),
)
# tried in order: "#60 refills x 3" must read 3 refills, not 60
_REFILLS = (
    re.compile(r"refills?\s*(?:x|:)?\s*(\d+)", re.I),
    re.compile(r"\bx\s*(\d+)\s*refills?", re.I),
    re.compile(r"(?<![#\d])(\d+)\s*refills?", re.I),
)
_FREQ_WEEKS = re.compile(r"\b(\d+)\s*x\s*(\d+)\b", re.I)
_SESSIONS = re.compile(r"\b(\d+)\b(?:\s+[a-z&,/-]+){0,5}?\s+(?:sessions?|visits?|treatments?)\b", re.I)
_SESSIONS_X = re.compile(r"(?<![\w.])x\s*(\d+)\b", re.I)
_MODALITY_WORDS = [
    ("chiropractic", re.compile(r"chiropract|manipulation|manual therapy", re.I)),
    ("acupuncture", re.compile(r"acupunct", re.I)),
    ("aquatic_therapy", re.compile(r"aquatic|pool therapy", re.I)),
    ("massage", re.compile(r"massage", re.I)),
    ("physical_therapy", re.compile(r"physical therapy|\bPT\b|physiotherapy", re.I)),
]
_REGION_WORDS = [
    ("cervical", r"cervical|neck"), ("thoracic", r"thoracic|mid[- ]?back|upper back"),
    ("lumbar", r"lumbar|low(?:er)? back|lumbosacral"), ("shoulder", r"shoulder"),
    ("elbow", r"elbow"), ("forearm", r"forearm"), ("carpal_tunnel", r"carpal tunnel"),
    ("wrist", r"wrist"), ("hand", r"\bhands?\b"), ("hip", r"\bhips?\b"), ("knee", r"knee"),
    ("ankle", r"ankle"), ("foot", r"\bfoot\b|\bfeet\b"),
]
_REGIONS = [(name, re.compile(pat, re.I)) for name, pat in _REGION_WORDS]
_ADDITIONAL = re.compile(r"\badditional\b|\bcontinued\b|\bmore\b", re.I)


def _first_int(m: re.Match | None) -> int | None:
    if not m:
        return None
    for g in m.groups():
        if g is not None:
            return int(g)
    return None


_item_cache: dict[tuple[int, str], dict[str, Any]] = {}


def parse_item(item: str, drugs: DrugLookup) -> dict[str, Any]:
    """What the item text itself says: drug, strength, quantity, refills, sessions, modality."""
    key = (id(drugs), item)
    hit = _item_cache.get(key)
    if hit is None:
        if len(_item_cache) > 50_000:  # bounded: batches repeat item texts, but memory stays flat
            _item_cache.clear()
        hit = _item_cache[key] = _parse_item(item, drugs)
    return {k: (list(v) if isinstance(v, list) else v) for k, v in hit.items()}


def _parse_item(item: str, drugs: DrugLookup) -> dict[str, Any]:
    out: dict[str, Any] = {}
    drug = drugs.find_in_text(item)
    if drug:
        out["drug"] = drug
        m = _STRENGTH.search(item)
        if m:
            amount = re.sub(r"\s+", "", m.group(1))
            out["strength"] = f"{amount} {m.group(2).lower()}"
        refill_match = next((m for p in _REFILLS if (m := p.search(item))), None)
        scrubbed = item[:refill_match.start()] + item[refill_match.end():] if refill_match else item
        qty = _first_int(next((m for p in _QTY if (m := p.search(scrubbed))), None))
        if qty is not None:
            out["quantity"] = qty
        refills = _first_int(refill_match)
        if refills is not None:
            out["refills"] = refills
        return out
    for name, pattern in _MODALITY_WORDS:
        if pattern.search(item):
            out["modality"] = name
            break
    if "modality" in out:
        m = _FREQ_WEEKS.search(item)
        if m:
            out["sessions"] = int(m.group(1)) * int(m.group(2))
        else:
            sessions = _first_int(_SESSIONS.search(item)) or _first_int(_SESSIONS_X.search(item))
            if sessions is not None:
                out["sessions"] = sessions
        regions = [name for name, pattern in _REGIONS if pattern.search(item)]
        if regions:
            out["body_region"] = regions
        if _ADDITIONAL.search(item):
            out["prior_treatment"] = True
    return out


_BOUNDS = {"quantity": MAX_QUANTITY, "refills": MAX_REFILLS, "sessions": MAX_SESSIONS,
           "prior_sessions": MAX_SESSIONS * 5, "prior_use_weeks": MAX_WEEKS}


def _weeks_between(start: dt.date, end: dt.date) -> int:
    return max(0, (end - start).days // 7)


def derive_request(case: Case, index: int, drugs: DrugLookup) -> tuple[dict[str, Any], dict[str, str]]:
    """One request with the fields it left out filled from its item text and the medications.

    Returns the fields (None left out) and where each came from ("case", "item",
    "medications", "medications.since", ...), so a determination can say which facts were
    read from where.
    """
    req = case.requests[index]
    given = req.model_dump(exclude_none=True)
    src = {k: "case" for k in given if k != "item"}
    filled = dict(given)
    for key, value in parse_item(req.item, drugs).items():
        if key not in filled:
            filled[key] = value
            src[key] = "item"
    if filled.get("drug"):
        generic = drugs.generic(filled["drug"]) or filled["drug"]
        filled["drug"] = generic
        for med in case.medications:
            if drugs.generic(med.name) != generic:
                continue
            if "prior_treatment" not in filled:
                filled["prior_treatment"] = True
                src["prior_treatment"] = "medications"
            if "prior_use_weeks" not in filled and med.since and case.request_date:
                filled["prior_use_weeks"] = _weeks_between(med.since, case.request_date)
                src["prior_use_weeks"] = "medications.since"
        if "prior_treatment" not in filled and case.medications:
            # the medication list is the record of current use: absent means not taking it
            filled["prior_treatment"] = False
            src["prior_treatment"] = "medications"
        if filled.get("prior_treatment") is False and "prior_use_weeks" not in filled:
            filled["prior_use_weeks"] = 0
            src["prior_use_weeks"] = "medications"
        if "incomplete" not in filled:
            filled["incomplete"] = "quantity" not in filled and "strength" not in filled
            src["incomplete"] = "item"
    elif filled.get("modality"):
        if "prior_treatment" not in filled and filled.get("prior_sessions") is not None:
            filled["prior_treatment"] = filled["prior_sessions"] > 0
            src["prior_treatment"] = "prior_sessions"
    for key, bound in _BOUNDS.items():
        value = filled.get(key)
        if value is not None and not 0 <= value <= bound:
            Request.model_validate(filled)  # raises the usual validation error
    return filled, src


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
