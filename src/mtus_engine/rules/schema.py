"""The rulebook's YAML schema: pydantic models that validate rulebook.yaml, the vocabulary and
the rule files, reporting each problem at its key (the loader adds file and line).

Only a YAML load imports this module (a cold start, lint, MTUS_NO_CACHE=1): the loader turns
what these models validated into the plain records of rules/records.py, which the Rulebook
holds and the start-up cache pickles, so a warm start imports no pydantic. The models inherit
the records' behaviour (records.TestMixin, ...), written once for both.
"""

from __future__ import annotations

import datetime as dt
from functools import cached_property
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from .records import CriterionMixin, DatedMixin, EditionMixin, GuardMixin, RuleMixin, TestMixin, TEST_FORMS

Certainty = Literal["letter", "public", "recalled"]


class _RuleModel(BaseModel):
    """A rulebook's parts: unknown keys refused, immutable once loaded (cases are mutable)."""

    # defer_build: a rulebook from the start-up cache is unpickled, never validated, so the
    # validators are built on first validation only (a YAML load), not at import
    model_config = ConfigDict(extra="forbid", frozen=True, defer_build=True)


class _TestForms(BaseModel):
    """The forms a test over a fact takes: a criterion's test: and a when: guard share them."""

    # a part of Test and Guard, never validated itself: no validator built at import
    model_config = ConfigDict(defer_build=True)

    equals: bool | str | None = None
    not_equals: bool | str | None = None
    lt: float | None = None
    lte: float | None = None
    gt: float | None = None
    gte: float | None = None
    documented: Literal[True] | None = None
    includes: str | None = None
    excludes: list[str] | None = None


class Test(TestMixin, _TestForms):
    """One comparison over a fact. Exactly one key is set."""

    # not frozen: cached_property needs a writable __dict__
    model_config = ConfigDict(extra="forbid", ignored_types=(cached_property,), defer_build=True)

    @model_validator(mode="after")
    def _one(self) -> "Test":
        set_keys = [k for k in TEST_FORMS if getattr(self, k) is not None]
        if len(set_keys) != 1:
            raise ValueError(f"a test has exactly one of equals, not_equals, lt, lte, gt, gte, documented, "
                             f"includes, excludes (found {', '.join(set_keys) or 'none'})")
        return self


class Assume(_RuleModel):
    """A default a reviewer applies when the records are silent, and why."""

    assume: Any
    because: str = Field(min_length=1)


# What an undocumented fact means for a criterion: required documentation (the criterion is
# "not documented" and the request fails naming it), or a reviewer's default.
IfUndocumented = Literal["required"] | Assume


class GuardDefault(_RuleModel):
    """For a guard over a fact with no natural default value: whether the criterion applies
    when the fact is not documented, and why."""

    applies: bool
    because: str = Field(min_length=1)


class _GuardFact(BaseModel):
    model_config = ConfigDict(defer_build=True)   # a part of Guard, as _TestForms is

    fact: str


# pydantic orders fields from the last base on: fact, then the test's keys, then if_undocumented
# (the order lint reports a guard's problems in)
class Guard(GuardMixin, _TestForms, _GuardFact, _RuleModel):
    """``when:``: the criterion applies only when a test over a fact holds. The test takes the
    same forms as a criterion's (equals, not_equals, lt, lte, gt, gte, includes, excludes)."""

    if_undocumented: Literal["required"] | Assume | GuardDefault = "required"

    @model_validator(mode="after")
    def _one_test(self) -> "Guard":
        self.test    # a Test, validated: exactly one form (GuardMixin keeps it)
        return self


class Modify(_RuleModel):
    supply_days: int | None = Field(default=None, gt=0)
    sessions: int | None = Field(default=None, gt=0)


