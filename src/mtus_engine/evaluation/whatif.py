"""What-if: change a case's facts, see what flips, and find what would change a decision.

Paths use the case's own field names: ``requests[0].quantity``, ``findings.acute_exacerbation``.
Flips are derived from the rulebook's criteria and thresholds (each blocking criterion says
which fact, which test and which limit) and every suggestion is verified by re-evaluating.
"""

from __future__ import annotations

import copy
import difflib
import itertools
import math
import re
import typing
from dataclasses import dataclass, field
from typing import Any

import yaml
from pydantic import BaseModel

from .case import Case, Findings, Medication, Patient, Request, case_from_data, derive_request
from ..rules.compiler import test_holds
from .derivations import request_facts, solve
from .derived import DerivedRequest
from .determination import DECISIONS, CaseDetermination, Determination
from .engine import Engine
from ..errors import InputError

_TOKEN = re.compile(r"([A-Za-z_][A-Za-z0-9_]*)(?:\[(\d+)\])?")
_MODELS: dict[str, type[BaseModel]] = {"patient": Patient, "findings": Findings,
                                       "medications": Medication, "requests": Request}


# ------------------------------------------------------------------------ paths

def valid_paths(case: Case) -> list[str]:
    out = []
    for name, info in Case.model_fields.items():
        sub = _MODELS.get(name)
        if sub is None:
            out.append(name)
        elif name in ("requests", "medications"):
            n = len(getattr(case, name))
            for i in range(max(n, 1)):
                out += [f"{name}[{i}].{f}" for f in sub.model_fields]
        else:
            out += [f"{name}.{f}" for f in sub.model_fields]
    return out


def _annotation(path: list[tuple[str, int | None]]) -> Any:
    model: type[BaseModel] = Case
    ann: Any = None
    for n, (name, _) in enumerate(path):
        if name not in model.model_fields:
            return None
        ann = model.model_fields[name].annotation
        if n < len(path) - 1:
            model = _MODELS.get(name)  # type: ignore[assignment]
            if model is None:
                return None
    return ann


def _is_text(ann: Any) -> bool:
    args = typing.get_args(ann) or (ann,)
    return str in args


def _parse_path(path: str, case: Case) -> list[tuple[str, int | None]]:
    parts = path.split(".")
    tokens: list[tuple[str, int | None]] = []
    for part in parts:
        m = _TOKEN.fullmatch(part)
        if not m:
            raise _unknown(path, case)
        tokens.append((m.group(1), int(m.group(2)) if m.group(2) is not None else None))
    if _annotation(tokens) is None or len(tokens) > 2:
        raise _unknown(path, case)
    head, idx = tokens[0]
    if head in ("requests", "medications"):
        if idx is None or len(tokens) != 2:
            raise InputError("--set", f"{path}: {head} needs an index and a field, e.g. {head}[0].quantity",
                             location=path)
        count = len(getattr(case, head))
        if idx >= count:
            raise InputError("--set", f"index {idx} is past the last of {count} {head} "
                             f"(valid: 0..{count - 1})", location=path)
    elif idx is not None:
        raise _unknown(path, case)
    return tokens


def _unknown(path: str, case: Case) -> InputError:
    near = difflib.get_close_matches(path, valid_paths(case), n=3, cutoff=0.5)
    hint = f"; did you mean {', '.join(near)}?" if near else ""
    return InputError("--set", f"unknown path {path!r}{hint}", location=path,
                      expected="a case field such as requests[0].quantity or findings.acute_exacerbation")


def apply_changes(case: Case, sets: list[tuple[str, Any]] = (), unsets: list[str] = ()) -> Case:
    """A copy of the case with fields set (values as text are parsed by the field's type) or
    unset (made not documented). Raises InputError naming the path."""
    data = case.model_dump(mode="python", exclude_none=True)
    for path, raw in sets:
        tokens = _parse_path(path, case)
        value = raw
        if isinstance(raw, str) and not _is_text(_annotation(tokens)):
            try:
                value = yaml.safe_load(raw) if raw.strip() else None
            except yaml.YAMLError:
                value = raw
        _assign(data, tokens, value)
    for path in unsets:
        _assign(data, _parse_path(path, case), None, unset=True)
    try:
        return case_from_data(data, "--set")
    except InputError as exc:
        raise InputError("--set", exc.problem, location=exc.location, expected=exc.expected) from None


