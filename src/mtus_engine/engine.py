"""Evaluate a case against the compiled rulebook: case -> facts -> durable_rules -> determination."""

from __future__ import annotations

import copy
import math
import re
from typing import Any

from .backend import RulesetHandle
from .case import (Case, Request, derive, derive_request, medication_generic, parse_item, strength_mg,
                   units_per_day)
from .compiler import (FAILED, MET, NOT_APPLICABLE, UNDOCUMENTED, CompiledRulebook, chained_facts,
                       compile_rulebook, flag)
from .determination import (SEVERITY, CaseDetermination, CitationOut, CriterionResult,
                            Determination, ModifiedRequest, RulebookRef)
from .derived import DerivedRequest
from .errors import EngineError
from .rulebook import Criterion, Edition, Rule, Rulebook, load_rulebook


def request_facts(case: Case, req: DerivedRequest, rulebook: Rulebook) -> dict[str, Any]:
    """The flat fact the rules match: request fields, findings, patient, derived values.

    Absent facts are left out (durable_rules' $nex), never set to a default.
    """
    facts: dict[str, Any] = {"kind": "request", "id": "request"}
    findings = case.findings.model_dump(exclude_none=True)
    list_values = rulebook.list_values

    def put_list(name: str, members: list[str] | None) -> None:
        if members is None:
            return
        for value in list_values.get(name, []):
            facts[flag(name, value)] = value in members

    for name, value in findings.items():
        if name in list_values:
            put_list(name, value)
        else:
            facts[name] = value
    if case.patient.age is not None:
        facts["age"] = case.patient.age
    for name, value in req.items():
        if name in ("item", "strength"):
            continue
        if name in list_values:
            put_list(name, value)
        else:
            facts[name] = value
    spec = rulebook.drugs.spec(req.drug) if req.drug else None
    if req.drug:
        put_list("drug_class", spec.classes if spec else [])
        if spec:
            facts["sedating"] = spec.sedating
        if case.medications or case.findings:
            others = [m for m in case.medications if rulebook.drugs.generic(m.name) != req.drug]
            sedating = [m for m in others
                        if (s := rulebook.drugs.spec(rulebook.drugs.generic(m.name) or "")) and s.sedating]
            if case.medications:
                facts["concurrent_sedating"] = bool(sedating)
        if req.quantity is not None:
            total = req.quantity * (1 + (req.refills or 0))
            facts["total_units"] = total
            if spec:
                facts["supply_days"] = round(total / spec.daily_units, 1)
    # visits of the same request that UR already certified count with it: the original request
    authorized = req.authorized_sessions or 0
    if req.sessions is not None:
        facts["course_sessions"] = req.sessions + authorized
    if req.sessions is not None and req.prior_sessions is not None:
        facts["total_sessions"] = req.sessions + req.prior_sessions + authorized
    elif req.sessions is not None and req.prior_treatment is not True:
        # nothing completed before: stated, or no earlier course recorded (a first request is a trial)
        facts["total_sessions"] = req.sessions + authorized
    # the breadth families' derived facts, only where a rule for this item reads them
    reads = rulebook.reads(req.drug, req.modality)
    if reads & _OPIOID_FACTS and spec and "opioid" in spec.classes:
        _opioid_facts(case, req, spec, rulebook, facts)
    if reads & _DOSE_FACTS and req.strength:
        _dose_facts(req, spec, facts)
    if reads & _GI_FACTS:
        _gi_facts(case, req, rulebook, facts)
    if req.ingredients is not None:
        facts["topical_nsaid"] = bool(set(req.ingredients) & _TOPICAL_NSAIDS)
        facts["topical_capsaicin"] = "capsaicin" in req.ingredients
    if req.modality and reads & _MODALITY_FACTS:
        _modality_facts(case, req, rulebook, facts)
    if req.drug and reads & _MEDICATION_FACTS:
        _medication_facts(case, req, spec, rulebook, facts)
    for name, members in rulebook.any_of_facts.items():
        if name in reads:
            values = [facts.get(m) for m in members]
            if True in values:
                facts[name] = True
            elif all(v is False for v in values):
                facts[name] = False
    return facts


