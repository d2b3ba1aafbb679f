"""Derived facts: declared in rules/vocabulary/facts*.yaml, computed here in dependency order.

A derived fact is declared with its inputs and one of
  any_of / all_of / none_of   a three-valued combination of boolean facts,
  formula                     an expression (below) giving the value,
  true_when / false_when      expressions: true when the first holds, else false when the
                              second holds, else not documented,
  function (+ params)         a Python derivation registered once here with @derivation,
and may add ``only_if`` (an expression; the fact is left out unless it holds) and ``solve``
(the request field what-if varies to bring the fact to a criterion's bound).

Expressions are Python syntax parsed by the standard ``ast`` module and compiled to closures
once per rulebook; only names of facts and request fields, constants, arithmetic, comparisons,
and/or/not, ``x if c else y``, subscripts, ``drug.<attribute>`` (the requested drug's entry in
drugs.yaml) and the functions registered with @function are accepted; nothing is eval'd.
A fact the records do not document is None: arithmetic, ordering and ``in`` with None give
None; ``and``/``or``/``not`` are three-valued (Kleene); ``==``/``!=`` compare plainly.
"""

from __future__ import annotations

import ast
import operator
import re
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable

from .items import CASE_FACTS, _parsed, medication_generic, strength_mcg, strength_mg, units_per_day
from .derived import DerivedRequest
from ..rules.compiler import flag

if TYPE_CHECKING:   # a case is the pydantic model or plain_case.py's plain case (duck-typed)
    from .case import Case

# ----------------------------------------------------------------------------- registries


@dataclass(frozen=True)
class Registered:
    """A fact-level derivation: forward(ctx, **params) -> value (None: not documented), and
    inverse(case, fields, rulebook, op, bound, want_met, **params) -> what-if alternatives, each
    a list of (case field, value, words); inverse None says no change of one input can be
    proposed."""

    name: str
    forward: Callable[..., Any]
    inverse: Callable[..., list] | None


DERIVATIONS: dict[str, Registered] = {}
FUNCTIONS: dict[str, Callable[..., Any]] = {}   # callable from expressions: f(ctx, *args, **kwargs)


def derivation(name: str, *, inverse: Callable[..., list] | None):
    """Register a fact-level derivation once; ``inverse`` must be given (None: none exists)."""
    def wrap(forward: Callable[..., Any]) -> Callable[..., Any]:
        if name in DERIVATIONS:
            raise ValueError(f"derivation {name!r} registered twice")
        DERIVATIONS[name] = Registered(name, forward, inverse)
        return forward
    return wrap


def function(name: str):
    """Register a function expressions may call; it gets the request context first."""
    def wrap(fn: Callable[..., Any]) -> Callable[..., Any]:
        if name in FUNCTIONS:
            raise ValueError(f"function {name!r} registered twice")
        FUNCTIONS[name] = fn
        return fn
    return wrap


class Ctx:
    """What a derivation may read: the case, the request's fields, its drug's vocabulary entry
    and the facts derived so far."""

    __slots__ = ("case", "req", "rulebook", "spec", "facts")

    def __init__(self, case: Case, req: DerivedRequest, rulebook: Any, spec: Any, facts: dict[str, Any]):
        self.case, self.req, self.rulebook, self.spec, self.facts = case, req, rulebook, spec, facts


# ----------------------------------------------------------------------------- expressions

class ExpressionError(ValueError):
    """A declaration that does not compile; ``key`` is the YAML key at fault (for the line)."""

    def __init__(self, message: str, key: str | None = None):
        super().__init__(message)
        self.key = key


# the operator module's functions: the same operations, without a Python frame each
_ARITH = {ast.Add: operator.add, ast.Sub: operator.sub,
          ast.Mult: operator.mul, ast.Div: lambda a, b: a / b if b else None}
_ORDER = {ast.Lt: operator.lt, ast.LtE: operator.le, ast.Gt: operator.gt, ast.GtE: operator.ge}


def _builtin_round(ctx: Ctx, x: Any, n: int = 0) -> Any:
    return None if x is None else round(x, n)


def _builtin_len(ctx: Ctx, x: Any) -> Any:
    return None if x is None else len(x)


_BUILTINS: dict[str, Callable[..., Any]] = {
    "round": _builtin_round,
    "len": _builtin_len,
    "known": lambda ctx, x: x is not None,
    "default": lambda ctx, x, d: d if x is None else x,
}


def _call(name: str, fn: Callable[..., Any], args: list, kwargs: dict, n: ast.Call) -> Callable[[Ctx], Any]:
    """A call, specialised: derivation runs per request, so no generic *args/**kwargs packing
    where the arity is known, and constant arguments are passed as values."""
    consts = [isinstance(x, ast.Constant) for x in n.args]
    if name == "known" and len(args) == 1:
        a = args[0]
        return lambda ctx: a(ctx) is not None
    if name == "default" and len(args) == 2:
        a, d = args

        def dflt(ctx: Ctx) -> Any:
            v = a(ctx)
            return d(ctx) if v is None else v
        return dflt
    if kwargs:
        if all(isinstance(k.value, ast.Constant) for k in n.keywords):
            fixed = {k.arg: k.value.value for k in n.keywords if k.arg}
            if all(consts):
                values = [x.value for x in n.args]
                return lambda ctx: fn(ctx, *values, **fixed)
            return lambda ctx: fn(ctx, *[f(ctx) for f in args], **fixed)
        return lambda ctx: fn(ctx, *[f(ctx) for f in args], **{k: f(ctx) for k, f in kwargs.items()})
    if all(consts):
        values = [x.value for x in n.args]
        return lambda ctx: fn(ctx, *values)
    if len(args) == 1:
        a = args[0]
        return lambda ctx: fn(ctx, a(ctx))
    if len(args) == 2:
        a, b = args
        if consts[1]:
            bv = n.args[1].value
            return lambda ctx: fn(ctx, a(ctx), bv)
        return lambda ctx: fn(ctx, a(ctx), b(ctx))
    return lambda ctx: fn(ctx, *[f(ctx) for f in args])


