"""FHIR R4 -> a case, and determinations -> CDS Hooks cards. The mapping is written in docs/fhir.md.

Resources are parsed and validated with ``fhir.resources`` (its R4B models: FHIR 4.3, which reads
R4 Patient, Condition, MedicationStatement, MedicationRequest and ServiceRequest as they are).
"""

from __future__ import annotations

import datetime as dt
import json
import math
import uuid
from typing import Any

from ...evaluation.case import Case, body_regions, case_from_data
from ...errors import InputError

# Timing.repeat.periodUnit -> days
_UNIT_DAYS = {"s": 1 / 86400, "min": 1 / 1440, "h": 1 / 24, "d": 1, "wk": 7, "mo": 30, "a": 365}
_RESOURCES = ("Patient", "Condition", "MedicationStatement", "MedicationRequest", "ServiceRequest")


def _model(name: str):
    import importlib
    return getattr(importlib.import_module(f"fhir.resources.R4B.{name.lower()}"), name)


def _first_error(exc: Exception) -> str:
    errors = getattr(exc, "errors", None)
    if callable(errors):
        try:
            err = errors()[0]
            loc = ".".join(str(p) for p in err.get("loc", ()) if p != "__root__")
            return (f"{loc}: " if loc else "") + str(err.get("msg", ""))[:160]
        except Exception:  # noqa: BLE001
            pass
    return " ".join(str(exc).split())[:160]


def parse_resource(data: Any, source: str, where: str = "") -> Any:
    """A validated fhir.resources model of one resource (only the kinds this mapping reads)."""
    if not isinstance(data, dict) or "resourceType" not in data:
        raise InputError(source, "not a FHIR resource (no resourceType)", location=where or None,
                         expected="a FHIR R4 resource as JSON")
    kind = data["resourceType"]
    if kind == "Bundle":
        model = _model("Bundle")
    elif kind in _RESOURCES:
        model = _model(kind)
    else:
        return None  # other resources (Encounter, Practitioner...) are ignored
    try:
        return model.model_validate(data)
    except Exception as exc:  # noqa: BLE001 - pydantic / fhir_core validation
        raise InputError(source, f"invalid FHIR {kind}: {_first_error(exc)}", location=where or None,
                         expected=f"a FHIR R4 {kind}") from None


def bundle_resources(data: Any, source: str, where: str = "") -> list[Any]:
    """The resources of a Bundle (or one resource), validated, in order; unknown kinds dropped."""
    res = parse_resource(data, source, where)
    if res is None:
        return []
    if res.__resource_type__ == "Bundle":
        out = []
        for n, entry in enumerate(res.entry or []):
            if entry.resource is None:
                continue
            if entry.resource.__resource_type__ in _RESOURCES:  # validated with the Bundle
                out.append(entry.resource)
        return out
    return [res]


def _concept_text(cc: Any) -> str | None:
    if cc is None:
        return None
    if getattr(cc, "text", None):
        return cc.text
    for coding in cc.coding or []:
        if coding.display:
            return coding.display
    for coding in cc.coding or []:
        if coding.code:
            return coding.code
    return None


def _date(value: Any) -> dt.date | None:
    if value is None:
        return None
    if isinstance(value, dt.datetime):
        return value.date()
    if isinstance(value, dt.date):
        return value
    text = str(value)
    try:
        return dt.date.fromisoformat(text[:10])
    except ValueError:
        return None


def _age(birth: dt.date | None, on: dt.date) -> int | None:
    if birth is None:
        return None
    years = on.year - birth.year - ((on.month, on.day) < (birth.month, birth.day))
    return years if 0 <= years <= 120 else None


def _num(value: Any) -> float | None:
    if value is None:
        return None
    try:
        f = float(value)
    except (TypeError, ValueError):
        return None
    return f if math.isfinite(f) else None


def _units_per_day(dosage: list[Any] | None) -> float | None:
    """Units a day from dosageInstruction[0]: dose x frequency / period (in days)."""
    if not dosage:
        return None
    d = dosage[0]
    dose = None
    for dr in d.doseAndRate or []:
        q = getattr(dr, "doseQuantity", None)
        if q is not None and _num(q.value):
            dose = _num(q.value)
            break
        r = getattr(dr, "doseRange", None)
        if r is not None and r.high is not None and _num(r.high.value):
            dose = _num(r.high.value)
            break
    rep = d.timing.repeat if d.timing is not None else None
    if dose is None or rep is None:
        return None
    freq = _num(rep.frequencyMax) or _num(rep.frequency) or 1
    period = _num(rep.period)
    unit = _UNIT_DAYS.get(str(rep.periodUnit or ""))
    if not period or unit is None:
        return None
    per_day = dose * freq / (period * unit)
    return round(per_day, 3) if 0 < per_day <= 48 else None


