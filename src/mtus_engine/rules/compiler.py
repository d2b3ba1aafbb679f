"""Compile a rulebook into durable_rules ruleset definitions.

For every rule: one durable rule that fires when the rule applies to the request, and for
every criterion one durable rule per state (met, failed, not documented, not applicable).
A second stage chains from those conclusions: stage one's results for a rule are asserted as
one conclusions fact, and ``<rule>|certify`` fires only when it flags every decisive criterion
met (or not applicable). Rule text
(rationale, citations) stays beside the ruleset, keyed by rule name, never inside it.
"""

from __future__ import annotations

import gc
import hashlib
import json
import pickle
from dataclasses import dataclass
from functools import cached_property
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
    assumed: bool = False           # the state comes from the rule's default for a silent record


def flag(fact: str, value: str) -> str:
    """Key of a list fact's member flag, e.g. first_line_tried__nsaid."""
    return f"{fact}__{value}"


def _test_conditions(crit: Criterion) -> dict[str, list[list[dict]]]:
    """Conditions (each a list to AND) per state, for the test alone."""
    return _conditions(crit.fact, crit.test)


def _conditions(f: str, t: Any) -> dict[str, list[list[dict]]]:
    """Conditions per state of one test over one fact (a criterion's, or a when: guard's)."""
    op, v = t.op, t.operand
    if op == "documented":
        return {MET: [[{"$ex": {f: 1}}]], UNDOCUMENTED: [[{"$nex": {f: 1}}]]}
    if op in ("equals", "not_equals"):
        if isinstance(v, bool):
            same, other = [{f: v}], [{f: not v}]
        else:   # a string: "not this value" only where the fact is there
            same, other = [{f: v}], [{"$ex": {f: 1}}, {"$neq": {f: v}}]
        if op == "not_equals":
            same, other = other, same
        return {MET: [same], FAILED: [other], UNDOCUMENTED: [[{"$nex": {f: 1}}]]}
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


def test_holds(test: Any, value: Any) -> bool:
    """A test applied to a plain value (compile-time: a rule's assumed default)."""
    op, v = test.op, test.operand
    if op == "documented":
        return value is not None
    if op == "equals":
        return value == v
    if op == "not_equals":
        return value != v
    if op == "includes":
        return v in value
    if op == "excludes":
        return not set(v) & set(value)
    return {"lt": value < v, "lte": value <= v, "gt": value > v, "gte": value >= v}[op]


Key = tuple[str, bool]   # (state, assumed)


def _criterion_conditions(crit: Criterion) -> dict[Key, list[list[dict]]]:
    """Conditions (each a list to AND) per state. A silent record is "not documented", or,
    where the rule gives a default, the state the default yields (marked assumed)."""
    raw = _test_conditions(crit)
    states: dict[Key, list[list[dict]]] = {}
    for state, conjs in raw.items():
        if state == UNDOCUMENTED and crit.assumed is not None:
            holds = test_holds(crit.test, crit.assumed.assume)
            states.setdefault((MET if holds else FAILED, True), []).extend(conjs)
        else:
            states.setdefault((state, False), []).extend(conjs)
    if crit.when is None:
        return states
    gconds = _conditions(crit.when.fact, crit.when.test)
    guarded = {k: [[*g, *conj] for g in gconds[MET] for conj in conjs] for k, conjs in states.items()}
    guarded[(NOT_APPLICABLE, False)] = list(gconds.get(FAILED, []))
    silent = gconds[UNDOCUMENTED]
    applies = crit.when.applies_when_undocumented()
    if applies is None:          # required: the guard's fact must be documented
        guarded.setdefault((UNDOCUMENTED, False), []).extend(silent)
    elif applies:                # taken as applicable: the criterion's own states decide
        for k, conjs in states.items():
            guarded.setdefault(k, []).extend([*g, *conj] for g in silent for conj in conjs)
    else:
        guarded[(NOT_APPLICABLE, False)].extend(silent)
    return guarded