class Compiler:
    """Compiles expression text against a fact vocabulary: names are facts or request fields."""

    def __init__(self, facts: dict[str, Any], request_fields: set[str]):
        self.facts = facts
        self.request_fields = request_fields
        self.touched: set[str] = set()   # request fields read and functions called (see KEYED)

    def compile(self, text: str) -> tuple[Callable[[Ctx], Any], set[str]]:
        """The closure and the fact names it reads; ExpressionError for anything else."""
        try:
            tree = ast.parse(str(text).strip(), mode="eval")
        except SyntaxError as exc:
            raise ExpressionError(f"cannot parse {text!r}: {exc.msg}") from None
        reads: set[str] = set()
        return self._node(tree.body, reads), reads

    def _node(self, n: ast.AST, reads: set[str]) -> Callable[[Ctx], Any]:  # noqa: C901 - one case per node
        if isinstance(n, ast.Constant):
            v = n.value
            return lambda ctx: v
        if isinstance(n, (ast.List, ast.Tuple)):
            items = [self._node(e, reads) for e in n.elts]
            return lambda ctx: [f(ctx) for f in items]
        if isinstance(n, ast.Name):
            return self._name(n.id, reads)
        if isinstance(n, ast.Attribute):
            if not (isinstance(n.value, ast.Name) and n.value.id == "drug"):
                raise ExpressionError("only drug.<attribute> (the requested drug's vocabulary entry) is allowed")
            attr = n.attr
            if attr not in ("classes", "sedating", "daily_units", "morphine_equivalent", "brands", "aliases",
                            "opioid_figure", "strength_unit", "morphine_equivalent_excluded"):
                raise ExpressionError(f"drugs.yaml has no attribute {attr!r}")
            return lambda ctx: None if ctx.spec is None else getattr(ctx.spec, attr)
        if isinstance(n, ast.BinOp) and type(n.op) in _ARITH:
            op, a, b = _ARITH[type(n.op)], self._node(n.left, reads), self._node(n.right, reads)

            if isinstance(n.right, ast.Constant) and n.right.value is not None:
                bv = n.right.value   # a constant operand: read once

                def arith_const(ctx: Ctx) -> Any:
                    x = a(ctx)
                    return None if x is None else op(x, bv)
                return arith_const

            def arith(ctx: Ctx) -> Any:
                x, y = a(ctx), b(ctx)
                return None if x is None or y is None else op(x, y)
            return arith
        if isinstance(n, ast.UnaryOp):
            a = self._node(n.operand, reads)
            if isinstance(n.op, ast.Not):
                return lambda ctx: None if (v := a(ctx)) is None else not v
            if isinstance(n.op, ast.USub):
                return lambda ctx: None if (v := a(ctx)) is None else -v
        if isinstance(n, ast.BoolOp):
            parts = [self._node(v, reads) for v in n.values]
            stop = not isinstance(n.op, ast.And)   # and stops at False, or at True

            if stop:
                def kleene_or(ctx: Ctx) -> bool | None:
                    unknown = False
                    for p in parts:
                        v = p(ctx)
                        if v is None:
                            unknown = True
                        elif v:
                            return True
                    return None if unknown else False
                return kleene_or

            def kleene_and(ctx: Ctx) -> bool | None:
                unknown = False
                for p in parts:
                    v = p(ctx)
                    if v is None:
                        unknown = True
                    elif not v:
                        return False
                return None if unknown else True
            return kleene_and
        if isinstance(n, ast.Compare) and len(n.ops) == 1:
            a, b, op = self._node(n.left, reads), self._node(n.comparators[0], reads), type(n.ops[0])
            if op is ast.Eq:
                return lambda ctx: a(ctx) == b(ctx)
            if op is ast.NotEq:
                return lambda ctx: a(ctx) != b(ctx)
            if op in _ORDER:
                cmp = _ORDER[op]
                right = n.comparators[0]
                if isinstance(right, ast.Constant) and right.value is not None:
                    bv = right.value   # a constant bound: read once

                    def order_const(ctx: Ctx) -> bool | None:
                        x = a(ctx)
                        return None if x is None else cmp(x, bv)
                    return order_const

                def order(ctx: Ctx) -> bool | None:
                    x, y = a(ctx), b(ctx)
                    return None if x is None or y is None else cmp(x, y)
                return order
            if op in (ast.In, ast.NotIn):
                negate = op is ast.NotIn

                def member(ctx: Ctx) -> bool | None:
                    x, y = a(ctx), b(ctx)
                    return None if x is None or y is None else (x in y) != negate
                return member
        if isinstance(n, ast.IfExp):
            c, yes, no = self._node(n.test, reads), self._node(n.body, reads), self._node(n.orelse, reads)

            def choose(ctx: Ctx) -> Any:
                v = c(ctx)
                return None if v is None else (yes(ctx) if v else no(ctx))
            return choose
        if isinstance(n, ast.Subscript):
            a, i = self._node(n.value, reads), self._node(n.slice, reads)

            def index(ctx: Ctx) -> Any:
                x, k = a(ctx), i(ctx)
                if x is None or k is None:
                    return None
                try:
                    return x[k]
                except (IndexError, KeyError, TypeError):
                    return None
            return index
        if isinstance(n, ast.Call) and isinstance(n.func, ast.Name):
            name = n.func.id
            fn = _BUILTINS.get(name) or FUNCTIONS.get(name)
            if name not in _BUILTINS:   # registered functions read the case
                self.touched.add(f"{name}()")
            if fn is None:
                raise ExpressionError(f"unknown function {name!r} (registered: "
                                      f"{', '.join(sorted({*_BUILTINS, *FUNCTIONS}))})")
            args = [self._node(x, reads) for x in n.args]
            kwargs = {k.arg: self._node(k.value, reads) for k in n.keywords if k.arg}
            return _call(name, fn, args, kwargs, n)
        raise ExpressionError(f"{ast.unparse(n)!r} is not an allowed expression")

    def _name(self, name: str, reads: set[str]) -> Callable[[Ctx], Any]:
        if name in ("true", "false", "none"):
            raise ExpressionError(f"write {name.capitalize()}, not {name}")
        spec = self.facts.get(name)
        if spec is not None:
            reads.add(name)
            if spec.type == "list":
                # a list fact lives as member flags; read back as the list (None: not documented)
                keys = [(v, f"{name}__{v}") for v in spec.values or []]
                first = keys[0][1] if keys else None
                return lambda ctx: ([v for v, k in keys if ctx.facts.get(k)]
                                    if first is not None and first in ctx.facts else None)
            return lambda ctx: ctx.facts.get(name)
        if name in self.request_fields:
            self.touched.add(name)
            return lambda ctx: getattr(ctx.req, name)
        raise ExpressionError(f"unknown name {name!r} (not a declared fact nor a request field)")