_OPIOID_FACTS = {"opioid_in_use", "opioid_wean_indicated", "morphine_equivalent_total"}
_DOSE_FACTS = {"daily_dose_mg", "acetaminophen_mg_per_day"}
_GI_FACTS = {"concurrent_nsaid", "gi_risk"}
_MODALITY_FACTS = {"pt_myalgia", "pt_neuralgia", "pt_crps", "opioid_prescribed",
                   "months_since_injury", "under_active_treatment", "acupuncture_indicated", "cbt_program"}


_TOPICAL_NSAIDS = {"flurbiprofen", "ketoprofen", "diclofenac", "ibuprofen", "naproxen"}


def _others(case: Case, req: DerivedRequest, rulebook: Rulebook) -> list[tuple[str, str | None, float | None]]:
    """The case's other drugs, each generic once: (generic, strength, units a day). The other
    requests count too: what is asked for together is taken together."""
    meds, requests = _case_drugs(case, rulebook)
    seen: dict[str, tuple[str, str | None, float | None]] = {g: o for g, o in meds.items() if g != req.drug}
    # per generic, the first and last request that is not this same item: the order and the
    # values the loop over every request used to give (linear: a few generics, not n requests)
    found = []
    for g, entries in requests.items():
        if g == req.drug:
            continue
        kept = [(pos, o) for pos, item, o in entries if item != req.item] if entries[0][1] == req.item \
            or entries[-1][1] == req.item else None
        if kept is None:
            found.append((entries[0][0], g, entries[-1][2]))
        elif kept:
            found.append((kept[0][0], g, kept[-1][1]))
    for _, g, o in sorted(found):
        seen[g] = o
    return list(seen.values())


_case_memo: tuple = (None, None, None, None)   # (case, its requests list, rulebook, summary)


def _case_drugs(case: Case, rulebook: Rulebook):
    """Each drug of a case once per evaluation, not once per request (a case of n requests
    was O(n^2)): the medications' generics, and per generic the requests naming it, in order."""
    memo = _case_memo
    if memo[0] is case and memo[1] is case.requests and memo[2] is rulebook:
        return memo[3]
    meds: dict[str, tuple[str, str | None, float | None]] = {}
    for med in case.medications:
        g = medication_generic(med.name, rulebook.drugs)
        if g:
            meds[g] = (g, med.dose, units_per_day(med.dose) if med.dose else None)
    requests: dict[str, list[tuple[int, str, tuple]]] = {}
    for pos, other in enumerate(case.requests):
        parsed = parse_item(other.item, rulebook.drugs)
        g = _generic(rulebook, other.drug or parsed.get("drug"))
        if g:
            requests.setdefault(g, []).append((pos, other.item, (g, other.strength or parsed.get("strength"),
                                                            other.units_per_day or parsed.get("units_per_day"))))
    summary = (meds, requests)
    globals()["_case_memo"] = (case, case.requests, rulebook, summary)
    return summary


_requests_memo: tuple = (None, None, None, None)


def _case_requests(case: Case, rulebook: Rulebook) -> tuple[set[str], dict[str, set[str]]]:
    """Once per case: the items of requests that continue care (prior treatment or visits), and
    the items requested per modality; "another request that ..." is then O(1), not O(n)."""
    memo = _requests_memo
    if memo[0] is case and memo[1] is case.requests and memo[2] is rulebook:
        return memo[3]
    in_care: set[str] = set()
    by_modality: dict[str, set[str]] = {}
    for r in case.requests:
        if r.prior_treatment or (r.prior_sessions or 0) > 0:
            in_care.add(r.item)
        modality = r.modality or parse_item(r.item, rulebook.drugs).get("modality")
        if modality:
            by_modality.setdefault(modality, set()).add(r.item)
    summary = (in_care, by_modality)
    globals()["_requests_memo"] = (case, case.requests, rulebook, summary)
    return summary


def _generic(rulebook: Rulebook, name: str | None) -> str | None:
    return (rulebook.drugs.generic(name) or name) if name else None


