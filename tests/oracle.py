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
    a = rule.applies_to
    if "drug" in facts and facts["drug"] in a.drugs:
        return True
    if any(facts.get(f"drug_class__{c}") is True for c in a.classes):
        return True
    return "modality" in facts and facts["modality"] in a.modalities


def _compare(op: str, value: Any, limit: float) -> bool:
    return {"lt": value < limit, "lte": value <= limit, "gt": value > limit, "gte": value >= limit}[op]


def criterion_state(c: Criterion, facts: dict[str, Any]) -> str:
    if c.when is not None:
        if c.when.fact not in facts:
            return "not documented"
        if facts[c.when.fact] != c.when.equals:
            return "not applicable"
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


def evaluate(rulebook: Rulebook, facts: dict[str, Any]) -> OracleAnswer:
    applicable = [r for r in rulebook.rules if _applies(r, facts)]
    if not applicable:
        return OracleAnswer("no-rule", [], [], [])
    decision = "certify"
    states = []
    for rule in applicable:
        blocking = []
        for c in rule.criteria:
            st = criterion_state(c, facts)
            states.append((rule.id, c.id, st))
            if c.decisive and st in ("failed", "not documented"):
                blocking.append((c, st))
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
        for section, pages in [(rule.citation.section, rule.citation.pages),
                               *[(x.section, x.pages) for x in rule.also_cites]]:
            if (section, pages) not in citations:
                citations.append((section, pages))
    return OracleAnswer(decision, [r.id for r in applicable], states, citations)