# ----------------------------------------------------------------------------- the plan

@dataclass
class Step:
    """One derived fact, compiled."""

    name: str
    deps: frozenset[str]                      # derived facts it reads
    compute: Callable[[Ctx], Any]
    is_list: bool = False
    values: tuple[str, ...] = ()
    guard: Callable[[Ctx], Any] | None = None
    solve: Any = None                         # FactSpec.solve
    inverse: Callable[..., list] | None = None
    params: dict = field(default_factory=dict)
    reads: frozenset[str] = frozenset()       # every declared fact it reads (derived or not)
    keyed: bool = False                       # its value depends on the request's drug and modality alone
    guard_keyed: bool = False                 # so does its only_if

    def runner(self, guarded: bool = True) -> Callable[[Ctx], None]:
        """put, or without the only_if (for a plan that found it holds)."""
        return self.put if guarded or self.guard is None else _runner(self, guarded=False)

    def __post_init__(self) -> None:
        self.put = _runner(self)


def _runner(step: Step, guarded: bool = True) -> Callable[[Ctx], None]:
    """The step as one closure, made once: compute the value (when the guard holds) and put it
    in the facts, a list as its member flags; nothing for None (not documented)."""
    name, compute, guard = step.name, step.compute, step.guard if guarded else None
    if step.is_list:
        keys = tuple((v, f"{name}__{v}") for v in step.values)

        def put_list(ctx: Ctx) -> None:
            if guard is not None and guard(ctx) is not True:
                return
            value = compute(ctx)
            if value is not None:
                members, facts = set(value), ctx.facts
                for v, key in keys:
                    facts[key] = v in members
        return put_list
    if guard is None:
        def put(ctx: Ctx) -> None:
            value = compute(ctx)
            if value is not None:
                ctx.facts[name] = value
        return put

    def put_guarded(ctx: Ctx) -> None:
        if guard(ctx) is True:
            value = compute(ctx)
            if value is not None:
                ctx.facts[name] = value
    return put_guarded


class PlanError(ValueError):
    """Problems with the declarations, each (fact name, key, message)."""

    def __init__(self, problems: list[tuple[str, str, str]]):
        super().__init__("; ".join(p[2] for p in problems))
        self.problems = problems


def _combine(kind: str, members: list[str]) -> Callable[[Ctx], Any]:
    # one closure per kind, one pass over the members (runs per request); ``==`` where the
    # list test was ``in`` (which compares by ==), ``is`` where it was ``is``
    members = tuple(members)
    if kind == "all_of":
        def all_of(ctx: Ctx) -> bool | None:
            get, unknown = ctx.facts.get, False
            for m in members:
                v = get(m)
                if v == False:  # noqa: E712 - as ``False in values`` compared
                    return False
                if v is not True:
                    unknown = True
            return None if unknown else True
        return all_of
    hit = kind == "any_of"   # any_of: a True member makes it True; none_of: makes it False

    def any_or_none_of(ctx: Ctx) -> bool | None:
        get, unknown = ctx.facts.get, False
        for m in members:
            v = get(m)
            if v == True:  # noqa: E712 - as ``True in values`` compared
                return hit
            if v is not False:
                unknown = True
        return None if unknown else not hit
    return any_or_none_of