def _assign(data: dict, tokens: list[tuple[str, int | None]], value: Any, unset: bool = False) -> None:
    node: Any = data
    for name, idx in tokens[:-1]:
        node = node.setdefault(name, {}) if idx is None else node[name][idx]
    last = tokens[-1][0]
    if unset or value is None:
        node.pop(last, None)
    else:
        node[last] = value


# ------------------------------------------------------------------ set / unset

@dataclass
class Change:
    request: int
    item: str
    from_: str
    to: str
    criteria: list[dict]
    rationale_diff: list[str]
    citations_from: list[str]
    citations_to: list[str]

    def to_json_data(self) -> dict:
        return {"request": self.request, "item": self.item, "from": self.from_, "to": self.to,
                "criteria": self.criteria, "citations_from": self.citations_from,
                "citations_to": self.citations_to, "rationale_diff": self.rationale_diff}


def compare(base: CaseDetermination, variant: CaseDetermination) -> list[Change]:
    out = []
    for i, (a, b) in enumerate(zip(base.determinations, variant.determinations)):
        before = {(c.rule, c.criterion): c for c in a.criteria}
        after = {(c.rule, c.criterion): c for c in b.criteria}
        changed = []
        for key in list(dict.fromkeys([*before, *after])):
            x, y = before.get(key), after.get(key)
            if x is None or y is None or x.state != y.state or x.value != y.value:
                changed.append({"rule": key[0], "criterion": key[1],
                                "asks": (y or x).asks,
                                "from": x.state if x else None, "to": y.state if y else None,
                                "value_from": x.value if x else None, "value_to": y.value if y else None})
        diff = list(difflib.unified_diff(_sentences(a.rationale), _sentences(b.rationale),
                                         "baseline", "variant", lineterm="", n=0))
        out.append(Change(i, a.request, a.decision, b.decision, changed, diff,
                          [_cite(c) for c in a.citations], [_cite(c) for c in b.citations]))
    return out


def _cite(c: Any) -> str:
    return c.section + (f" p. {c.pages}" if c.pages else "")


def _sentences(text: str) -> list[str]:
    return [s for s in re.split(r"(?<=[.;])\s+", text) if s]


@dataclass
class WhatIf:
    baseline: CaseDetermination
    variant: CaseDetermination
    changes: list[Change]

    def to_json_data(self) -> dict:
        return {"baseline": self.baseline.to_json_data(), "variant": self.variant.to_json_data(),
                "changes": [c.to_json_data() for c in self.changes]}


def what_if(case: Case, engine: Engine, sets: list[tuple[str, Any]] = (), unsets: list[str] = ()) -> WhatIf:
    variant_case = apply_changes(case, sets, unsets)
    base, variant = engine.evaluate(case), engine.evaluate(variant_case)
    return WhatIf(base, variant, compare(base, variant))


# ------------------------------------------------------------------------- flip

@dataclass
class Suggestion:
    request: int
    to: str
    changes: list[tuple[str, Any]]           # (path, value); value None = unset
    documentation: list[str]                 # what the physician would have to provide
    verified: bool

    def to_json_data(self) -> dict:
        return {"request": self.request, "to": self.to,
                "changes": [{"path": p, "value": v} for p, v in self.changes],
                "documentation": self.documentation, "verified": self.verified}


@dataclass
class FlipAnswer:
    request: int
    item: str
    decision: str
    suggestions: list[Suggestion] = field(default_factory=list)
    impossible: str | None = None

    def to_json_data(self) -> dict:
        return {"request": self.request, "item": self.item, "decision": self.decision,
                "suggestions": [s.to_json_data() for s in self.suggestions], "impossible": self.impossible}