def _medication_name(res: Any) -> str | None:
    name = _concept_text(getattr(res, "medicationCodeableConcept", None))
    if name is None and getattr(res, "medicationReference", None) is not None:
        name = res.medicationReference.display
    return name


def order_request(res: Any) -> dict[str, Any]:
    """One draft order (MedicationRequest or ServiceRequest) -> a case request."""
    if res.__resource_type__ == "MedicationRequest":
        name = _medication_name(res) or "medication (not named)"
        req: dict[str, Any] = {}
        disp = res.dispenseRequest
        words = [name]
        if disp is not None:
            qty = _num(disp.quantity.value) if disp.quantity is not None else None
            if qty is not None and qty >= 0:
                req["quantity"] = int(round(qty))
                words.append(f"#{int(round(qty))}")
            if disp.numberOfRepeatsAllowed is not None:
                req["refills"] = int(disp.numberOfRepeatsAllowed)
                words.append(f"refills x {int(disp.numberOfRepeatsAllowed)}")
        per_day = _units_per_day(res.dosageInstruction)
        if per_day is not None:
            req["units_per_day"] = per_day
        return {"item": " ".join(words), **req}
    # ServiceRequest
    name = _concept_text(res.code) or "service (not named)"
    req = {}
    sessions = None
    if getattr(res, "quantityQuantity", None) is not None:
        sessions = _num(res.quantityQuantity.value)
    timing = getattr(res, "occurrenceTiming", None)
    if sessions is None and timing is not None and timing.repeat is not None:
        sessions = _num(timing.repeat.count)
    words = [name]
    if sessions is not None and sessions >= 0:
        req["sessions"] = int(round(sessions))
        words.append(f"x {int(round(sessions))} sessions")
    sites = [t for t in (_concept_text(s) for s in res.bodySite or []) if t]
    if sites:
        regions = body_regions(" ".join(sites))
        if regions:
            req["body_region"] = regions
        if not body_regions(name):
            words.append(" ".join(sites))
    return {"item": " ".join(words), **req}


def resources_case(resources: list[Any], source: str, *, case_id: str | None = None) -> Case:
    """Patient, Condition, MedicationStatement, MedicationRequest and ServiceRequest -> a case."""
    orders = [r for r in resources if r.__resource_type__ in ("MedicationRequest", "ServiceRequest")]
    if not orders:
        raise InputError(source, "no MedicationRequest or ServiceRequest to judge",
                         expected="a Bundle with at least one draft order")
    authored = [_date(getattr(o, "authoredOn", None)) for o in orders]
    request_date = next((d for d in authored if d), None)
    patients = [r for r in resources if r.__resource_type__ == "Patient"]
    data: dict[str, Any] = {"id": case_id or "fhir-" + (patients[0].id if patients and patients[0].id else "bundle")}
    if patients:
        p = patients[0]
        patient: dict[str, Any] = {}
        age = _age(_date(p.birthDate), request_date or dt.date.today())
        if age is not None:
            patient["age"] = age
        if p.gender in ("male", "female"):
            patient["sex"] = p.gender
        if patient:
            data["patient"] = patient
    if request_date:
        data["request_date"] = request_date.isoformat()
    diagnoses = []
    onsets = []
    for r in resources:
        if r.__resource_type__ == "Condition":
            text = _concept_text(r.code)
            if text and text not in diagnoses:
                diagnoses.append(text)
            onset = _date(getattr(r, "onsetDateTime", None))
            if onset is None and getattr(r, "onsetPeriod", None) is not None:
                onset = _date(r.onsetPeriod.start)
            if onset:
                onsets.append(onset)
    if diagnoses:
        data["diagnoses"] = diagnoses
    if onsets and (request_date is None or min(onsets) <= request_date):
        data["injury_date"] = min(onsets).isoformat()
    meds = []
    for r in resources:
        if r.__resource_type__ != "MedicationStatement":
            continue
        name = _medication_name(r)
        if not name:
            continue
        med: dict[str, Any] = {"name": name}
        start = None
        if getattr(r, "effectivePeriod", None) is not None:
            start = _date(r.effectivePeriod.start)
        elif getattr(r, "effectiveDateTime", None) is not None:
            start = _date(r.effectiveDateTime)
        if start and (request_date is None or start <= request_date):
            med["since"] = start.isoformat()
        if r.dosage and r.dosage[0].text:
            med["dose"] = r.dosage[0].text
        if r.dosage and r.dosage[0].asNeededBoolean:
            med["intermittent"] = True
        meds.append(med)
    if meds:
        data["medications"] = meds
    data["requests"] = [order_request(o) for o in orders]
    return case_from_data(data, source)