def _applies(rule: Rule) -> dict:
    options: list[dict] = []
    a = rule.applies_to
    options += [{"drug": d} for d in a.drugs]
    options += [{flag("drug_class", c): True} for c in a.classes]
    modalities = [{"modality": m} for m in a.modalities]
    if a.regions:
        # one flat alternative per (modality, region): durable_rules 2.0.28 corrupts memory on
        # a $or nested inside an $and once a family holds several such rules
        modalities = [{"$and": [m, {flag("body_region", r): True}]} for m in modalities for r in a.regions]
    options += modalities
    return options[0] if len(options) == 1 else {"$or": options}


def _pattern(*conditions: dict) -> dict:
    return {"m": {"$and": [{"kind": "request"}, *conditions]}}


class _Pickled:
    """Fields kept pickled, as bytes, inside the start-up cache's pickle, each unpickled when
    first read: a start reads the definitions of the one or two families its case needs, not
    those of the whole rulebook (unpickling them all was ~5 ms a start, growing with the rules)."""

    _pickled: tuple[str, ...] = ()

    def __getstate__(self) -> dict[str, Any]:
        state = {k: v for k, v in self.__dict__.items() if not k.startswith("_blob_")}
        for name in self._pickled:
            blob = self.__dict__.get("_blob_" + name)
            state[name] = _Blob(blob if name not in self.__dict__ and blob is not None else
                                pickle.dumps(getattr(self, name), pickle.HIGHEST_PROTOCOL))
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        for name in self._pickled:
            if isinstance(state.get(name), _Blob):
                state["_blob_" + name] = state.pop(name).data
        self.__dict__.update(state)

    def __getattr__(self, name: str) -> Any:
        # only for a field not unpickled yet (an attribute found is never looked up here);
        # two threads may both unpickle it: equal values, the last one kept
        blob = self.__dict__.get("_blob_" + name) if name in self._pickled else None
        if blob is None:
            raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")
        value = self.__dict__[name] = pickle.loads(blob)
        return value


class _Blob:
    """A field's pickle, inside the outer pickle (bytes, read back without building anything)."""

    __slots__ = ("data",)

    def __init__(self, data: bytes) -> None:
        self.data = data

    def __reduce__(self):
        return (_Blob, (self.data,))


@dataclass
class Family(_Pickled):
    """Rules that can apply to the same request, compiled into one durable_rules ruleset."""

    _pickled = ("definition",)

    name: str
    rule_ids: list[str]
    definition: dict[str, Any]
    request_keys: frozenset[str]      # request-fact keys these rules read
    rule_keys: dict[str, frozenset[str]] = None   # per rule, the fact keys its durable rules read


@dataclass
class CompiledRulebook(_Pickled):
    _pickled = ("definition",)
    name: str
    definition: dict[str, Any]         # every family's rules, for inspection
    actions: dict[str, Action]
    rulebook: Rulebook
    families: list[Family]
    by_drug: dict[str, int]            # generic drug -> family index
    by_modality: dict[str, int]
    by_class: dict[str, int] = None    # drug class -> family index
    chain_table: dict[str, tuple[str, str | None] | None] = None   # fired rule name -> its part of stage two's facts

    def classes_on(self, facts: dict[str, Any]) -> frozenset[str]:
        """The drug-class flags some rule names that this request fact sets true: with its drug
        and modality, what picks its families and which of their rules can apply."""
        return frozenset(key for key in self._class_flags.keys() & facts.keys() if facts[key] is True)

    def families_for(self, facts: dict[str, Any]) -> list[int]:
        """Indices of every family with a rule that could match this request fact (usually one)."""
        # the class flags the fact carries, by one key-set intersection rather than a look-up
        # per class (the result is sorted, so the set's order does not matter)
        flags = self._class_flags
        idx = {flags[key] for key in flags.keys() & facts.keys() if facts[key] is True}
        if (d := facts.get("drug")) in self.by_drug:
            idx.add(self.by_drug[d])
        if (m := facts.get("modality")) in self.by_modality:
            idx.add(self.by_modality[m])
        return sorted(idx)

    @cached_property
    def _class_flags(self) -> dict[str, int]:
        return {flag("drug_class", cls): i for cls, i in self.by_class.items()}