def _has_class(rulebook: Rulebook, generic: str, cls: str) -> bool:
    s = rulebook.drugs.spec(generic)
    return bool(s and cls in s.classes)


def _opioid_facts(case: Case, req: DerivedRequest, spec: Any, rulebook: Rulebook, facts: dict[str, Any]) -> None:
    others = [o for o in _others(case, req, rulebook) if _has_class(rulebook, o[0], "opioid")]
    listed = any(_has_class(rulebook, g, "opioid") for g in _case_drugs(case, rulebook)[0])
    if req.prior_treatment is True or listed:
        facts["opioid_in_use"] = True
    elif case.medications:
        facts["opioid_in_use"] = False
    in_use = facts.get("opioid_in_use")
    # the continue criteria (return to work, or better function and pain); else wean
    if in_use is False:
        facts["opioid_wean_indicated"] = False
    elif in_use:
        rtw, fi = case.findings.return_to_work, req.functional_improvement
        relief = case.findings.analgesia_documented
        if rtw is True or (fi is True and relief is True):
            facts["opioid_wean_indicated"] = False
        elif fi is False or relief is False:
            facts["opioid_wean_indicated"] = True
    if case.findings.morphine_equivalent_dose is not None:
        facts["morphine_equivalent_total"] = case.findings.morphine_equivalent_dose
        return
    total = _morphine_mg(spec, req.strength, req.units_per_day)
    for generic, strength, per_day in others:
        part = _morphine_mg(rulebook.drugs.spec(generic), strength, per_day)
        total = None if (total is None or part is None) else total + part
    if total is not None:
        facts["morphine_equivalent_total"] = round(total)


def _morphine_mg(spec: Any, strength: str | None, per_day: float | None) -> float | None:
    """Daily oral morphine mg of one opioid: strength x units a day (as directed, else the
    usual) x the conversion factor; None when any of them is unknown."""
    mg = strength_mg(strength)
    if spec is None or spec.morphine_equivalent is None or not mg:
        return None
    return mg[0] * (per_day or spec.daily_units) * spec.morphine_equivalent


def _dose_facts(req: DerivedRequest, spec: Any, facts: dict[str, Any]) -> None:
    mg = strength_mg(req.strength)
    if not mg or spec is None:
        return
    per_day = req.units_per_day or spec.daily_units
    facts["daily_dose_mg"] = round(mg[0] * per_day, 1)
    if "acetaminophen" in (req.drug or "") and len(mg) == 2:
        facts["acetaminophen_mg_per_day"] = round(mg[1] * per_day, 1)


def _gi_facts(case: Case, req: DerivedRequest, rulebook: Rulebook, facts: dict[str, Any]) -> None:
    # a topical NSAID (a strength in %) is neither the NSAID a PPI protects against nor a second NSAID
    nsaids = {o[0] for o in _others(case, req, rulebook)
              if _has_class(rulebook, o[0], "nsaid") and not (o[1] and "%" in o[1])}
    if nsaids:
        facts["concurrent_nsaid"] = True
    elif case.medications:
        facts["concurrent_nsaid"] = False
    factors, age = case.findings.gi_risk_factors, case.patient.age
    if (age is not None and age > 65) or factors or len(nsaids) >= 2:
        facts["gi_risk"] = True
    elif factors is not None and age is not None:
        facts["gi_risk"] = False


def _opioid_prescribed(case: Case, rulebook: Rulebook, facts: dict[str, Any]) -> bool:
    """opioid_prescribed: an opioid is listed or requested (the case's drugs are read once per
    case, so this stays linear in requests). Returns whether one is listed."""
    meds, requested = _case_drugs(case, rulebook)
    listed = any(_has_class(rulebook, g, "opioid") for g in meds)
    if listed or any(_has_class(rulebook, g, "opioid") for g in requested):
        facts["opioid_prescribed"] = True
    elif case.medications:
        facts["opioid_prescribed"] = False
    return listed