def request_fields() -> set[str]:
    """The fields of a derived request an expression may name."""
    import dataclasses
    return {f.name for f in dataclasses.fields(DerivedRequest)} - {"given"}


class _Steps(Mapping):
    """A plan's steps by name, each compiled when first asked for: a start compiles the steps its
    requests need, not every derived fact of the rulebook (their number grows with it)."""

    def __init__(self, facts: dict[str, Any], order: list[str]) -> None:
        self._facts = facts
        self._names = frozenset(order)
        self._order = order
        self._made: dict[str, Step] = {}
        self._comp: Compiler | None = None
        self._lock = threading.Lock()   # the service's threads: one Step per fact

    def __getitem__(self, name: str) -> Step:
        made = self._made.get(name)
        if made is None:
            if name not in self._names:
                raise KeyError(name)
            with self._lock:
                made = self._made.get(name)
                if made is None:
                    if self._comp is None:
                        self._comp = Compiler(self._facts, request_fields())
                    # the declarations compiled cleanly when the rulebook was loaded
                    made = self._made[name] = _compile_step(name, self._facts[name], self._comp)
        return made

    def __contains__(self, name: object) -> bool:
        return name in self._names

    def __iter__(self):
        return iter(self._order)

    def __len__(self) -> int:
        return len(self._order)


class Plan:
    """Every derived fact compiled, in dependency order; per drug or modality, the steps the
    rules for it need (cached).

    Made from the declarations, it compiles them all (the load's lint reports every problem).
    Made from ``shape`` (a plan's order and dependencies, kept with the rulebook in the
    start-up cache) it compiles each step when a request first needs it."""

    # the engine itself reads drug_class: it picks the rule families
    ALWAYS = frozenset({"drug_class"})

    def __init__(self, facts: dict[str, Any], reads: Callable[[str | None, str | None], frozenset[str]],
                 shape: tuple[list[str], dict[str, frozenset[str]]] | None = None):
        self.reads = reads
        self._memo: dict[tuple, tuple[Step, ...]] = {}
        self._puts: dict[tuple, tuple[Callable[[Ctx], None], ...]] = {}
        # each list fact's member flags, (value, key), in declaration order
        self.flags: dict[str, tuple[tuple[str, str], ...]] = {
            name: tuple((v, f"{name}__{v}") for v in spec.values or []) for name, spec in facts.items()
            if spec.type == "list"}
        if shape is not None:
            self.order, self._deps = list(shape[0]), shape[1]
            self.steps: Mapping[str, Step] = _Steps(facts, self.order)
            return
        problems: list[tuple[str, str, str]] = []
        comp = Compiler(facts, request_fields())
        steps: dict[str, Step] = {}
        for name, spec in facts.items():
            if spec.source != "derived":
                continue
            try:
                step = _compile_step(name, spec, comp)
            except ExpressionError as exc:
                problems.append((name, exc.key or _form_key(spec), f"fact {name}: {exc}"))
                continue
            if step is None:
                problems.append((name, "source", f"fact {name} is derived but declares no derivation "
                                                  f"(any_of, all_of, none_of, formula, true_when or function)"))
                continue
            steps[name] = step
        self.order = _topological(steps, problems)
        if problems:
            raise PlanError(problems)
        self.steps = steps
        self._deps = {n: s.deps for n, s in steps.items()}

    @property
    def shape(self) -> tuple[list[str], dict[str, frozenset[str]]]:
        """What a lazy plan is made from: the order and each step's derived inputs (data)."""
        return list(self.order), dict(self._deps)

    def needed(self, names: frozenset[str] | set[str]) -> tuple[Step, ...]:
        want: set[str] = set()
        todo = [n for n in names if n in self._deps]
        while todo:
            n = todo.pop()
            if n in want:
                continue
            want.add(n)
            todo.extend(d for d in self._deps[n] if d not in want)
        return tuple(self.steps[n] for n in self.order if n in want)

    def for_request(self, drug: str | None, modality: str | None) -> tuple[Step, ...]:
        key = (drug, modality)
        hit = self._memo.get(key)
        if hit is None:
            hit = self._memo[key] = self.needed(self.reads(drug, modality) | self.ALWAYS)
        return hit

    def puts_for(self, drug: str | None, modality: str | None) -> tuple[Callable[[Ctx], None], ...]:
        """for_request's steps as their closures (what request_facts runs)."""
        key = (drug, modality)
        hit = self._puts.get(key)
        if hit is None:
            hit = self._puts[key] = tuple(step.put for step in self.for_request(drug, modality))
        return hit


def _form_key(spec: Any) -> str:
    for k in ("function", "formula", "true_when", "false_when", "only_if", "any_of", "all_of", "none_of"):
        if getattr(spec, k, None) is not None:
            return k
    return "source"


def _compile_at(comp: Compiler, key: str, text: str) -> tuple[Callable[[Ctx], Any], set[str]]:
    try:
        return comp.compile(text)
    except ExpressionError as exc:
        raise ExpressionError(str(exc), key) from None


# what a plan may work out once per (drug, modality): a step reading nothing else
KEYED = frozenset({"drug", "modality"})