def _keys(node: Any, out: set[str]) -> None:
    if isinstance(node, dict):
        for k, v in node.items():
            if not k.startswith("$"):
                out.add(k)
            _keys(v, out)
    elif isinstance(node, list):
        for v in node:
            _keys(v, out)


def compile_rulebook(rulebook: Rulebook) -> CompiledRulebook:
    # the definitions are a large tree of fresh containers and no garbage: the cyclic collector
    # would rescan it again and again as it grows (compile time superlinear in the rules)
    enabled = gc.isenabled()
    gc.disable()
    try:
        return _compile(rulebook)
    finally:
        if enabled:
            gc.enable()


def _compile(rulebook: Rulebook) -> CompiledRulebook:
    definition: dict[str, Any] = {}
    actions: dict[str, Action] = {}

    def add(name: str, spec: dict, action: Action) -> None:
        assert name not in definition, name
        definition[name] = spec
        actions[name] = action

    for rule in rulebook.rules:
        applies = _applies(rule)
        gate = [{rule.applies_when.fact: rule.applies_when.equals}] if rule.applies_when else []
        add(f"{rule.id}|applies", {"all": [_pattern(applies, *gate)]}, Action(rule.id, "applies"))
        for crit in rule.criteria:
            for (state, assumed), conjunctions in _criterion_conditions(crit).items():
                for n, conj in enumerate(conjunctions):
                    name = (f"{rule.id}|{crit.id}|{_STATE_SUFFIX[state]}" + ("-assumed" if assumed else "")
                            + (f"|{n}" if n else ""))
                    add(name, {"all": [_pattern(applies, *gate, *conj)]},
                        Action(rule.id, "criterion", crit.id, state, assumed))
        if rule.recommendation == "recommended":
            # stage two matches one conclusions fact per applied rule (see chained_facts): a
            # single pattern, not a join over one fact per criterion, which cost ~6 us a fact
            oks = [{_ok_flag(k): True} for k, crit in enumerate(rule.criteria) if crit.decisive]
            add(f"{rule.id}|certify", {"all": [{"m": {"$and": [{"kind": "conclusions"}, {"rule": rule.id}, *oks]}}]},
                Action(rule.id, "certify"))
    content = json.dumps(definition, sort_keys=True).encode()
    # one immutable ruleset name per rulebook version and content
    name = f"mtus-{rulebook.version}-{hashlib.sha256(content).hexdigest()[:12]}"
    families, by_drug, by_modality, by_class = _families(rulebook, definition, name)
    compiled = CompiledRulebook(name, definition, actions, rulebook, families, by_drug, by_modality, by_class)
    compiled.chain_table = {n: _chained_fact(compiled, n) for n in actions}
    return compiled


