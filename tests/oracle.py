"""An independent evaluator of the rulebook, for tests only; never used in production.

It reads the rule files' criteria directly and evaluates them over a request fact in plain
Python, sharing nothing with the durable_rules compiler but the fact representation (list
facts as ``<fact>__<value>`` flags, absent keys for facts the records do not document).
``request_facts`` derives a one-request case's facts by hand, not through the declarations.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from mtus_engine.rules.rulebook import Criterion, Rule, Rulebook

SEVERITY = {"certify": 0, "modify": 1, "non-certify": 2}


@dataclass
class OracleAnswer:
    decision: str
    rules: list[str]
    states: list[tuple[str, str, str]]
    citations: list[tuple[str, str | None]]


def _applies(rule: Rule, facts: dict[str, Any]) -> bool:
    if rule.applies_when is not None and (rule.applies_when.fact not in facts
                                          or facts[rule.applies_when.fact] != rule.applies_when.equals):
        return False
    a = rule.applies_to
    if "drug" in facts and facts["drug"] in a.drugs:
        return True
    if any(facts.get(f"drug_class__{c}") is True for c in a.classes):
        return True
    if not ("modality" in facts and facts["modality"] in a.modalities):
        return False
    return not a.regions or any(facts.get(f"body_region__{r}") is True for r in a.regions)


def _compare(op: str, value: Any, limit: float) -> bool:
    return {"lt": value < limit, "lte": value <= limit, "gt": value > limit, "gte": value >= limit}[op]


def _holds(op: str, operand: Any, value: Any) -> bool:
    if op == "includes":
        return operand in value
    if op == "excludes":
        return all(v not in value for v in operand)
    if op == "documented":
        return True
    if op == "equals":
        return value == operand
    if op == "not_equals":
        return value != operand
    return _compare(op, value, operand)


def criterion_state(c: Criterion, facts: dict[str, Any]) -> str:
    """met | failed | not documented | not applicable; a rule's default for a silent record
    gives "met (assumed)" or "failed (assumed)"."""
    if c.when is not None:
        guard = _state(c.when.fact, c.when.test, facts)
        if guard == "not documented":
            d = c.when.if_undocumented
            if d == "required":
                return "not documented"
            applies = d.applies if hasattr(d, "applies") else _holds(c.when.test.op, c.when.test.operand, d.assume)
            if not applies:
                return "not applicable"
        elif guard == "failed":
            return "not applicable"
    state = _state(c.fact, c.test, facts)
    if state == "not documented" and c.if_undocumented != "required":
        held = _holds(c.test.op, c.test.operand, c.if_undocumented.assume)
        return ("met" if held else "failed") + " (assumed)"
    return state


def _state(fact: str, test: Any, facts: dict[str, Any]) -> str:
    op, operand = test.op, test.operand
    if op == "includes":
        key = f"{fact}__{operand}"
        if key not in facts:
            return "not documented"
        return "met" if facts[key] else "failed"
    if op == "excludes":
        keys = [f"{fact}__{v}" for v in operand]
        if keys[0] not in facts:
            return "not documented"
        return "failed" if any(facts.get(k) is True for k in keys) else "met"
    if fact not in facts:
        return "not documented"
    return "met" if _holds(op, operand, facts[fact]) else "failed"


def evaluate(rulebook: Rulebook, facts: dict[str, Any], edition: str | None = None) -> OracleAnswer:
    """Under the named edition, else the newest (as Engine.determine does)."""
    ed = next(e for e in rulebook.manifest.editions if e.id == edition) if edition else rulebook.manifest.editions[-1]
    part_ids = [p.id for p in ed.parts]
    part_of = {}
    for r in rulebook.rules:
        for pid in part_ids:
            if pid in r.parts:
                part_of[r.id] = pid
                break
    applicable = [r for r in rulebook.rules if r.id in part_of and _applies(r, facts)]
    if not applicable:
        return OracleAnswer("no-rule", [], [], [])
    decision = "certify"
    states = []
    for rule in applicable:
        blocking = []
        for c in rule.criteria:
            st = criterion_state(c, facts)
            states.append((rule.id, c.id, st))
            if c.decisive and st.split(" (")[0] in ("failed", "not documented"):
                blocking.append((c, st.split(" (")[0]))
        if rule.recommendation == "not-recommended":
            verdict = "non-certify"
        elif not blocking:
            verdict = "certify"
        elif all(c.on_failure == "modify" and st == "failed" for c, st in blocking):
            verdict = "modify"
        else:
            verdict = "non-certify"
        if SEVERITY[verdict] > SEVERITY[decision]:
            decision = verdict
    citations = []
    for rule in applicable:
        main = rule.parts[part_of[rule.id]]
        for section, pages in [(main.section, main.pages),
                               *[(x.section, x.pages.get(part_of[rule.id])) for x in rule.also_cites]]:
            if (section, pages) not in citations:
                citations.append((section, pages))
    return OracleAnswer(decision, [r.id for r in applicable], states, citations)


# ------------------------------------------------------------------ facts, by hand
# The derived facts of a one-request case, written out from each fact's meaning in the
# vocabulary, sharing nothing with src/mtus_engine/evaluation/derivations.py: if a declaration drifts from
# what its meaning says, the two evaluations disagree. Cases here have a single request.

_SEVERE = ("fractur", "crush", "amputat", "burn", "dislocat")


def _generic(rulebook: Rulebook, name: str) -> str | None:
    return rulebook.drugs.generic(name)


def _classes(rulebook: Rulebook, generic: str | None) -> list[str]:
    spec = rulebook.drugs.spec(generic) if generic else None
    return list(spec.classes) if spec else []


def request_facts(case: Any, fields: dict[str, Any], rulebook: Rulebook) -> dict[str, Any]:
    """The fact the rules match, derived by hand (one-request cases)."""
    assert len(case.requests) == 1, "the oracle derives facts of one-request cases"
    facts: dict[str, Any] = {"kind": "request", "id": "request"}
    lists = {n: s.values for n, s in rulebook.facts.items() if s.type == "list"}

    def put(name: str, value: Any) -> None:
        if value is None:
            return
        if name in lists:
            for v in lists[name]:
                facts[f"{name}__{v}"] = v in value
        else:
            facts[name] = value

    f = case.findings
    for name, value in f.model_dump(exclude_none=True).items():
        put(name, value)
    put("age", case.patient.age)
    for name, value in fields.items():
        if name not in ("item", "strength"):
            put(name, value)
    g = lambda k: fields.get(k)  # noqa: E731
    drug, modality = g("drug"), g("modality")
    spec = rulebook.drugs.spec(drug) if drug else None
    meds = [_generic(rulebook, m.name) for m in case.medications]
    listed = bool(case.medications)
    others = [m for m in meds if m and m != drug]

    # sessions: this request's, UR's certified visits of it, and those completed before
    if g("sessions") is not None:
        authorized = g("authorized_sessions") or 0
        put("course_sessions", g("sessions") + authorized)
        if g("prior_sessions") is not None:
            put("total_sessions", g("sessions") + g("prior_sessions") + authorized)
        elif g("prior_treatment") is not True:
            put("total_sessions", g("sessions") + authorized)
    if case.injury_date and case.request_date:
        a, b = case.injury_date, case.request_date
        months = (b.year - a.year) * 12 + (b.month - a.month) - (1 if b.day < a.day else 0)
        put("months_since_injury", months)
    else:
        months = None
    opioid_anywhere = any("opioid" in _classes(rulebook, x) for x in [*meds, drug])
    if opioid_anywhere:
        put("opioid_prescribed", True)
    elif listed:
        put("opioid_prescribed", False)
    if modality:
        if listed:
            put("under_active_treatment", True)
        if (set(f.first_line_tried or []) & {"physical_therapy", "home_exercise"} or f.active_exercise_program
                or f.surgery_considered or f.oral_medication_intolerance):
            put("acupuncture_indicated", True)
        if g("prior_treatment") is True or (g("authorized_sessions") or 0) > 0:
            put("continued_course", True)
        elif g("prior_treatment") is False:
            put("continued_course", False)
        if set(f.first_line_tried or []) & {"physical_therapy", "home_exercise"} or f.active_exercise_program:
            put("rehabilitation_adjunct", True)
        put("corticosteroid_injection", not re.search(
            r"platelet|\bprp\b|hyaluron|visco|synvisc|orthovisc|euflexxa|supartz|monovisc|gel-?one|durolane|"
            r"gelsyn|hyalgan|stem cell|prolother|botox|botulinum|ozone|dextrose", fields["item"], re.I))
        flare = bool(re.search(r"\bflare|\brecurren", fields["item"], re.I))
        put("flare_up_request", flare)
        if g("prior_treatment") is True and not flare:
            put("manipulation_course_continued", True)
        elif g("prior_treatment") is False or flare:
            put("manipulation_course_continued", False)
    entrapment = any(re.search(r"carpal tunnel|cubital tunnel|tarsal tunnel|radial tunnel|nerve entrapment|"
                               r"entrapment neuropath|ulnar neuropath|ulnar neuritis|median neuropath", d, re.I)
                     for d in case.diagnoses)
    put("nerve_entrapment_suspected", entrapment)
    if f.neurologic_deficit or entrapment:
        put("electrodiagnostic_indication", True)
    elif f.neurologic_deficit is False:
        put("electrodiagnostic_indication", False)
    if f.red_flags or f.full_thickness_cuff_tear:
        put("shoulder_surgery_without_trial", True)
    elif f.red_flags is False and f.full_thickness_cuff_tear is False:
        put("shoulder_surgery_without_trial", False)
    if g("ingredients") is not None:
        put("topical_nsaid", any("nsaid" in _classes(rulebook, i) for i in g("ingredients")))
        put("topical_capsaicin", "capsaicin" in g("ingredients"))
    if not drug:
        return facts

    put("drug_class", spec.classes if spec else [])
    if spec:
        put("sedating", spec.sedating)
    if listed:
        put("concurrent_sedating", any(rulebook.drugs.spec(o) and rulebook.drugs.spec(o).sedating for o in others))
    if g("quantity") is not None:
        total = g("quantity") * (1 + (g("refills") or 0))
        put("total_units", total)
        if spec:
            put("supply_days", round(total / spec.daily_units, 1))
    figures = [float(x) for x in re.findall(r"\d+(?:\.\d+)?", g("strength") or "")]
    if spec and figures and "mg" in (g("strength") or "").lower():
        per_day = g("units_per_day") or spec.daily_units
        put("daily_dose_mg", round(figures[0] * per_day, 1))
        if "acetaminophen" in drug and len(figures) == 2:
            put("acetaminophen_mg_per_day", round(figures[1] * per_day, 1))
    weeks = g("prior_use_weeks")
    if g("prior_treatment") is True or (weeks or 0) > 0:
        put("continued_use", True)
    elif g("prior_treatment") is False or weeks == 0:
        put("continued_use", False)
    nsaids = [o for o in others if "nsaid" in _classes(rulebook, o)]
    if nsaids:
        put("concurrent_nsaid", True)
    elif listed:
        put("concurrent_nsaid", False)
    if (case.patient.age or 0) > 65 or f.gi_risk_factors or len(nsaids) >= 2:
        put("gi_risk", True)
    elif f.gi_risk_factors is not None and case.patient.age is not None:
        put("gi_risk", False)
    # a severe acute injury or surgery, either documented true; false when both are documented false
    if f.severe_acute_injury is True or f.post_operative is True:
        put("acute_painful_condition", True)
    elif f.severe_acute_injury is False and f.post_operative is False:
        put("acute_painful_condition", False)
    if not (spec and "opioid" in spec.classes):
        return facts
    put("morphine_equivalent_counted", not spec.morphine_equivalent_excluded)
    # opioids (MTUS Opioid Treatment 2016): which phase of use, and its criteria
    on_list = any("opioid" in _classes(rulebook, m) for m in meds)
    in_use = g("prior_treatment") is True or on_list
    if in_use:
        put("opioid_in_use", True)
    elif listed:
        put("opioid_in_use", False)
    severe = f.severe_acute_injury if f.severe_acute_injury is not None else \
        any(w in d.lower() for d in case.diagnoses for w in _SEVERE)
    acute = bool(severe) and (months is None or months < 3)
    item = fields["item"].lower()
    post_op = f.post_operative is True or any(p in item for p in ("post-op", "postop", "post op"))
    put("opioid_acute_injury", acute)
    put("opioid_post_operative", post_op)
    put("opioid_initiation", not in_use and not acute and not post_op)
    put("opioid_maintenance", in_use and not acute and not post_op)
    put("opioid_post_operative_continued", in_use and post_op)
    put("opioid_acute_injury_continued", in_use and acute and not post_op)
    relief, fi, rtw = f.analgesia_documented, g("functional_improvement"), f.return_to_work
    if not in_use and listed:
        put("opioid_wean_indicated", False)
    elif in_use and (rtw is True or (fi is True and relief is True)):
        put("opioid_wean_indicated", False)
    elif in_use and (fi is False or relief is False):
        put("opioid_wean_indicated", True)
    if relief is True and (fi is True or rtw is True):
        put("opioid_meaningful_improvement", True)
        put("opioid_untapered_days", 0)
    elif relief is False or fi is False:
        put("opioid_meaningful_improvement", False)
        put("opioid_untapered_days", facts.get("supply_days"))
    if (f.urine_drug_screen_consistent is not None or f.aberrant_behavior_screened or f.cures_reviewed
            or f.opioid_agreement):
        put("opioid_monitoring", True)
    elif f.aberrant_behavior_screened is False or f.cures_reviewed is False:
        put("opioid_monitoring", False)
    if f.morphine_equivalent_dose is not None:
        put("morphine_equivalent_total", f.morphine_equivalent_dose)
    else:
        total = 0.0
        parts = [(spec, g("strength"), g("units_per_day"))]
        parts += [(rulebook.drugs.spec(m.name and _generic(rulebook, m.name)), m.dose, None)
                  for m in case.medications if _generic(rulebook, m.name) not in (None, drug)
                  and "opioid" in _classes(rulebook, _generic(rulebook, m.name))]
        for s, strength, per_day in parts:
            if s is not None and s.morphine_equivalent_excluded:
                continue    # buprenorphine: outside the conversion tables
            # the strength's figures: "300/30 mg" -> [300, 30]; a patch's "25 mcg" is its rate an hour
            unit = re.search(r"(mcg|mg)\b", strength or "")
            figures = re.findall(r"\d+(?:\.\d+)?", strength or "")
            want = "mcg" if s is not None and s.strength_unit == "mcg/hr" else "mg"
            if s is None or s.morphine_equivalent is None or not unit or unit.group(1) != want \
                    or len(figures) < s.opioid_figure:
                total = None
                break
            amount = float(figures[s.opioid_figure - 1])
            total += amount * s.morphine_equivalent if want == "mcg" else \
                amount * (per_day or s.daily_units) * s.morphine_equivalent
        put("morphine_equivalent_total", None if total is None else round(total))
    return facts