def _compile_step(name: str, spec: Any, comp: Compiler) -> Step | None:
    reads: set[str] = set()
    guard = None
    comp.touched = set()
    guard_keyed = False
    if spec.only_if is not None:
        guard, r = _compile_at(comp, "only_if", spec.only_if)
        reads |= r
        guard_keyed = r <= KEYED and comp.touched <= KEYED
    inverse, params = None, dict(spec.params or {})
    if spec.any_of or spec.all_of or spec.none_of:
        kind = "any_of" if spec.any_of else ("all_of" if spec.all_of else "none_of")
        members = getattr(spec, kind)
        for m in members:
            if m not in comp.facts or comp.facts[m].type != "boolean":
                raise ExpressionError(f"{kind} member {m!r} is not a declared boolean fact", kind)
        compute = _combine(kind, members)
        reads |= set(members)
    elif spec.formula is not None:
        compute, r = _compile_at(comp, "formula", spec.formula)
        reads |= r
    elif spec.true_when is not None:
        yes, r = _compile_at(comp, "true_when", spec.true_when)
        reads |= r
        no = None
        if spec.false_when is not None:
            no, r = _compile_at(comp, "false_when", spec.false_when)
            reads |= r

        def compute(ctx: Ctx, yes=yes, no=no) -> bool | None:
            if yes(ctx) is True:
                return True
            return False if no is not None and no(ctx) is True else None
    elif spec.function is not None:
        reg = DERIVATIONS.get(spec.function)
        if reg is None:
            raise ExpressionError(f"function {spec.function!r} is not registered "
                                  f"(registered: {', '.join(sorted(DERIVATIONS))})", "function")
        if spec.inputs is None:
            raise ExpressionError("function: needs inputs: (the facts it reads; [] for none)", "function")
        for i in spec.inputs:
            if i not in comp.facts and i not in comp.request_fields:
                raise ExpressionError(f"input {i!r} is not a declared fact nor a request field", "inputs")
        reads |= {i for i in spec.inputs if i in comp.facts}
        comp.touched.add(f"{spec.function}()")   # a derivation reads the case
        fwd = reg.forward
        compute = (lambda ctx, fwd=fwd, params=params: fwd(ctx, **params))
        inverse = reg.inverse
    else:
        return None
    if spec.solve is not None:
        for f in [spec.solve.vary, *spec.solve.set]:
            if f not in comp.request_fields:
                raise ExpressionError(f"solve names {f!r}, which is not a request field", "solve")
        for f in spec.solve.say:
            if f not in [spec.solve.vary, *spec.solve.set]:
                raise ExpressionError(f"solve.say words {f!r}, which solve neither varies nor sets", "solve")
    deps = frozenset(r for r in reads if r != name and comp.facts[r].source == "derived")
    return Step(name, deps, compute, spec.type == "list", tuple(spec.values or ()), guard, spec.solve,
                inverse, params, frozenset(reads - {name}), reads <= KEYED and comp.touched <= KEYED, guard_keyed)


def _topological(steps: dict[str, Step], problems: list) -> list[str]:
    order: list[str] = []
    state: dict[str, int] = {}   # 1 visiting, 2 done

    def visit(n: str, path: list[str]) -> None:
        if state.get(n) == 2:
            return
        if state.get(n) == 1:
            cycle = path[path.index(n):] + [n]
            problems.append((n, "source", f"fact {n}: derived facts depend on each other in a "
                                                  f"cycle: {' -> '.join(cycle)}"))
            return
        state[n] = 1
        for d in sorted(steps[n].deps):
            if d in steps:
                visit(d, path + [n])
        state[n] = 2
        order.append(n)

    for n in sorted(steps):
        visit(n, [])
    return order


# ----------------------------------------------------------------------------- request facts

def request_facts(case: Case, req: DerivedRequest, rulebook: Any) -> dict[str, Any]:
    """The flat fact the rules match: request fields, findings, patient, derived values.

    Absent facts are left out (durable_rules' $nex), never set to a default. Derived facts
    are computed from their declarations, only those the rules for this item read.
    """
    facts: dict[str, Any] = {"kind": "request", "id": "request"}
    plan = rulebook.derivation_plan
    flags = plan.flags
    # the findings' validated values, read from the model's dict: model_dump per request was
    # a tenth of a request
    for name, value in case.findings.__dict__.items():
        if value is None:
            continue
        keys = flags.get(name)
        if keys is None:
            facts[name] = value
        else:
            for v, key in keys:
                facts[key] = v in value
    if case.patient.age is not None:
        facts["age"] = case.patient.age
    fields = req.__dict__
    for name in req.given:
        if name == "item" or name == "strength":
            continue
        value = fields[name]
        keys = flags.get(name)
        if keys is None:
            facts[name] = value
        elif value is not None:
            for v, key in keys:
                facts[key] = v in value
    drug = req.drug
    ctx = Ctx(case, req, rulebook, rulebook.drugs.spec(drug) if drug else None, facts)
    for put in plan.puts_for(drug, req.modality):
        put(ctx)
    return facts