def _families(rulebook: Rulebook, definition: dict[str, Any], name: str):
    """Group rules that can apply to one request (a drug rule with its class rules)."""
    parent = {r.id: r.id for r in rulebook.rules}

    def find(x: str) -> str:
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    # rules by the drug and the class they name; every loop below is linear in the rules
    position = {r.id: n for n, r in enumerate(rulebook.rules)}
    naming: dict[tuple[str, str], list[str]] = {}
    for rule in rulebook.rules:
        for d in rule.applies_to.drugs:
            naming.setdefault(("drug", d), []).append(rule.id)
        for c in rule.applies_to.classes:
            naming.setdefault(("class", c), []).append(rule.id)
    targets: dict[tuple[str, str], list[str]] = {}
    for generic, spec in rulebook.drugs.drugs.items():
        ids = set(naming.get(("drug", generic), ()))
        for c in spec.classes:
            ids.update(naming.get(("class", c), ()))
        if ids:
            targets[("drug", generic)] = sorted(ids, key=position.__getitem__)
    for rule in rulebook.rules:
        for m in rule.applies_to.modalities:
            targets.setdefault(("modality", m), []).append(rule.id)
        for c in rule.applies_to.classes:
            targets.setdefault(("class", c), []).append(rule.id)
    for ids in targets.values():
        for other in ids[1:]:
            parent[find(other)] = find(ids[0])
    groups: dict[str, list[str]] = {}
    for rule in rulebook.rules:
        groups.setdefault(find(rule.id), []).append(rule.id)
    # each rule's compiled rules and the fact keys they read, found in one pass over the definition
    by_rule: dict[str, dict[str, Any]] = {}
    for k, v in definition.items():
        by_rule.setdefault(k.split("|", 1)[0], {})[k] = v
    keys_of: dict[str, set[str]] = {}
    for rule_id, specs in by_rule.items():
        _keys(list(specs.values()), keys_of.setdefault(rule_id, set()))
    families, index_of = [], {}
    for n, (root, ids) in enumerate(sorted(groups.items())):
        fdef: dict[str, Any] = {}
        keys: set[str] = set()
        for rule_id in ids:
            fdef.update(by_rule.get(rule_id, {}))
            keys |= keys_of.get(rule_id, set())
        keys = (keys - {"all", "any", "m", "a"}) | {"kind", "id"}
        families.append(Family(f"{name}-{n}", ids, fdef, frozenset(keys),
                               {r: frozenset(keys_of.get(r, set()) - {"all", "any", "m", "a"}) for r in ids}))
        index_of[root] = n
    by_drug = {t: index_of[find(ids[0])] for (k, t), ids in targets.items() if k == "drug"}
    by_modality = {t: index_of[find(ids[0])] for (k, t), ids in targets.items() if k == "modality"}
    by_class = {t: index_of[find(ids[0])] for (k, t), ids in targets.items() if k == "class"}
    return families, by_drug, by_modality, by_class


def _ok_flag(index: int) -> str:
    """Key of a conclusions fact: the rule's criterion ``index`` is met or not applicable."""
    return f"ok{index}"


def _chained_fact(compiled: CompiledRulebook, name: str) -> tuple[str, str | None] | None:
    """What a fired stage-one rule adds to its rule's conclusions fact: (rule, flag), the flag
    None for the rule's applies; None when stage two has no use for it."""
    act = compiled.actions[name]
    rule = compiled.rulebook.by_id[act.rule_id]
    if rule.recommendation != "recommended":
        return None
    if act.kind == "applies":
        return act.rule_id, None
    if act.kind == "criterion" and act.state in OK_STATES:
        k = next(k for k, c in enumerate(rule.criteria) if c.id == act.criterion_id)
        if rule.criteria[k].decisive:
            return act.rule_id, _ok_flag(k)
    return None


def chained_facts(compiled: CompiledRulebook, fired: list[str]) -> list[dict]:
    """Stage two's input: per recommended rule that applied, one conclusions fact flagging its
    decisive criteria that stage one found met or not applicable."""
    table = compiled.chain_table
    facts: dict[str, dict] = {}
    applied: set[str] = set()
    for name in fired:
        link = table[name]
        if link is None:
            continue
        rule_id, key = link
        fact = facts.get(rule_id)
        if fact is None:
            fact = facts[rule_id] = {"kind": "conclusions", "id": f"k:{rule_id}", "rule": rule_id}
        if key is None:
            applied.add(rule_id)
        else:
            # a rule fires once per satisfied $or branch: setting the flag again is harmless
            fact[key] = True
    return [f for r, f in facts.items() if r in applied]