def _months_since_injury(case: Case) -> int | None:
    if not (case.injury_date and case.request_date):
        return None
    a, b = case.injury_date, case.request_date
    return (b.year - a.year) * 12 + b.month - a.month - (b.day < a.day)


def _modality_facts(case: Case, req: DerivedRequest, rulebook: Rulebook, facts: dict[str, Any]) -> None:
    if req.diagnosis_type is not None:
        facts["pt_myalgia"] = req.diagnosis_type == "myalgia_myositis"
        facts["pt_neuralgia"] = req.diagnosis_type == "neuralgia_neuritis_radiculitis"
        facts["pt_crps"] = req.diagnosis_type == "crps"
    f = case.findings
    _opioid_prescribed(case, rulebook, facts)
    months = _months_since_injury(case)
    if months is not None:
        facts["months_since_injury"] = months
    in_care, by_modality = _case_requests(case, rulebook)

    def other_item(items: set[str]) -> bool:  # another request's item (not this same item) is in items
        return len(items) > 1 or (bool(items) and req.item not in items)
    # a follow-up visit monitors care in progress: listed medications, or another request that continues care
    if case.medications or other_item(in_care):
        facts["under_active_treatment"] = True
    # acupuncture: an option when pain medication is reduced or not tolerated, or an adjunct to
    # physical rehabilitation or surgery
    rehab = {"physical_therapy", "home_exercise"} & set(f.first_line_tried or [])
    concurrent = any(other_item(by_modality.get(m, set()))
                     for m in ("physical_therapy", "chiropractic", "aquatic_therapy"))
    if (rehab or concurrent or f.active_exercise_program or f.surgery_considered
            or getattr(f, "oral_medication_intolerance", None)):
        facts["acupuncture_indicated"] = True
    # biofeedback: an option within a cognitive behavioral therapy program, not stand-alone
    if other_item(by_modality.get("psych", set())):
        facts["cbt_program"] = True


# medication families (rules/vocabulary/facts-medication.yaml)
_MEDICATION_FACTS = {"opioid_acute_injury", "opioid_post_operative", "opioid_initiation", "opioid_maintenance",
                     "opioid_meaningful_improvement", "opioid_monitoring", "opioid_prescribed",
                     "opioid_post_operative_continued", "opioid_acute_injury_continued",
                     "opioid_untapered_days", "continued_use"}
_SEVERE_INJURY = re.compile(r"fractur|crush|amputat|burn|dislocat", re.I)
_POST_OP = re.compile(r"\bpost[- ]?op", re.I)


def _medication_facts(case: Case, req: DerivedRequest, spec: Any, rulebook: Rulebook, facts: dict[str, Any]) -> None:
    f = case.findings
    # continued use of this drug: prior use documented, or a duration of use already recorded
    weeks = req.prior_use_weeks
    if req.prior_treatment is True or (weeks is not None and weeks > 0):
        facts["continued_use"] = True
    elif req.prior_treatment is False or weeks == 0:
        facts["continued_use"] = False
    listed = _opioid_prescribed(case, rulebook, facts)
    if not (spec and "opioid" in spec.classes):
        return
    months = _months_since_injury(case)
    severe = f.severe_acute_injury
    if severe is None:
        severe = any(_SEVERE_INJURY.search(d) for d in case.diagnoses)
    acute = bool(severe) and (months is None or months < 3)
    post_op = f.post_operative is True or bool(_POST_OP.search(req.item or ""))
    in_use = req.prior_treatment is True or listed
    facts["opioid_acute_injury"] = acute
    facts["opioid_post_operative"] = post_op
    facts["opioid_initiation"] = not in_use and not acute and not post_op
    facts["opioid_maintenance"] = in_use and not acute and not post_op
    facts["opioid_post_operative_continued"] = in_use and post_op
    facts["opioid_acute_injury_continued"] = in_use and acute and not post_op
    relief, fi = f.analgesia_documented, req.functional_improvement
    if relief is True and (fi is True or f.return_to_work is True):
        facts["opioid_meaningful_improvement"] = True
        facts["opioid_untapered_days"] = 0
    elif relief is False or fi is False:
        facts["opioid_meaningful_improvement"] = False
        if "supply_days" in facts:
            facts["opioid_untapered_days"] = facts["supply_days"]
    checks = (f.urine_drug_screen_consistent is not None, f.aberrant_behavior_screened, f.cures_reviewed,
              f.opioid_agreement)
    if any(c is True for c in checks):
        facts["opioid_monitoring"] = True
    elif f.aberrant_behavior_screened is False or f.cures_reviewed is False:
        facts["opioid_monitoring"] = False