class FactPlan:
    """A request's fact, planned once per (drug, modality) from the first request for the pair.

    The rules that can apply are those of the families picked for it whose applies_to names
    its drug, one of its drug's classes or its modality; ``payload`` is the keys their durable
    rules read, the fact durable_rules is given. The request's working fact holds those, what
    picks the families (drug, modality, the drug-class flags) and the inputs of the derived
    facts the plan computes (Plan.for_request: those the rules for the drug or modality read).
    A request then copies only those findings and request fields and runs only those steps.
    ``classes`` is the drug-class flags the plan was made for: a request whose working fact
    sets others is not one the plan is for (Engine._planned checks, unless ``classes_fixed``:
    the plan sets them itself).

    A derived fact whose value depends on the drug and modality alone (Step.keyed) is worked
    out once, here: a request is given its value. A step whose only_if depends on them alone is
    run without it where it holds, and left out where it does not."""

    __slots__ = ("families", "classes", "classes_fixed", "payload", "findings", "fields", "age", "fixed",
                 "puts")

    def __init__(self, rulebook: Any, compiled: Any, case: Case, req: DerivedRequest, facts: dict[str, Any]):
        """From the first request for its drug and modality, and request_facts' fact for it."""
        plan = rulebook.derivation_plan
        drug, modality = req.drug, req.modality
        steps = plan.for_request(drug, modality)
        self.families = compiled.families_for(facts)
        self.classes = on = compiled.classes_on(facts)
        payload = {"kind", "id"}
        for n in self.families:
            family = compiled.families[n]
            for rule_id in family.rule_ids:
                a = rulebook.by_id[rule_id].applies_to
                if (facts.get("drug") in a.drugs or facts.get("modality") in a.modalities
                        or any(flag("drug_class", c) in on for c in a.classes)):
                    payload |= family.rule_keys[rule_id]
        self.payload = ("kind", "id", *sorted(payload - {"kind", "id"}))
        flag_of = {key: name for name, keys in plan.flags.items() for _, key in keys}
        wanted = {flag_of.get(k, k) for k in payload} | {"drug", "modality"}
        for step in steps:
            wanted |= step.reads
        flags = plan.flags
        self.findings = tuple((n, flags.get(n)) for n in _findings_fields(rulebook) if n in wanted)
        self.age = "age" in wanted
        self.fields = {n: flags.get(n) for n in sorted(request_fields() - {"item", "strength"}) if n in wanted}
        fixed: dict[str, Any] = {}
        puts = []
        ctx = Ctx(case, req, rulebook, rulebook.drugs.spec(drug) if drug else None, facts)
        for step in steps:
            if step.keyed:
                for key in ([k for _, k in flags[step.name]] if step.is_list else [step.name]):
                    if key in facts:
                        fixed[key] = facts[key]
            elif step.guard is not None and step.guard_keyed:
                if step.guard(ctx) is True:
                    puts.append(step.runner(guarded=False))
            else:
                puts.append(step.put)
        self.fixed = fixed
        self.puts = tuple(puts)
        self.classes_fixed = any(step.name == "drug_class" and step.keyed for step in steps)

    def facts(self, case: Case, req: DerivedRequest, rulebook: Any) -> dict[str, Any]:
        """request_facts for this request, restricted to the plan (same values, fewer keys)."""
        facts: dict[str, Any] = {"kind": "request", "id": "request"}
        found = case.findings.__dict__
        for name, keys in self.findings:
            value = found[name]
            if value is None:
                continue
            if keys is None:
                facts[name] = value
            else:
                for v, key in keys:
                    facts[key] = v in value
        if self.age and case.patient.age is not None:
            facts["age"] = case.patient.age
        fields, wanted = req.__dict__, self.fields
        for name in req.given:
            if name in wanted:
                keys, value = wanted[name], fields[name]
                if keys is None:
                    facts[name] = value
                elif value is not None:
                    for v, key in keys:
                        facts[key] = v in value
        if self.fixed:   # derived facts of the drug and modality alone, as request_facts derives them
            facts.update(self.fixed)
        if self.puts:
            drug = req.drug
            ctx = Ctx(case, req, rulebook, rulebook.drugs.spec(drug) if drug else None, facts)
            for put in self.puts:
                put(ctx)
        return facts


def _findings_fields(rulebook: Any) -> list[str]:
    """The findings a case can carry, in the model's order (what request_facts walks): the
    declared findings facts, in declaration order (the case model's, read at import)."""
    return [name for name, spec in CASE_FACTS.items() if spec.source == "findings"]


def derive_value(case: Case, req: DerivedRequest, rulebook: Any, name: str) -> Any:
    """One derived fact's value for a request (what-if's inverse search); None if undocumented."""
    facts = request_facts(case, req, rulebook)
    plan = rulebook.derivation_plan
    if name not in facts and name in plan.steps:
        ctx = Ctx(case, req, rulebook, rulebook.drugs.spec(req.drug) if req.drug else None, facts)
        for step in plan.needed({name}):
            if step.name not in facts:
                step.put(ctx)
    return facts.get(name)


# ----------------------------------------------------------------------------- the case's drugs

def _others(case: Case, req: DerivedRequest, rulebook: Any) -> list[tuple[str, str | None, float | None]]:
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


def _case_drugs(case: Case, rulebook: Any):
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
        parsed = _parsed(other.item, rulebook.drugs)   # the cached parse, read only: no copy
        g = _generic(rulebook, other.drug or parsed.get("drug"))
        if g:
            requests.setdefault(g, []).append((pos, other.item, (g, other.strength or parsed.get("strength"),
                                                            other.units_per_day or parsed.get("units_per_day"))))
    summary = (meds, requests)
    globals()["_case_memo"] = (case, case.requests, rulebook, summary)
    return summary


_requests_memo: tuple = (None, None, None, None)


def _case_requests(case: Case, rulebook: Any) -> tuple[set[str], dict[str, set[str]]]:
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
        modality = r.modality or _parsed(r.item, rulebook.drugs).get("modality")
        if modality:
            by_modality.setdefault(modality, set()).add(r.item)
    summary = (in_care, by_modality)
    globals()["_requests_memo"] = (case, case.requests, rulebook, summary)
    return summary


