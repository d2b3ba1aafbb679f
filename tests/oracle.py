"""An independent evaluator of the rulebook, for tests only; never used in production.

It reads the rule files' criteria directly and evaluates them over a request fact in plain
Python, sharing nothing with the durable_rules compiler but the fact representation (list
facts as ``<fact>__<value>`` flags, absent keys for facts the records do not document).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from mtus_engine.rulebook import Criterion, Rule, Rulebook

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
    return _compare(op, value, operand)


def criterion_state(c: Criterion, facts: dict[str, Any]) -> str:
    """met | failed | not documented | not applicable; a rule's default for a silent record
    gives "met (assumed)" or "failed (assumed)"."""
    if c.when is not None:
        guard = facts.get(c.when.fact)
        if c.when.fact not in facts:
            if c.when.if_undocumented == "required":
                return "not documented"
            guard = c.when.if_undocumented.assume
        if guard != c.when.equals:
            return "not applicable"
    state = _own_state(c, facts)
    if state == "not documented" and c.if_undocumented != "required":
        held = _holds(c.test.op, c.test.operand, c.if_undocumented.assume)
        return ("met" if held else "failed") + " (assumed)"
    return state


def _own_state(c: Criterion, facts: dict[str, Any]) -> str:
    op, operand = c.test.op, c.test.operand
    if op == "includes":
        key = f"{c.fact}__{operand}"
        if key not in facts:
            return "not documented"
        return "met" if facts[key] else "failed"
    if op == "excludes":
        keys = [f"{c.fact}__{v}" for v in operand]
        if keys[0] not in facts:
            return "not documented"
        return "failed" if any(facts.get(k) is True for k in keys) else "met"
    if c.fact not in facts:
        return "not documented"
    value = facts[c.fact]
    if op == "documented":
        return "met"
    if op == "equals":
        return "met" if value == operand else "failed"
    return "met" if _compare(op, value, operand) else "failed"


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