def _derived_fixes(case: Case, fields: dict[str, Any], rb: Any, step: Any, crit: Any, want_met: bool,
                   req: str) -> list[list[tuple[str, Any, str]]]:
    """Through a derived fact's declaration: a formula's ``solve`` (the request field to vary,
    searched over the formula itself), or a registered function's inverse."""
    t = crit.test
    spec = rb.facts[step.name]
    if t.op == "equals" and isinstance(t.operand, bool) and (spec.any_of or spec.all_of or spec.none_of):
        # a combination of yes/no facts: through its members, each by its own declaration
        return _boolean_fixes(case, fields, rb, step.name, t.operand if want_met else not t.operand, req)
    if t.op == "equals" and step.inverse is not None:
        # a derived yes/no (a finding held for the request's body part): the inverse names the
        # findings to document; words it leaves out are the criterion's own
        words = f"document {crit.missing}" if want_met else f"records showing the opposite of: {crit.missing}"
        return [[(p, v, w or words) for p, v, w in alt]
                for alt in step.inverse(case, fields, rb, t.op, t.operand, want_met, **step.params)]
    if t.op not in ("lt", "lte", "gt", "gte"):
        return []
    if step.solve is not None:
        # a ceiling met, or a floor failed: the largest value that stays under the bound
        largest = (t.op in ("lt", "lte")) == want_met
        found = solve(case, fields, rb, step.name, lambda v: test_holds(t, v) == want_met, largest)
        if found is None:
            return []
        vary, value, fixed = found
        bound = "at most" if largest else "at least"
        say = step.solve.say

        def words(f: str, v: Any, default: str) -> str:
            return say[f].format(bound=bound, value=v) if f in say else default
        return [[(f"{req}.{vary}", value, words(vary, value, f"request {bound} {value} ({vary.replace('_', ' ')})")),
                 *[(f"{req}.{k}", v, words(k, v, f"request {k.replace('_', ' ')}: {v}")) for k, v in fixed.items()]]]
    if step.inverse is not None:
        return step.inverse(case, fields, rb, t.op, t.operand, want_met, **step.params)
    return []  # e.g. a sum over several drugs: no one field to change


def _path_of(rb: Any, fact: str, req: str) -> str | None:
    """Where a documented fact sits in the case (None: a derived fact, no one field)."""
    source = rb.facts[fact].source
    return {"findings": f"findings.{fact}", "request": f"{req}.{fact}", "patient": f"patient.{fact}"}.get(source)


def _yes_no_words(path: str, value: Any) -> str:
    name = path.rsplit(".", 1)[-1].replace("_", " ")
    return f"document {name}" if value is True else f"records showing no {name}"


def _boolean_fixes(case: Case, fields: Any, rb: Any, fact: str, target: bool, req: str,
                   depth: int = 0, now: dict[str, Any] | None = None) -> list[list[tuple[str, Any, str]]]:
    """Ways to make a yes/no fact hold ``target``: a documented fact is set; a derived one goes
    through its registered inverse, or, for any_of / all_of / none_of, through its members: one
    member suffices (any_of true, all_of false), else every member not yet so, each its first
    way, together. Each alternative is verified by evaluation before it is offered."""
    if now is None:
        derived = fields if isinstance(fields, DerivedRequest) else DerivedRequest.of(dict(fields))
        now = request_facts(case, derived, rb)
    spec = rb.facts.get(fact)
    if spec is None or spec.type != "boolean" or depth > 8:
        return []
    path = _path_of(rb, fact, req)
    if path is not None:
        return [[(path, target, _yes_no_words(path, target))]]
    kind = "any_of" if spec.any_of else "all_of" if spec.all_of else "none_of" if spec.none_of else None
    if kind is None:
        step = rb.derivation_plan.steps.get(fact)
        if step is None or step.inverse is None:
            return []
        # the inverse's own words where it gives them; else the finding it sets
        return [[(p, v, w or _yes_no_words(p, v)) for p, v, w in alt]
                for alt in step.inverse(case, fields, rb, "equals", target, True, **step.params)]
    members = getattr(spec, kind)
    if kind == "none_of":
        kind, target = "any_of", not target
    if (kind == "any_of") == target:
        return [alt for m in members for alt in _boolean_fixes(case, fields, rb, m, target, req, depth + 1, now)]
    together: list[tuple[str, Any, str]] = []
    for m in members:
        if (now.get(m) is True) == target:
            continue    # already as wanted (false, or undocumented, counts as not true)
        alts = _boolean_fixes(case, fields, rb, m, target, req, depth + 1, now)
        if not alts:
            return []
        together.extend(alts[0])
    return [together]