def _generic(rulebook: Any, name: str | None) -> str | None:
    return (rulebook.drugs.generic(name) or name) if name else None


def _has_class(rulebook: Any, generic: str, cls: str) -> bool:
    s = rulebook.drugs.spec(generic)
    return bool(s and cls in s.classes)


# ----------------------------------------------------------------------------- functions

@function("medications_listed")
def _medications_listed(ctx: Ctx) -> bool:
    """The case has a medication list."""
    return bool(ctx.case.medications)


@function("listed")
def _listed(ctx: Ctx, drug_class: str) -> bool | None:
    """A drug of this class is on the medication list; None when there is no list."""
    if not ctx.case.medications:
        return None
    return any(_has_class(ctx.rulebook, g, drug_class) for g in _case_drugs(ctx.case, ctx.rulebook)[0])


@function("requested")
def _requested(ctx: Ctx, drug_class: str) -> bool:
    """A request of the case (this one included) names a drug of this class."""
    return any(_has_class(ctx.rulebook, g, drug_class) for g in _case_drugs(ctx.case, ctx.rulebook)[1])


@function("other_sedating_listed")
def _other_sedating_listed(ctx: Ctx) -> bool | None:
    """Another medication on the list (not the drug requested) is sedating; None without a list."""
    if not ctx.case.medications:
        return None
    drugs, mine = ctx.rulebook.drugs, ctx.req.drug
    return any((s := drugs.spec(drugs.generic(m.name) or "")) and s.sedating
               for m in ctx.case.medications if drugs.generic(m.name) != mine)


@function("other_drugs")
def _other_drugs(ctx: Ctx, drug_class: str, topical: bool = True) -> int:
    """How many other drugs of the class are listed or requested (each generic once); with
    topical=False a topical form (a strength in %) does not count."""
    return len({o[0] for o in _others(ctx.case, ctx.req, ctx.rulebook)
                if _has_class(ctx.rulebook, o[0], drug_class) and (topical or not (o[1] and "%" in o[1]))})


@function("other_request")
def _other_request(ctx: Ctx, modality: str | list | None = None, continuing: bool = False) -> bool:
    """Another request of the case (not this same item) is of the modality (or any of a list),
    or, with continuing=True, continues care in progress (prior treatment or visits)."""
    in_care, by_modality = _case_requests(ctx.case, ctx.rulebook)
    item = ctx.req.item

    def other(items: set[str]) -> bool:
        return len(items) > 1 or (bool(items) and item not in items)
    if continuing:
        return other(in_care)
    names = [modality] if isinstance(modality, str) else list(modality or [])
    return any(other(by_modality.get(m, set())) for m in names)


_patterns: dict[str, re.Pattern] = {}


def _pattern(p: str) -> re.Pattern:
    hit = _patterns.get(p)
    if hit is None:
        hit = _patterns[p] = re.compile(p, re.I)
    return hit


@function("matches")
def _matches(ctx: Ctx, text: str | None, pattern: str) -> bool | None:
    """The text matches the regular expression (case-insensitive); None for no text."""
    return None if text is None else bool(_pattern(pattern).search(text))


@function("diagnosis_matches")
def _diagnosis_matches(ctx: Ctx, pattern: str) -> bool:
    """A diagnosis of the case matches the regular expression (case-insensitive)."""
    rx = _pattern(pattern)
    return any(rx.search(d) for d in ctx.case.diagnoses)


@function("strength_mg")
def _strength_mg(ctx: Ctx, strength: str | None) -> list[float] | None:
    """The mg figures of a strength ("10/325 mg" gives [10, 325]); None when it names none."""
    mg = strength_mg(strength) if strength else None
    return list(mg) if mg else None


@function("has_class")
def _has_class_fn(ctx: Ctx, names: list[str] | None, drug_class: str) -> bool | None:
    """Any of the named drugs (e.g. a compound's ingredients) is of the class (drugs.yaml)."""
    if names is None:
        return None
    return any(_has_class(ctx.rulebook, n, drug_class) for n in names)


# ----------------------------------------------------------------------------- derivations

@derivation("months_since_injury", inverse=None)   # dates are what they are: nothing to propose
def _months_since_injury(ctx: Ctx) -> int | None:
    """Whole months from the injury date to the request date."""
    case = ctx.case
    if not (case.injury_date and case.request_date):
        return None
    a, b = case.injury_date, case.request_date
    return (b.year - a.year) * 12 + b.month - a.month - (b.day < a.day)


def _morphine_mg(spec: Any, strength: str | None, per_day: float | None) -> float | None:
    """Daily oral morphine mg of one opioid: strength x units a day (as directed, else the
    usual) x the conversion factor; for a patch (strength_unit mcg/hr) its rate x the factor;
    0 for an opioid the conversion tables leave out; None when any of them is unknown."""
    if spec is not None and spec.morphine_equivalent_excluded:
        return 0.0
    if spec is None or spec.morphine_equivalent is None:
        return None
    if spec.strength_unit == "mcg/hr":
        rate = strength_mcg(strength)
        return rate[0] * spec.morphine_equivalent if rate else None
    mg = strength_mg(strength)
    if not mg or len(mg) < spec.opioid_figure:
        return None
    return mg[spec.opioid_figure - 1] * (per_day or spec.daily_units) * spec.morphine_equivalent