class Criterion(CriterionMixin, _RuleModel):
    id: str = Field(pattern=r"^[a-z0-9][a-z0-9-]*$")
    asks: str
    fact: str
    test: Test
    when: Guard | None = None
    decisive: bool = True
    met: str
    failed: str | None = None
    missing: str
    on_failure: Literal["non-certify", "modify"] = "non-certify"
    modify: Modify | None = None
    if_undocumented: IfUndocumented

    @model_validator(mode="after")
    def _modify_needs_target(self) -> "Criterion":
        if self.on_failure == "modify" and self.modify is None:
            raise ValueError("on_failure: modify needs a modify: target (supply_days or sessions)")
        if self.test.op != "documented" and self.failed is None:
            raise ValueError("a criterion that can fail needs failed: wording")
        return self


class AppliesTo(_RuleModel):
    drugs: list[str] = Field(default_factory=list)
    classes: list[str] = Field(default_factory=list)
    modalities: list[str] = Field(default_factory=list)
    # with modalities: only for these body regions (imaging of the knee, not of the spine)
    regions: list[str] = Field(default_factory=list)

    @model_validator(mode="after")
    def _something(self) -> "AppliesTo":
        if self.regions and not self.modalities:
            raise ValueError("applies_to.regions narrows modalities; name the modalities too")
        if not (self.drugs or self.classes or self.modalities):
            raise ValueError("applies_to names no drugs, classes or modalities")
        return self


class Citation(_RuleModel):
    guideline: str
    section: str
    pages: str | None
    certainty: Certainty
    note: str | None = None
    part: str = ""                  # the guideline part (edition) id it cites


class ExtraCitation(_RuleModel):
    section: str
    # pages by guideline part; a part not named is cited by section alone (2016 letters give none)
    pages: dict[str, str] = Field(default_factory=dict)
    certainty: Certainty
    for_: str | None = Field(default=None, alias="for")


class AppliesWhen(_RuleModel):
    """The section speaks to this request only when a fact has this value (a post-operative
    opioid, not every opioid); an undocumented fact means the rule does not apply."""

    fact: str
    equals: Any


class Rule(RuleMixin, _RuleModel):
    id: str = Field(pattern=r"^[a-z0-9][a-z0-9.-]*$")
    title: str
    applies_to: AppliesTo
    applies_when: AppliesWhen | None = None
    recommendation: Literal["recommended", "not-recommended"]
    recommends: str
    criteria: list[Criterion] = Field(default_factory=list)
    also_cites: list[ExtraCitation] = Field(default_factory=list)
    # filled in by the loader: the citation under each guideline part the rule belongs to
    parts: dict[str, Citation] = Field(default_factory=dict)
    file: str = ""
    line: int = 0


class Quote(_RuleModel):
    text: str
    source: str


class PartCitation(_RuleModel):
    """How letters cite a rule file's section under one guideline part."""

    section: str | None = None      # when the part names the section differently
    pages: str | None = None        # None: cited by section alone
    certainty: Certainty            # of the pages (or, with none, of the section name)
    note: str | None = None


class RuleFile(_RuleModel):
    section: str
    # guideline part id (rulebook.yaml) -> how this section is cited there; one file serves
    # every part whose text carries the criteria forward
    parts: dict[str, PartCitation] = Field(min_length=1)
    quote: Quote | None = None
    rules: list[Rule] = Field(min_length=1)


class Solve(_RuleModel):
    """What-if's inverse of a formula: the request field to vary (the fact rising with it), and
    fields set alongside (e.g. no refills when the quantity alone sets the supply)."""

    vary: str
    set: dict[str, Any] = Field(default_factory=dict)
    # how what-if words each change: field -> text with {bound} (at most / at least) and {value}
    say: dict[str, str] = Field(default_factory=dict)