def bundle_case(raw: bytes, source: str = "<bundle>") -> Case:
    """application/fhir+json: a Bundle (or one order) -> a case."""
    if not raw.strip():
        raise InputError(source, "file is empty", expected="a FHIR R4 Bundle as JSON")
    try:
        data = json.loads(raw)
    except (ValueError, RecursionError) as exc:
        raise InputError(source, f"not JSON ({str(exc)[:120]})", expected="a FHIR R4 Bundle as JSON") from None
    bid = data.get("id") if isinstance(data, dict) else None
    return resources_case(bundle_resources(data, source), source,
                          case_id=f"fhir-{bid}" if isinstance(bid, str) and bid else None)


# ------------------------------------------------------------------- CDS Hooks

SERVICE_ID = "mtus-order-sign"
DISCOVERY = {"services": [{
    "id": SERVICE_ID,
    "hook": "order-sign",
    "title": "MTUS utilization review pre-check",
    "description": "Judges each draft MedicationRequest and ServiceRequest against the California MTUS "
                   "and answers with a card per order: the decision, the cited rationale and the "
                   "documentation that would change it.",
    "prefetch": {
        "patient": "Patient/{{context.patientId}}",
        "conditions": "Condition?patient={{context.patientId}}",
        "medications": "MedicationStatement?patient={{context.patientId}}",
    },
    "usageRequirements": "Send context.draftOrders as a Bundle of MedicationRequest and ServiceRequest.",
}]}

INDICATOR = {"certify": "info", "modify": "warning", "non-certify": "critical", "no-rule": "info"}


def hook_case(body: Any, source: str = "<cds-hooks>") -> Case:
    """An order-sign request -> a case: the draft orders are its requests, prefetch its records."""
    if not isinstance(body, dict):
        raise InputError(source, "body is not a JSON object", expected="a CDS Hooks request")
    if body.get("hook") not in (None, "order-sign"):
        raise InputError(source, f"hook {body.get('hook')!r} is not served here", expected="order-sign")
    context = body.get("context")
    if not isinstance(context, dict) or "draftOrders" not in context:
        raise InputError(source, "no context.draftOrders", location="context",
                         expected="context.draftOrders: a Bundle of MedicationRequest and ServiceRequest")
    resources = bundle_resources(context["draftOrders"], source, "context.draftOrders.")
    prefetch = body.get("prefetch") or {}
    if not isinstance(prefetch, dict):
        raise InputError(source, "prefetch is not an object", location="prefetch")
    for key, value in prefetch.items():
        if value is not None:
            resources += bundle_resources(value, source, f"prefetch.{key}.")
    patient_id = context.get("patientId")
    if isinstance(patient_id, str) and patient_id and not any(r.__resource_type__ == "Patient" for r in resources):
        pass  # no Patient prefetched: age and sex stay not documented
    case_id = f"cds-{patient_id}" if isinstance(patient_id, str) and patient_id else None
    return resources_case(resources, source, case_id=case_id)


def _md(text: Any) -> str:
    from ..render import md_escape
    return md_escape(text)


def card_detail(d: dict[str, Any]) -> str:
    lines = [f"**{d['decision']}**: {_md(d['request'])}"]
    if d.get("modified_request"):
        lines.append(f"\nModified to: {_md(d['modified_request']['item'])}")
    lines.append("\n" + _md(d["rationale"]))
    blocking = [c for c in d.get("criteria", []) if c["state"] in ("failed", "not documented")]
    if blocking:
        lines.append("\n**Criteria not met**\n")
        lines += [f"- {_md(c['asks'])} ({c['state']}: {_md(c['finding'])})" for c in blocking]
    if d.get("missing_documentation"):
        lines.append("\n**Missing documentation**\n")
        lines += [f"- {_md(m)}" for m in d["missing_documentation"]]
    return "\n".join(lines)


def source_label(d: dict[str, Any]) -> str:
    cites = d.get("citations") or []
    if not cites:
        return "MTUS (no rule covers this item)"
    parts = []
    for c in cites:
        pages = f", pages {c['pages']}" if c.get("pages") else ""
        mark = "" if c.get("certainty") == "letter" else f" [{c.get('certainty')}]"
        parts.append(f"{c['section']}{pages}{mark}")
    return f"{cites[0]['guideline']}: " + "; ".join(parts)


def cards(result: dict[str, Any]) -> dict[str, Any]:
    """One card per draft order, in order."""
    out = []
    for d in result["determinations"]:
        summary = f"{d['decision']}: {d['request']}"
        if len(summary) > 140:
            summary = summary[:139] + "…"
        out.append({
            "uuid": str(uuid.uuid4()),
            "summary": summary,
            "indicator": INDICATOR.get(d["decision"], "info"),
            "detail": card_detail(d),
            "source": {"label": source_label(d)},
        })
    return {"cards": out}