@derivation("morphine_equivalent_total", inverse=None)   # a sum over several drugs: no one field to change
def _morphine_equivalent_total(ctx: Ctx, drug_class: str = "opioid") -> int | None:
    """The documented morphine-equivalent dose if stated, else the sum over this drug and every
    other drug of the class listed or requested; None when any part is unknown."""
    stated = ctx.case.findings.morphine_equivalent_dose
    if stated is not None:
        return stated
    rb, req = ctx.rulebook, ctx.req
    total = _morphine_mg(ctx.spec, req.strength, req.units_per_day)
    for generic, strength, per_day in _others(ctx.case, req, rb):
        if not _has_class(rb, generic, drug_class):
            continue
        part = _morphine_mg(rb.drugs.spec(generic), strength, per_day)
        total = None if (total is None or part is None) else total + part
    return None if total is None else round(total)


def _list_fact(facts: dict[str, Any], rulebook: Any, name: str) -> list[str]:
    """A derived list's members: the facts hold it as its member flags (name__value)."""
    return [v for v in rulebook.facts[name].values or () if facts.get(f"{name}__{v}")]


def _finding_in_region_inverse(case: Case, fields: dict[str, Any], rulebook: Any, op: str, bound: Any,
                               want_met: bool, finding: str, regions: str,
                               bears_on: dict[str, list[str]] | None = None, request: str = "body_region") -> list:
    """What-if: document the finding (true, or false to deny); to hold it for this request where
    the case places it elsewhere, place it in the request's regions too. Words None: the
    criterion's own (what-if says "document <missing>")."""
    if op != "equals" or not isinstance(bound, bool):
        return []
    value = bound if want_met else not bound
    change = [(f"findings.{finding}", value, None)]
    where = getattr(case.findings, regions, None)
    if request == "body_region":
        wanted = fields.get("body_region") if isinstance(fields, dict) else getattr(fields, "body_region", None)
    else:   # the request's regions as a derived fact says them (a limb's study: its spine)
        req = fields if isinstance(fields, DerivedRequest) else DerivedRequest.of(dict(fields))
        wanted = _list_fact(request_facts(case, req, rulebook), rulebook, request)
    if value and where and wanted:
        order = list(rulebook.facts["body_region"].values or ())
        placed = [r for r in order if r in {*where, *wanted}]
        change.append((f"findings.{regions}", placed, f"document that the {finding.replace('_', ' ')} concerns "
                                                       f"the body part requested ({', '.join(wanted)})"))
    return [change]


@derivation("finding_in_region", inverse=_finding_in_region_inverse)
def _finding_in_region(ctx: Ctx, finding: str, regions: str,
                       bears_on: dict[str, list[str]] | None = None, request: str = "body_region") -> bool | None:
    """A region-bound finding (``finding``, a boolean) as it holds for this request's body part:
    the finding itself where the case does not place it (``regions`` left out) or the request
    names no region; else whether a region it was found in bears on a region of the request
    (``bears_on``: request region -> finding regions; a region not listed bears on itself).
    ``request``: the fact giving the request's regions (a derived list; body_region by default)."""
    value = ctx.facts.get(finding)
    where = getattr(ctx.case.findings, regions, None)
    if request == "body_region":
        wanted = ctx.req.body_region
    else:
        wanted = _list_fact(ctx.facts, ctx.rulebook, request)
    if value is not True or not where or not wanted:
        return value
    bears_on = bears_on or {}
    return any(r in bears_on.get(w, (w,)) for w in wanted for r in where)


# ----------------------------------------------------------------------------- what-if inverse

def solve(case: Case, fields: dict[str, Any], rulebook: Any, fact: str, holds: Callable[[Any], bool],
          ceiling: bool) -> tuple[str, int, dict[str, Any]] | None:
    """The declared inverse of a formula fact: the value of its ``solve.vary`` request field
    (with ``solve.set`` applied) that makes ``holds(fact)`` true, changing the least: for a
    ceiling the largest such value, else the smallest. Integer search, the fact rising with the
    field. None when no value of at least 1 does."""
    step = rulebook.derivation_plan.steps.get(fact)
    if step is None or step.solve is None:
        return None
    vary, fixed = step.solve.vary, dict(step.solve.set)

    def ok(x: int) -> bool:
        req = DerivedRequest.of({**fields, **fixed, vary: x})
        v = derive_value(case, req, rulebook, fact)
        return v is not None and holds(v)

    hi = 1
    if ceiling:
        if not ok(1):
            return None
        while ok(hi * 2) and hi < 1 << 20:
            hi *= 2
        lo, hi = hi, hi * 2          # ok(lo), not ok(hi)
        while hi - lo > 1:
            mid = (lo + hi) // 2
            lo, hi = (mid, hi) if ok(mid) else (lo, mid)
        return vary, lo, fixed
    while not ok(hi):
        if hi >= 1 << 20:
            return None
        hi *= 2
    lo = hi // 2                      # not ok(lo) (or 0), ok(hi)
    while hi - lo > 1:
        mid = (lo + hi) // 2
        lo, hi = (lo, mid) if ok(mid) else (mid, hi)
    return vary, hi, {}


__all__ = ["DerivedRequest", "request_facts", "FactPlan", "derivation", "function", "Plan", "PlanError", "solve",
           "DERIVATIONS", "FUNCTIONS"]