def _show(value: Any) -> str:
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, list):
        return ", ".join(str(v) for v in value)
    return str(value)


class Engine:
    """A rulebook compiled into durable_rules, ready to evaluate cases. Thread-safe."""

    def __init__(self, rulebook: Rulebook | None = None):
        self.rulebook = rulebook or load_rulebook()
        self.compiled: CompiledRulebook = compile_rulebook(self.rulebook)
        self._rulesets = [RulesetHandle(f.name, f.definition) for f in self.compiled.families]
        self._rule_order = {r.id: n for n, r in enumerate(self.rulebook.rules)}
        self.edition: str | None = None     # pinned by under_edition()

    def under_edition(self, edition: str | None) -> "Engine":
        """This engine, evaluating every case under a named edition (what-if, batch, service).
        Shares the compiled rules; None gives back the engine that goes by request dates."""
        if edition is None:
            return self
        self.rulebook.edition(edition)  # an unknown id is bad input, raised here
        pinned = copy.copy(self)
        pinned.edition = edition
        return pinned

    # ---------------------------------------------------------------- public
    def evaluate(self, case: Case, edition: str | None = None) -> CaseDetermination:
        """Determinations under the edition in effect on the request date, or under the
        edition named (for requests no edition covers, such as today's); the output says which."""
        rb = self.rulebook
        edition = edition or self.edition
        if edition is not None:
            chosen = rb.edition(edition)
            basis = (f"edition {chosen.id} chosen by the user, not in effect on the request date "
                     f"{case.request_date or '(none documented)'}")
        else:
            chosen = rb.edition_for(case.request_date)
            basis = (f"request date {case.request_date}" if case.request_date else
                     "no request date documented: judged under the newest edition")
        determinations = []
        for idx in range(len(case.requests)):
            fields, provenance = derive_request(case, idx, rb.drugs)
            req = DerivedRequest.of(fields)
            if chosen is None:
                spans = ", ".join(f"{e.id} {e.effective_from} to {e.effective_until or 'now'}"
                                  for e in rb.manifest.editions)
                determinations.append(self._no_rule(
                    req, f"no rulebook edition is in effect on the request date {case.request_date} "
                         f"(editions: {spans}); name one with --edition to evaluate anyway"))
                continue
            day = None if edition is not None else case.request_date
            determinations.append(self._evaluate_request(case, req, provenance, chosen, day))
        return CaseDetermination(
            case_id=case.id,
            rulebook=RulebookRef(edition=chosen.id if chosen else None, version=rb.version,
                                 digest=rb.digest, edition_basis=basis, edition_chosen=edition is not None),
            determinations=determinations)

    def fire(self, case: Case, index: int = 0) -> list[str]:
        """Names of the durable rules that fire for one request (for --explain and tests)."""
        fields, _ = derive_request(case, index, self.rulebook.drugs)
        return self._fire(request_facts(case, DerivedRequest.of(fields), self.rulebook))

    def _fire(self, facts: dict[str, Any]) -> list[str]:
        fired: list[str] = []
        # a family holds every rule that can match this fact; no family, no rule can
        for i in self.compiled.families_for(facts):
            # only the keys some rule reads cross into durable_rules: less JSON, smaller facts
            used = self.compiled.families[i].request_keys
            fired += self._rulesets[i].evaluate([{k: v for k, v in facts.items() if k in used}],
                                                lambda f: chained_facts(self.compiled, f))
        return fired

    # -------------------------------------------------------------- internals
    def _evaluate_request(self, case: Case, req: DerivedRequest, provenance: dict[str, str],
                          edition: Edition, day: Any) -> Determination:
        facts = request_facts(case, req, self.rulebook)
        return self.determine(facts, req, provenance, edition, day)

    def determine(self, facts: dict[str, Any], req: dict[str, Any] | None = None,
                  provenance: dict[str, str] | None = None, edition: Edition | str | None = None,
                  request_date: Any = None) -> Determination:
        """The determination for one request fact (as request_facts builds it).

        The entry point below case handling: the oracle tests compare it with an independent
        evaluator over the whole fact vocabulary.
        """
        req = req if isinstance(req, DerivedRequest) else DerivedRequest.of(req or {"item": "<facts>", **{
            k: v for k, v in facts.items() if k in ("drug", "modality", "quantity", "refills", "sessions")}})
        if not isinstance(edition, Edition):
            edition = self.rulebook.edition(edition) if edition else self.rulebook.manifest.editions[-1]
        fired = self._fire(facts)
        actions = [self.compiled.actions[name] for name in fired]
        applied = {a.rule_id for a in actions if a.kind == "applies"}
        if not applied:
            return self._no_rule(req, self._why_no_rule(req))
        order = self._rule_order
        parts = {r.id: p for r in map(self.rulebook.by_id.__getitem__, applied)
                 if (p := r.part_in(edition, request_date))}
        rules = sorted((self.rulebook.by_id[i] for i in parts), key=lambda r: order[r.id])
        if not rules:
            return self._no_rule(req, f"the rules that cover this item belong to no guideline part of "
                                      f"{edition.id} in effect on {request_date or 'the date chosen'}")
        states: dict[tuple[str, str], tuple[str, bool]] = {}
        for a in actions:
            if a.kind == "criterion":
                key = (a.rule_id, a.criterion_id)
                # durable_rules activates a rule once per satisfied $or branch: a repeat of the
                # same state is expected, two different states are a compiler bug
                if states.get(key, (a.state, a.assumed)) != (a.state, a.assumed):
                    raise EngineError(f"criterion {key} matched two states")
                states[key] = (a.state, a.assumed)
        certified = {a.rule_id for a in actions if a.kind == "certify"}
        return self._decide(req, facts, provenance or {}, rules, states, certified, parts)

    def _decide(self, req: DerivedRequest, facts: dict, provenance: dict[str, str], rules: list[Rule],
                states: dict[tuple[str, str], tuple[str, bool]], certified: set[str],
                parts: dict[str, str]) -> Determination:
        criteria: list[CriterionResult] = []
        decision = "certify"
        modify_supply: list[int] = []
        modify_sessions: list[int] = []
        missing: list[str] = []
        for rule in rules:
            rule_decision = "certify"
            blocking: list[Criterion] = []
            for crit in rule.criteria:
                found = states.get((rule.id, crit.id))
                if found is None:
                    raise EngineError(f"no state matched for criterion {rule.id}/{crit.id}")
                state, assumed = found
                value = self._fact_value(crit, facts)
                if assumed:
                    value = crit.assumed.assume
                criteria.append(CriterionResult(
                    rule=rule.id, criterion=crit.id, asks=crit.asks, fact=crit.fact, value=value,
                    source="assumed" if assumed else self._source(crit.fact, provenance),
                    test=crit.test.description, state=state, decisive=crit.decisive,
                    finding=self._finding(crit, state, value, assumed),
                    assumed=crit.assumed.because if assumed else None))
                if crit.decisive and state in (FAILED, UNDOCUMENTED):
                    blocking.append(crit)
                    if state == UNDOCUMENTED or (state == FAILED and self._documentable(crit)):
                        if crit.missing not in missing:
                            missing.append(crit.missing)
            if rule.recommendation == "not-recommended":
                rule_decision = "non-certify"
            elif blocking:
                if all(c.on_failure == "modify" and states[(rule.id, c.id)][0] == FAILED for c in blocking):
                    rule_decision = "modify"
                    for c in blocking:
                        if c.modify and c.modify.supply_days:
                            modify_supply.append(c.modify.supply_days)
                        if c.modify and c.modify.sessions:
                            modify_sessions.append(c.modify.sessions)
                else:
                    rule_decision = "non-certify"
            # the certify join in durable_rules and the criterion states must agree
            if (rule.id in certified) != (rule.recommendation == "recommended" and not blocking):
                raise EngineError(f"rule {rule.id}: certify join disagrees with criterion states")
            if SEVERITY[rule_decision] > SEVERITY[decision]:
                decision = rule_decision
        if decision == "non-certify" and any(r.recommendation == "not-recommended" for r in rules):
            missing = []  # nothing the records could show changes a not-recommended agent
        modified = None
        if decision == "modify":
            modified = self._modified(req, facts, modify_supply, modify_sessions)
            if modified.sessions == 0:   # UR already certified all the guideline allows
                decision, modified = "non-certify", None
        citations = self._citations(rules, parts)
        rationale = self._rationale(req, rules, criteria, decision, modified, parts)
        return Determination(
            request=req.item, decision=decision, medically_necessary=decision == "certify",
            rationale=rationale, citations=citations, rules_fired=[r.id for r in rules],
            criteria=criteria, missing_documentation=missing, modified_request=modified)

    def _source(self, fact: str, provenance: dict[str, str]) -> str | None:
        if fact in provenance:
            return provenance[fact]
        spec = self.rulebook.facts.get(fact)
        return spec.source if spec else None

    def _documentable(self, crit: Criterion) -> bool:
        """Could more documentation turn this failed criterion around? Not when the request
        itself names what is excluded (a compound's ingredients, a knee for manipulation)."""
        if crit.test.op == "excludes":
            return False
        spec = self.rulebook.facts.get(crit.fact)
        return spec is not None and spec.type in ("boolean", "list") and spec.source != "derived"

    @staticmethod
    def _fact_value(crit: Criterion, facts: dict) -> Any:
        if crit.test.op == "includes":
            return facts.get(flag(crit.fact, crit.test.includes))
        if crit.test.op == "excludes":
            present = [v for v in crit.test.excludes if facts.get(flag(crit.fact, v))]
            known = any(flag(crit.fact, v) in facts for v in crit.test.excludes)
            return present if known else None
        return facts.get(crit.fact)

    @staticmethod
    def _finding(crit: Criterion, state: str, value: Any, assumed: bool = False) -> str:
        if assumed:
            # say what was missing and what the rule took it to mean
            text = crit.met if state == MET else (crit.failed or crit.met)
            text = text.replace("{value}", _show(value))
            return f"the records do not document {crit.missing}, read as {_show(value)} ({crit.assumed.because}): {text}"
        if state == MET:
            text = crit.met
        elif state == FAILED:
            text = crit.failed or crit.met
        elif state == UNDOCUMENTED:
            text = f"the records do not document {crit.missing}"
        else:
            text = f"not applicable ({crit.when.fact} is {str(not crit.when.equals).lower()})" if crit.when else "not applicable"
        if "{value}" not in text:
            return text
        return text.replace("{value}", _show(value) if value is not None else "an unknown number of")

    def _modified(self, req: DerivedRequest, facts: dict, supply: list[int], sessions: list[int]) -> ModifiedRequest:
        if sessions:
            # the guideline's count less the visits UR already certified from the same request
            n = max(min(sessions) - (req.authorized_sessions or 0), 0)
            return ModifiedRequest(item=f"{req.item} (modified to {n} visits)", sessions=n)
        days = min(supply)
        spec = self.rulebook.drugs.spec(req.drug or "")
        qty = math.floor(days * spec.daily_units) if spec else None
        return ModifiedRequest(item=f"{req.item} (modified to #{qty}, no refills: {days} days)",
                               quantity=qty, refills=0)

    @staticmethod
    def _citations(rules: list[Rule], cited: dict[str, str]) -> list[CitationOut]:
        seen, out = set(), []
        for rule in rules:
            for c in rule.citations(cited[rule.id]):
                key = (c.guideline, c.section, c.pages)
                if key not in seen:
                    seen.add(key)
                    out.append(CitationOut(c.guideline, c.section, c.pages, c.certainty, c.part))
        return out

    @staticmethod
    def _rationale(req: DerivedRequest, rules: list[Rule], criteria: list[CriterionResult], decision: str,
                   modified: ModifiedRequest | None, cited: dict[str, str]) -> str:
        parts = []
        for rule in rules:
            c = rule.parts[cited[rule.id]]
            where = f"{c.section}" + (f", page(s) {c.pages}" if c.pages else "")
            parts.append(f"{c.guideline} ({where}): {rule.recommends}")
        for rule in rules:
            part = cited[rule.id]
            for extra in rule.also_cites:
                if extra.for_:
                    pages = extra.pages.get(part)
                    parts.append(f"{extra.section}" + (f" (page {pages})" if pages else "")
                                 + f": {extra.for_}.")
        decisive = [c for c in criteria if c.decisive and c.state != NOT_APPLICABLE]
        def unique(items: list[str]) -> list[str]:
            return list(dict.fromkeys(items))

        met = unique([c.finding for c in decisive if c.state == MET])
        failed = unique([c.finding for c in decisive if c.state == FAILED])
        undocumented = unique([c.finding for c in decisive if c.state == UNDOCUMENTED])
        cautions = unique([c.finding for c in criteria if not c.decisive and c.state == FAILED])
        case_bits = []
        if met:
            case_bits.append("; ".join(met))
        if failed:
            case_bits.append(("however, " if met else "") + "; ".join(failed))
        if undocumented:
            case_bits.append("; ".join(undocumented))
        if case_bits:
            parts.append("In this case, " + "; ".join(case_bits) + ".")
        if cautions:
            parts.append("Also noted: " + "; ".join(cautions) + ".")
        if any(r.recommendation == "not-recommended" for r in rules):
            names = ", ".join(r.parts[cited[r.id]].section for r in rules if r.recommendation == "not-recommended")
            parts.append(f"The guideline does not recommend this agent ({names}); no documentation would make it medically necessary.")
        if decision == "certify":
            parts.append(f"The criteria are met. Therefore, the request for {req.item} is medically necessary.")
        elif decision == "modify":
            parts.append(f"The request for {req.item} is not medically necessary as written; "
                         f"a modification to {modified.item.split(' (modified to ')[1].rstrip(')')} is supported.")
        else:
            parts.append(f"Therefore, the request for {req.item} is not medically necessary.")
        return " ".join(p.strip() for p in parts)

    def _why_no_rule(self, req: DerivedRequest) -> str:
        if req.drug:
            spec = self.rulebook.drugs.spec(req.drug)
            classes = f" (class: {', '.join(spec.classes)})" if spec else " (not in the drug vocabulary)"
            return (f"no rule in the rulebook covers {req.drug}{classes}; the MTUS rules encoded here do "
                    f"not address it, and reviewers then turn to other guidelines such as ODG, which "
                    f"this rulebook does not encode")
        if req.modality:
            return f"no rule in the rulebook covers {req.modality.replace('_', ' ')}"
        return ("the item names no drug in the drug vocabulary and no treatment modality the rulebook "
                "knows, so no rule applies")

    def _no_rule(self, req: DerivedRequest, reason: str) -> Determination:
        return Determination(
            request=req.item, decision="no-rule", medically_necessary=None,
            rationale=f"No determination: {reason}. The engine does not guess.",
            citations=[], rules_fired=[], criteria=[], missing_documentation=[], reason=reason)


_default: Engine | None = None
_by_rules_dir: dict[str | None, Engine] = {}


def process_engine(rules_dir: str | None = None) -> Engine:
    """One engine per worker process and rulebook directory: compiling once, not per task."""
    engine = _by_rules_dir.get(rules_dir)
    if engine is None:
        engine = _by_rules_dir[rules_dir] = Engine(load_rulebook(rules_dir))
    return engine


def default_engine() -> Engine:
    global _default
    if _default is None:
        _default = Engine()
    return _default


def evaluate(case: Case, engine: Engine | None = None) -> CaseDetermination:
    return (engine or default_engine()).evaluate(case)