class FactSpec(_RuleModel):
    type: Literal["boolean", "integer", "number", "string", "list"]
    source: Literal["findings", "request", "patient", "derived"]
    meaning: str
    values: list[str] | None = None
    # bounds of a number a case may state (past them it is a data-entry error, refused)
    minimum: int | float | None = None
    exclusive_minimum: int | float | None = None
    maximum: int | float | None = None
    # a derived fact is declared as data (see docs/writing-rules.md, "Adding a derived fact"):
    # three-valued combinations of boolean facts ...
    any_of: list[str] | None = None
    all_of: list[str] | None = None
    none_of: list[str] | None = None
    # ... an expression giving the value, or true/false conditions ...
    formula: str | None = None
    true_when: str | None = None
    false_when: str | None = None
    # ... or a Python derivation registered in derivations.py, with its inputs and parameters
    function: str | None = None
    inputs: list[str] | None = None
    params: dict[str, Any] | None = None
    only_if: str | None = None      # the fact is left out unless this holds
    solve: Solve | None = None      # what-if: the request field that moves a formula fact

    @model_validator(mode="after")
    def _derivation_is_derived(self) -> "FactSpec":
        forms = [k for k in ("any_of", "all_of", "none_of", "formula", "true_when", "function")
                 if getattr(self, k) is not None]
        if forms and self.source != "derived":
            raise ValueError(f"{forms[0]} declares a derived fact (source: derived)")
        if len(forms) > 1:
            raise ValueError(f"a derived fact has one derivation (found {', '.join(forms)})")
        if any(getattr(self, k) is not None for k in ("any_of", "all_of", "none_of", "true_when")) \
                and self.type != "boolean":
            raise ValueError(f"{forms[0]} declares a derived boolean (type: boolean)")
        if self.false_when is not None and self.true_when is None:
            raise ValueError("false_when goes with true_when")
        if (self.params is not None or self.inputs is not None) and self.function is None:
            raise ValueError("inputs and params go with function:")
        bounded = (self.minimum, self.exclusive_minimum, self.maximum) != (None, None, None)
        if bounded and self.type not in ("integer", "number"):
            raise ValueError("minimum/maximum bound an integer or number fact")
        return self


class DrugSpec(_RuleModel):
    brands: list[str] = Field(default_factory=list)
    aliases: list[str] = Field(default_factory=list)
    classes: list[str] = Field(min_length=1)
    sedating: bool
    daily_units: float = Field(gt=0)
    # oral morphine equivalent per mg (opioids); None where no single factor holds (methadone)
    morphine_equivalent: float | None = Field(default=None, gt=0)
    # which figure of a combined strength is the opioid ("300/30 mg" acetaminophen/codeine: 2)
    opioid_figure: int = Field(default=1, ge=1, le=4)
    # "mcg/hr": the strength is a patch's delivery rate; the daily morphine equivalent is the
    # rate x the factor, whatever the number of patches a day (fentanyl, CDC/MTUS tables)
    strength_unit: Literal["mg", "mcg/hr"] = "mg"
    # a partial agonist the conversion tables leave out (buprenorphine): counts for nothing in
    # the morphine-equivalent total, and the dosing ceiling does not speak to it
    morphine_equivalent_excluded: bool = False


class _Dated(DatedMixin, _RuleModel):
    effective_from: dt.date
    effective_until: dt.date | None = None
    source: str = Field(min_length=1)          # where the dates come from
    date_certainty: Certainty


class Part(_Dated):
    """One guideline of the MTUS as letters cite it (CPMTG 2016, ACOEM Low Back 2004, ...)."""

    id: str
    title: str                                  # as the letters write it


class Edition(EditionMixin, _Dated):
    """The MTUS as in force over a span of dates: the guideline parts it is made of."""

    id: str
    title: str
    parts: list[Part] = Field(min_length=1)


class Manifest(_RuleModel):
    name: str
    version: str
    editions: list[Edition] = Field(min_length=1)

    @model_validator(mode="before")
    @classmethod
    def _drop_anchors(cls, data: Any) -> Any:
        # x- keys only hold YAML anchors that editions share
        return {k: v for k, v in data.items() if not str(k).startswith("x-")} if isinstance(data, dict) else data