def _fixes(engine: Engine, case: Case, idx: int, rule_id: str, crit_id: str, want_met: bool,
           fields: dict[str, Any]) -> list[list[tuple[str, Any, str]]]:
    """Ways to make one criterion met (or failed): alternatives, each a list of
    (path, value, the documentation or request change in words)."""
    rb = engine.rulebook
    rule = rb.by_id[rule_id]
    crit = next(c for c in rule.criteria if c.id == crit_id)
    spec = rb.facts[crit.fact]
    req = f"requests[{idx}]"
    t = crit.test
    alts: list[list[tuple[str, Any, str]]] = []
    guard = crit.when.test if crit.when is not None else None
    if want_met and guard is not None and guard.op == "equals" and isinstance(guard.equals, bool) \
            and fields.get(crit.when.fact) is None:
        # the branch is unknown: documenting the other side of a yes/no guard is a way forward
        gpath = f"{req}.{crit.when.fact}"
        alts.append([(gpath, not guard.equals, f"document {crit.when.fact.replace('_', ' ')}: "
                                               f"{str(not guard.equals).lower()}")])

    op, v = t.op, t.operand
    step = rb.derivation_plan.steps.get(crit.fact)
    if step is not None:
        # a derived fact: its declared inverse says which request field moves it
        return alts + _derived_fixes(case, fields, rb, step, crit, want_met, req)
    path = _path_of(rb, crit.fact, req)
    if path is None:
        return alts  # a derived fact with no single field behind it (e.g. the agent's sedation)
    words = crit.missing
    if op == "equals":
        value = v if want_met else (not v)
        alts.append([(path, value, f"document {words}" if value == v else f"records showing the opposite of: {words}")])
    elif op == "documented":
        if want_met:
            value = _plausible(engine, rule, crit.fact, fields)
            if value is not None:
                alts.append([(path, value, f"state {words} (e.g. {value})")])
        else:
            alts.append([(path, None, f"leave out {words}")])
    elif op in ("lt", "lte", "gt", "gte"):
        if want_met:
            value = {"lt": v - 1, "lte": v, "gt": v + 1, "gte": v}[op]
        else:
            value = {"lt": v, "lte": v + 1, "gt": v, "gte": v - 1}[op]
        if spec.type == "integer":
            value = int(math.floor(value) if op in ("lt", "lte") else math.ceil(value))
        if value >= 0:
            verb = "request" if crit.fact in ("sessions", "quantity", "refills") else "document"
            bound = "at most" if (op in ("lt", "lte")) == want_met else "at least"
            name = crit.fact.replace("_", " ")
            if crit.fact.endswith("_weeks"):
                words = f"{verb} {name.removesuffix(' weeks')} of {bound} {value} weeks"
            else:
                words = f"{verb} {name} of {bound} {value}"
            alts.append([(path, value, words)])
    elif op == "includes" and want_met:
        current = list(_current(case, path) or [])
        alts.append([(path, [*current, v], f"document a trial of {v.replace('_', ' ')}")])
    elif op == "excludes" and want_met:
        current = [x for x in (_current(case, path) or []) if x not in v]
        if current:
            alts.append([(path, current, "limit the request to regions where it is recommended")])
    return alts


def _plausible(engine: Engine, rule: Any, fact: str, fields: dict[str, Any]) -> Any:
    """A value for a fact that also satisfies the rule's other tests on that fact."""
    if fact == "quantity":
        drug = engine.rulebook.drugs.spec(fields.get("drug") or "")
        return math.floor(21 * drug.daily_units) if drug else 20
    if fact == "sessions":
        limits = [c.test.operand for c in rule.criteria if c.fact == "sessions" and c.test.op == "lte"]
        return int(min(limits)) if limits else 6
    return None


def _current(case: Case, path: str) -> Any:
    node: Any = case
    for name, idx in [(m.group(1), m.group(2)) for m in _TOKEN.finditer(path)]:
        node = getattr(node, name)
        if idx is not None:
            node = node[int(idx)]
    return node


def flip(case: Case, engine: Engine, *, max_suggestions: int = 3) -> list[FlipAnswer]:
    """For each request, the smallest verified sets of changes that change its decision."""
    base = engine.evaluate(case)
    answers = []
    for idx, det in enumerate(base.determinations):
        answers.append(_flip_one(case, engine, idx, det, max_suggestions))
    return answers


