"""The rulebook's parts at run time: plain immutable records, and their behaviour as mixins.

rules/schema.py validates the YAML with pydantic models; the loader turns what they validated
into these records (record_of) and the Rulebook only ever holds records, loaded fresh or from
the start-up cache. This module imports no pydantic, so neither does a warm start: the cache
unpickles records. The schema models inherit the same mixins, so behaviour is written once.

A record class names its fields in order (``_fields``, the schema model's order) and the
defaults of those that have one (``_defaults``); tests/test_rulebook_records.py checks both against
the schema. ``model_validate``, ``model_dump`` and ``model_copy`` work as on the models.
"""

from __future__ import annotations

import datetime as dt
import sys
from functools import cached_property
from typing import Any

# the forms a test over a fact takes, in the order a test's keys are read
TEST_FORMS = ("equals", "not_equals", "lt", "lte", "gt", "gte", "documented", "includes", "excludes")


def _sibling(obj: Any, name: str) -> type:
    """The class called name in obj's own module: a schema model makes schema models, a record
    makes records."""
    return getattr(sys.modules[type(obj).__module__], name)


# ------------------------------------------------------------------ behaviour (both flavours)

class TestMixin:
    """One comparison over a fact. Exactly one key is set."""

    @cached_property
    def op(self) -> str:
        return next(k for k in TEST_FORMS if getattr(self, k) is not None)

    @property
    def operand(self) -> Any:
        return getattr(self, self.op)

    @cached_property
    def description(self) -> str:
        return self.describe()

    def describe(self) -> str:
        op, v = self.op, self.operand
        if op == "documented":
            return "documented"
        if op == "equals":
            return f"is {str(v).lower() if isinstance(v, bool) else v}"
        if op == "not_equals":
            return f"is not {str(v).lower() if isinstance(v, bool) else v}"
        if op in ("lt", "lte", "gt", "gte"):
            sym = {"lt": "<", "lte": "≤", "gt": ">", "gte": "≥"}[op]
            return f"{sym} {v:g}"
        if op == "includes":
            return f"includes {v}"
        return "none of " + ", ".join(v)

    def describe_negation(self) -> str:
        """What the value is when the test does not hold (a guard's "not applicable")."""
        op, v = self.op, self.operand
        if op == "equals" and isinstance(v, bool):
            return f"is {str(not v).lower()}"
        if op in ("equals", "not_equals"):
            return type(self)(**{"not_equals" if op == "equals" else "equals": v}).describe()
        if op in ("lt", "lte", "gt", "gte"):
            flipped = {"lt": "gte", "lte": "gt", "gt": "lte", "gte": "lt"}[op]
            return type(self)(**{flipped: v}).describe()
        if op == "includes":
            return f"excludes {v}"
        if op == "excludes":
            return "includes one of " + ", ".join(v)
        return "not documented"


class GuardMixin:
    """``when:``: the criterion applies only when a test over a fact holds."""

    @cached_property
    def test(self) -> Any:
        # built once, kept: the compiler, the engine and what-if each ask for it
        return _sibling(self, "Test")(**{k: getattr(self, k) for k in TEST_FORMS if getattr(self, k) is not None})

    def applies_when_undocumented(self) -> bool | None:
        """None: required documentation; else whether the criterion applies on a silent record."""
        d = self.if_undocumented
        if d == "required":
            return None
        if hasattr(d, "applies"):       # a GuardDefault
            return d.applies
        from .compiler import test_holds
        return bool(test_holds(self.test, d.assume))


class CriterionMixin:
    @property
    def assumed(self) -> Any:
        """The reviewer's default (an Assume) when the criterion has one, else None."""
        d = self.if_undocumented
        return None if isinstance(d, str) else d


class RuleMixin:
    @property
    def citation(self) -> Any:
        """The first part's citation (listings); determinations use citation_for(edition)."""
        return next(iter(self.parts.values()), None)

    @property
    def edition(self) -> str:
        return ", ".join(self.parts)

    def part_in(self, edition: Any, day: dt.date | None = None) -> str | None:
        """The guideline part through which this rule belongs to an edition (None: it does not)."""
        for part in edition.parts:
            if part.id in self.parts and (day is None or part.covers(day)):
                return part.id
        return None

    @property
    def specificity(self) -> int:
        """Drug rules come before class rules: the drug's own entry is cited first."""
        return 0 if self.applies_to.drugs else (1 if self.applies_to.modalities else 2)

    def citations(self, part: str | None = None) -> list:
        main = self.parts[part] if part else self.citation
        assert main is not None
        extra = [type(main)(guideline=main.guideline, section=c.section, pages=c.pages.get(main.part),
                            certainty=c.certainty, part=main.part) for c in self.also_cites]
        return [main, *extra]


