"""Compile a rulebook into durable_rules ruleset definitions.

For every rule: one durable rule that fires when the rule applies to the request, and for
every criterion one durable rule per state (met, failed, not documented, not applicable).
A second stage chains from those conclusions: ``<rule>|certify`` joins the criterion facts
that stage one asserted, and fires only when every decisive criterion is met. Rule text
(rationale, citations) stays beside the ruleset, keyed by rule name, never inside it.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any

from .rulebook import Criterion, Rule, Rulebook

MET, FAILED, UNDOCUMENTED, NOT_APPLICABLE = "met", "failed", "not documented", "not applicable"
OK_STATES = (MET, NOT_APPLICABLE)
_STATE_SUFFIX = {MET: "met", FAILED: "failed", UNDOCUMENTED: "undocumented", NOT_APPLICABLE: "na"}


@dataclass(frozen=True)
class Action:
    """What a fired durable rule means."""

    rule_id: str
    kind: str                       # applies | criterion | certify
    criterion_id: str | None = None
    state: str | None = None


def flag(fact: str, value: str) -> str:
    """Key of a list fact's member flag, e.g. first_line_tried__nsaid."""
    return f"{fact}__{value}"


def _test_conditions(crit: Criterion) -> dict[str, list[list[dict]]]:
    """Conditions (each a list to AND) per state, for the test alone."""
    t, f = crit.test, crit.fact
    op, v = t.op, t.operand
    if op == "documented":
        return {MET: [[{"$ex": {f: 1}}]], UNDOCUMENTED: [[{"$nex": {f: 1}}]]}
    if op == "equals":
        return {MET: [[{f: v}]], FAILED: [[{f: not v}]], UNDOCUMENTED: [[{"$nex": {f: 1}}]]}
    if op in ("lt", "lte", "gt", "gte"):
        negation = {"lt": "$gte", "lte": "$gt", "gt": "$lte", "gte": "$lt"}[op]
        return {MET: [[{f"${op}": {f: v}}]], FAILED: [[{negation: {f: v}}]],
                UNDOCUMENTED: [[{"$nex": {f: 1}}]]}
    if op == "includes":
        key = flag(f, v)
        return {MET: [[{key: True}]], FAILED: [[{key: False}]], UNDOCUMENTED: [[{"$nex": {key: 1}}]]}
    if op == "excludes":
        keys = [flag(f, x) for x in v]
        return {MET: [[{k: False} for k in keys]],
                FAILED: [[{"$or": [{k: True} for k in keys]}]],
                UNDOCUMENTED: [[{"$nex": {keys[0]: 1}}]]}
    raise ValueError(f"unknown test {op}")


def _criterion_conditions(crit: Criterion) -> dict[str, list[list[dict]]]:
    states = _test_conditions(crit)
    if crit.when is None:
        return states
    g, want = crit.when.fact, crit.when.equals
    guarded = {s: [[{g: want}, *conj] for conj in conjs] for s, conjs in states.items()}
    guarded.setdefault(UNDOCUMENTED, []).append([{"$nex": {g: 1}}])
    guarded[NOT_APPLICABLE] = [[{g: not want}]]
    return guarded


def _applies(rule: Rule) -> dict:
    options: list[dict] = []
    options += [{"drug": d} for d in rule.applies_to.drugs]
    options += [{flag("drug_class", c): True} for c in rule.applies_to.classes]
    options += [{"modality": m} for m in rule.applies_to.modalities]
    return options[0] if len(options) == 1 else {"$or": options}


def _pattern(*conditions: dict) -> dict:
    return {"m": {"$and": [{"kind": "request"}, *conditions]}}


@dataclass
class CompiledRulebook:
    name: str
    definition: dict[str, Any]
    actions: dict[str, Action]
    rulebook: Rulebook


def compile_rulebook(rulebook: Rulebook) -> CompiledRulebook:
    definition: dict[str, Any] = {}
    actions: dict[str, Action] = {}

    def add(name: str, spec: dict, action: Action) -> None:
        assert name not in definition, name
        definition[name] = spec
        actions[name] = action

    for rule in rulebook.rules:
        applies = _applies(rule)
        add(f"{rule.id}|applies", {"all": [_pattern(applies)]}, Action(rule.id, "applies"))
        for crit in rule.criteria:
            for state, conjunctions in _criterion_conditions(crit).items():
                for n, conj in enumerate(conjunctions):
                    name = f"{rule.id}|{crit.id}|{_STATE_SUFFIX[state]}" + (f"|{n}" if n else "")
                    add(name, {"all": [_pattern(applies, *conj)]},
                        Action(rule.id, "criterion", crit.id, state))
        if rule.recommendation == "recommended":
            joins = [{"a": {"$and": [{"kind": "applies"}, {"rule": rule.id}]}}]
            for k, crit in enumerate(c for c in rule.criteria if c.decisive):
                joins.append({f"c{k}": {"$and": [
                    {"kind": "criterion"}, {"rule": rule.id}, {"criterion": crit.id},
                    {"$or": [{"state": s} for s in OK_STATES]}]}})
            add(f"{rule.id}|certify", {"all": joins}, Action(rule.id, "certify"))
    content = json.dumps(definition, sort_keys=True).encode()
    # one immutable ruleset name per rulebook version and content
    name = f"mtus-{rulebook.version}-{hashlib.sha256(content).hexdigest()[:12]}"
    return CompiledRulebook(name, definition, actions, rulebook)


def chained_facts(compiled: CompiledRulebook, fired: list[str]) -> list[dict]:
    """Stage two's input: stage one's conclusions that a certify join can use."""
    out = []
    for name in fired:
        act = compiled.actions[name]
        rule = compiled.rulebook.by_id[act.rule_id]
        if rule.recommendation != "recommended":
            continue
        if act.kind == "applies":
            out.append({"kind": "applies", "id": f"a:{act.rule_id}", "rule": act.rule_id})
        elif act.kind == "criterion" and act.state in OK_STATES:
            crit = next(c for c in rule.criteria if c.id == act.criterion_id)
            if crit.decisive:
                out.append({"kind": "criterion", "id": f"c:{act.rule_id}:{act.criterion_id}",
                            "rule": act.rule_id, "criterion": act.criterion_id, "state": act.state})
    return out