def _flip_one(case: Case, engine: Engine, idx: int, det: Determination, limit: int) -> FlipAnswer:
    ans = FlipAnswer(idx, det.request, det.decision)
    rb = engine.rulebook
    if det.decision == "no-rule":
        ans.impossible = "no rule covers this item, so no documented change decides it"
        return ans
    rules = [rb.by_id[r] for r in det.rules_fired]
    fields, _ = derive_request(case, idx, rb.drugs)
    if det.decision in ("non-certify", "modify"):
        blocked = [r for r in rules if r.recommendation == "not-recommended"]
        if blocked:
            names = ", ".join(r.citation.section for r in blocked)
            ans.impossible = (f"no documented change makes this certifiable under "
                              f"{blocked[0].edition.upper().replace('-', ' ')}: {names} is not recommended")
            return ans
        blocking = [(c.rule, c.criterion) for c in det.criteria
                    if c.decisive and c.state in ("failed", "not documented")]
        options = [_fixes(engine, case, idx, r, c, True, fields) for r, c in blocking]
        if any(not o for o in options):
            stuck = [f"{r}/{c}" for (r, c), o in zip(blocking, options) if not o]
            ans.impossible = ("no change to documented facts or request fields can satisfy "
                              + ", ".join(stuck))
            return ans
        seen = set()
        # every blocking criterion fixed at once; then each alone, since a rule's alternatives
        # (imaging on a red flag, or a deficit, or ...) are guarded by each other, and fixing one
        # sets the others aside: minimising the first combination keeps just one of them
        singles = ([alt] for o in options for alt in o) if len(options) > 1 else ()
        for combo in itertools.chain(itertools.islice(itertools.product(*options), 64), singles):
            changes = _merge([step for alt in combo for step in alt])
            sug = _verify(case, engine, idx, changes, want="certify")
            if sug:
                sug = _minimise(case, engine, idx, sug, want="certify")
                key = tuple((p, repr(v)) for p, v, _ in sug)
                if key not in seen:
                    seen.add(key)
                    ans.suggestions.append(Suggestion(idx, "certify", [(p, v) for p, v, _ in sug],
                                                      list(dict.fromkeys(w for _, _, w in sug)), True))
            if len(ans.suggestions) >= limit:
                break
        if not ans.suggestions:
            ans.impossible = "the rulebook's thresholds admit no verified change to certify"
    else:  # certify: which single documented fact would deny it
        for c in det.criteria:
            if not c.decisive or c.state != "met":
                continue
            for alt in _fixes(engine, case, idx, c.rule, c.criterion, False, fields):
                sug = _verify(case, engine, idx, _merge(alt), want="non-certify")
                if sug:
                    ans.suggestions.append(Suggestion(idx, "non-certify", [(p, v) for p, v, _ in sug],
                                                      [w for _, _, w in sug], True))
            if len(ans.suggestions) >= limit:
                break
    return ans


def _merge(steps: list[tuple[str, Any, str]]) -> list[tuple[str, Any, str]]:
    out: dict[str, tuple[str, Any, str]] = {}
    for p, v, w in steps:
        if p in out and isinstance(v, (int, float)) and isinstance(out[p][1], (int, float)) \
                and not isinstance(v, bool) and out[p][1] < v:
            continue  # two ceilings on one field: the lower (already kept) satisfies both
        out[p] = (p, v, w)
    return list(out.values())


def _verify(case: Case, engine: Engine, idx: int, changes: list[tuple[str, Any, str]], want: str):
    try:
        variant = apply_changes(case, [(p, v) for p, v, _ in changes if v is not None],
                                [p for p, v, _ in changes if v is None])
    except InputError:
        return None
    got = engine.evaluate(variant).determinations[idx].decision
    ok = got == want or (want == "non-certify" and got in ("non-certify", "modify") and got != "certify")
    return changes if ok else None


def _minimise(case: Case, engine: Engine, idx: int, changes: list, want: str) -> list:
    """Drop each change that the flip does not need (greedy, verified each time)."""
    current = list(changes)
    for step in list(changes):
        trial = [s for s in current if s is not step]
        if trial and _verify(case, engine, idx, trial, want):
            current = trial
    return current


# ------------------------------------------------------------------------- grid