class DatedMixin:
    def covers(self, day: dt.date) -> bool:
        return self.effective_from <= day and (self.effective_until is None or day <= self.effective_until)


class EditionMixin(DatedMixin):
    def part(self, part_id: str) -> Any:
        return next((p for p in self.parts if p.id == part_id), None)


# ------------------------------------------------------------------ records

class Record:
    """Validated values as attributes, immutable. Not a dataclass: generating one costs about
    a millisecond at import, which every start would pay for each of these classes.

    Calling the class (``Rule(...)``) checks only the field names (required, unknown): values
    are stored as given, nested mappings are not made records. Data from outside is validated
    with ``Rule.model_validate(data)`` (the schema model's errors, then the record)."""

    _fields: tuple[str, ...] = ()
    _defaults: dict[str, Any] = {}
    _aliases: dict[str, str] = {}       # field -> its YAML key, where they differ

    def __init__(self, **values: Any):
        d = self.__dict__
        for name in self._fields:
            if name in values:
                d[name] = values.pop(name)
            elif name in self._defaults:
                default = self._defaults[name]
                d[name] = default.copy() if isinstance(default, (list, dict)) else default
            else:
                raise TypeError(f"{type(self).__name__}: {name} is required")
        if values:
            raise TypeError(f"{type(self).__name__}: unknown field {', '.join(values)}")

    @classmethod
    def model_validate(cls, data: Any) -> Any:
        """Validate data with the schema model of the same name (pydantic's errors on bad
        data) and give the record."""
        from . import schema
        return record_of(getattr(schema, cls.__name__).model_validate(data))

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError(f"{type(self).__name__} is immutable")

    def __delattr__(self, name: str) -> None:
        raise AttributeError(f"{type(self).__name__} is immutable")

    def __eq__(self, other: Any) -> bool:
        if type(other) is not type(self):
            return NotImplemented
        return all(getattr(self, f) == getattr(other, f) for f in self._fields)

    def __hash__(self) -> int:
        return hash((type(self).__name__, *(getattr(self, f) for f in self._fields)))

    def __repr__(self) -> str:
        return f"{type(self).__name__}({', '.join(f'{f}={getattr(self, f)!r}' for f in self._fields)})"

    def model_copy(self, *, update: dict[str, Any] | None = None) -> Any:
        new = object.__new__(type(self))
        new.__dict__.update({f: getattr(self, f) for f in self._fields})
        for key, value in (update or {}).items():
            if key not in self._fields:
                raise TypeError(f"{type(self).__name__}: unknown field {key}")
            new.__dict__[key] = value
        return new

    def model_dump(self, *, mode: str = "python", exclude_none: bool = False, exclude_defaults: bool = False,
                   by_alias: bool = False) -> dict[str, Any]:
        """As pydantic's model_dump, for the options this package uses."""
        out = {}
        for f in self._fields:
            value = getattr(self, f)
            if exclude_none and value is None:
                continue
            if exclude_defaults and f in self._defaults and value == self._defaults[f]:
                continue
            out[self._aliases.get(f, f) if by_alias else f] = _dump(value, mode, exclude_none, exclude_defaults,
                                                                     by_alias)
        return out


def _dump(value: Any, mode: str, exclude_none: bool, exclude_defaults: bool, by_alias: bool) -> Any:
    if isinstance(value, Record):
        return value.model_dump(mode=mode, exclude_none=exclude_none, exclude_defaults=exclude_defaults,
                                by_alias=by_alias)
    if isinstance(value, (list, tuple)):
        out = [_dump(v, mode, exclude_none, exclude_defaults, by_alias) for v in value]
        # pydantic keeps a tuple (an Any field's) a tuple in python mode
        return tuple(out) if mode == "python" and isinstance(value, tuple) else out
    if isinstance(value, dict):
        return {k: _dump(v, mode, exclude_none, exclude_defaults, by_alias) for k, v in value.items()}
    if mode == "json" and isinstance(value, dt.date):
        return value.isoformat()
    return value