_RANGE = re.compile(r"^\s*(-?\d+(?:\.\d+)?)\s*\.\.\s*(-?\d+(?:\.\d+)?)\s*(?::\s*(\d+(?:\.\d+)?))?\s*$")


def parse_grid(spec: str, case: Case) -> tuple[str, list[Any]]:
    if "=" not in spec:
        raise InputError("--grid", f"{spec!r} is not PATH=VALUES", expected="PATH=V1,V2 or PATH=A..B[:STEP]")
    path, values = spec.split("=", 1)
    path = path.strip()
    _parse_path(path, case)
    m = _RANGE.match(values)
    if m:
        a, b = float(m.group(1)), float(m.group(2))
        step = float(m.group(3) or 1)
        if step <= 0 or (b - a) / step > 10_000:
            raise InputError("--grid", f"{spec!r}: the range has too many points", location=path)
        n = int(math.floor((b - a) / step + 1e-9)) + 1
        pts = [a + i * step for i in range(max(n, 0))]
        vals: list[Any] = [int(p) if float(p).is_integer() else p for p in pts]
    else:
        vals = [v.strip() for v in values.split(",") if v.strip()]
    if not vals:
        raise InputError("--grid", f"{spec!r} gives no values", location=path)
    return path, vals


@dataclass
class Grid:
    request: int
    axes: list[tuple[str, list[Any]]]
    decisions: list[list[str]]       # [row: first axis][col: second axis, or one column]

    def to_json_data(self) -> dict:
        return {"request": self.request, "axes": [{"path": p, "values": v} for p, v in self.axes],
                "decisions": self.decisions}


def grid(case: Case, engine: Engine, axes: list[tuple[str, list[Any]]], request: int = 0,
         sets: list[tuple[str, Any]] = (), unsets: list[str] = ()) -> Grid:
    if not 1 <= len(axes) <= 2:
        raise InputError("--grid", "give one or two --grid axes")
    if request >= len(case.requests):
        raise InputError("--request", f"index {request} is past the last of {len(case.requests)} requests")
    base = apply_changes(case, sets, unsets) if (sets or unsets) else case
    rows = []
    first, second = axes[0], (axes[1] if len(axes) == 2 else None)
    for v1 in first[1]:
        row = []
        for v2 in (second[1] if second else [None]):
            changes = [(first[0], v1)] + ([(second[0], v2)] if second else [])
            try:
                variant = apply_changes(base, changes)
                # only the request asked about: the others' determinations would be thrown away
                row.append(engine.evaluate_request(variant, request).decision)
            except InputError:
                row.append("invalid")
        rows.append(row)
    return Grid(request, list(axes), rows)


DECISION_CODES = {d: n for n, d in enumerate((*DECISIONS, "invalid"))}   # heat-map cell values


def plot_grid(g: Grid, path: str, title: str) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.colors import ListedColormap
    colours = ["#2e7d32", "#f9a825", "#c62828", "#6a1b9a", "#9e9e9e"]
    data = [[DECISION_CODES[d] for d in row] for row in g.decisions]
    fig, ax = plt.subplots(figsize=(max(4, 0.6 * len(data[0]) + 2), max(3, 0.4 * len(data) + 1.5)), dpi=100)
    ax.imshow(data, cmap=ListedColormap(colours), vmin=0, vmax=4, aspect="auto")
    ax.set_yticks(range(len(g.axes[0][1])), labels=[str(v) for v in g.axes[0][1]])
    ax.set_ylabel(g.axes[0][0])
    if len(g.axes) == 2:
        ax.set_xticks(range(len(g.axes[1][1])), labels=[str(v) for v in g.axes[1][1]])
        ax.set_xlabel(g.axes[1][0])
    else:
        ax.set_xticks([])
    short = {"certify": "C", "modify": "M", "non-certify": "N", "no-rule": "–", "invalid": "x"}
    for i, row in enumerate(g.decisions):
        for j, d in enumerate(row):
            ax.text(j, i, short[d], ha="center", va="center", color="white", fontsize=8)
    from matplotlib.patches import Patch
    ax.legend(handles=[Patch(color=c, label=l) for l, c in zip(DECISION_CODES, colours)],
              loc="upper left", bbox_to_anchor=(1.01, 1), fontsize=8)
    ax.set_title(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, metadata={"Software": None})
    plt.close(fig)