class Test(TestMixin, Record):
    _fields = TEST_FORMS
    _defaults = dict.fromkeys(TEST_FORMS)


class Assume(Record):
    _fields = ("assume", "because")


class GuardDefault(Record):
    _fields = ("applies", "because")


class Guard(GuardMixin, Record):
    _fields = ("fact", *TEST_FORMS, "if_undocumented")
    _defaults = {**dict.fromkeys(TEST_FORMS), "if_undocumented": "required"}


class Modify(Record):
    _fields = ("supply_days", "sessions")
    _defaults = {"supply_days": None, "sessions": None}


class Criterion(CriterionMixin, Record):
    _fields = ("id", "asks", "fact", "test", "when", "decisive", "met", "failed", "missing", "on_failure",
               "modify", "if_undocumented")
    _defaults = {"when": None, "decisive": True, "failed": None, "on_failure": "non-certify", "modify": None}


class AppliesTo(Record):
    _fields = ("drugs", "classes", "modalities", "regions")
    _defaults = {"drugs": [], "classes": [], "modalities": [], "regions": []}


class Citation(Record):
    _fields = ("guideline", "section", "pages", "certainty", "note", "part")
    _defaults = {"note": None, "part": ""}


class ExtraCitation(Record):
    _fields = ("section", "pages", "certainty", "for_")
    _defaults = {"pages": {}, "for_": None}
    _aliases = {"for_": "for"}


class AppliesWhen(Record):
    _fields = ("fact", "equals")


class Rule(RuleMixin, Record):
    _fields = ("id", "title", "applies_to", "applies_when", "recommendation", "recommends", "criteria",
               "also_cites", "parts", "file", "line")
    _defaults = {"applies_when": None, "criteria": [], "also_cites": [], "parts": {}, "file": "", "line": 0}


class Quote(Record):
    _fields = ("text", "source")


class PartCitation(Record):
    _fields = ("section", "pages", "certainty", "note")
    _defaults = {"section": None, "pages": None, "note": None}


class RuleFile(Record):
    _fields = ("section", "parts", "quote", "rules")
    _defaults = {"quote": None}


class Solve(Record):
    _fields = ("vary", "set", "say")
    _defaults = {"set": {}, "say": {}}


class FactSpec(Record):
    _fields = ("type", "source", "meaning", "values", "minimum", "exclusive_minimum", "maximum", "any_of",
               "all_of", "none_of", "formula", "true_when", "false_when", "function", "inputs", "params",
               "only_if", "solve")
    _defaults = dict.fromkeys(_fields[3:])


class DrugSpec(Record):
    _fields = ("brands", "aliases", "classes", "sedating", "daily_units", "morphine_equivalent", "opioid_figure",
               "strength_unit", "morphine_equivalent_excluded")
    _defaults = {"brands": [], "aliases": [], "morphine_equivalent": None, "opioid_figure": 1, "strength_unit": "mg",
                 "morphine_equivalent_excluded": False}


_DATED = ("effective_from", "effective_until", "source", "date_certainty")


class Part(DatedMixin, Record):
    _fields = (*_DATED, "id", "title")
    _defaults = {"effective_until": None}


class Edition(EditionMixin, Record):
    _fields = (*_DATED, "id", "title", "parts")
    _defaults = {"effective_until": None}


class Manifest(Record):
    _fields = ("name", "version", "editions")


RECORDS: dict[str, type[Record]] = {c.__name__: c for c in (
    Test, Assume, GuardDefault, Guard, Modify, Criterion, AppliesTo, Citation, ExtraCitation, AppliesWhen, Rule,
    Quote, PartCitation, RuleFile, Solve, FactSpec, DrugSpec, Part, Edition, Manifest)}


def record_of(value: Any) -> Any:
    """A validated schema model as its record, recursively (lists and mappings of models too);
    other values as they are."""
    fields = getattr(type(value), "__pydantic_fields__", None)
    if fields is not None:
        cls = RECORDS[type(value).__name__]
        out = object.__new__(cls)
        # the record's field order, the schema's values (tests check both name the same fields)
        out.__dict__.update({f: record_of(getattr(value, f)) for f in cls._fields})
        return out
    if isinstance(value, list):
        return [record_of(v) for v in value]
    if isinstance(value, dict):
        return {k: record_of(v) for k, v in value.items()}
    return value
