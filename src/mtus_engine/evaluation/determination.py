"""Determinations: what the engine concluded for each request, and why.

These are the engine's output contract (JSON field names are public). They are plain slotted
dataclasses, built many thousands of times a second from already-validated data. What is built
once and shared (citations, the rulebook reference) is frozen; a determination and its criteria,
built fresh per request, are not: a frozen dataclass sets every field through object.__setattr__,
six times the cost of building one (~20 us a request). Treat them as read-only all the same.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal, get_args

# the one decision vocabulary: the engine's answers, in the order summaries list them
Decision = Literal["certify", "modify", "non-certify", "no-rule"]
DECISIONS: tuple[str, ...] = get_args(Decision)
CriterionState = Literal["met", "failed", "not documented", "not applicable"]
SEVERITY = {"certify": 0, "modify": 1, "non-certify": 2}


@dataclass(frozen=True, slots=True)
class CitationOut:
    guideline: str
    section: str
    pages: str | None
    certainty: Literal["letter", "public", "recalled"]
    part: str = ""                 # guideline part id (rulebook.yaml)


@dataclass(slots=True)
class CriterionResult:
    rule: str
    criterion: str
    asks: str
    fact: str
    value: Any
    source: str | None             # where the value came from: case, item, medications...
    test: str
    state: CriterionState
    decisive: bool
    finding: str                   # the sentence the rationale uses
    assumed: str | None = None     # the record is silent: the rule's default, and why


@dataclass(frozen=True, slots=True)
class ModifiedRequest:
    """What UR may certify instead: fields, and the phrase naming the change (from the phrasebook)."""

    item: str                       # the request as modified, in words
    quantity: int | None = None
    refills: int | None = None
    sessions: int | None = None
    supply_days: int | None = None
    change: str = ""                # "6 visits", "#63, no refills: 21 days"


@dataclass(slots=True)
class Determination:
    request: str
    decision: Decision
    medically_necessary: bool | None
    rationale: str
    citations: list[CitationOut]
    rules_fired: list[str]
    criteria: list[CriterionResult]
    missing_documentation: list[str]
    modified_request: ModifiedRequest | None = None
    reason: str | None = None       # for no-rule: why no rule covers the item

    def to_json_data(self) -> dict[str, Any]:
        # explicit rather than dataclasses.asdict: this runs once per request in batches
        m = self.modified_request
        return {
            "request": self.request, "decision": self.decision,
            "medically_necessary": self.medically_necessary, "rationale": self.rationale,
            "citations": [{"guideline": c.guideline, "section": c.section, "pages": c.pages,
                           "certainty": c.certainty, "part": c.part} for c in self.citations],
            "rules_fired": list(self.rules_fired),
            "criteria": [{"rule": c.rule, "criterion": c.criterion, "asks": c.asks, "fact": c.fact,
                          "value": c.value, "source": c.source, "test": c.test, "state": c.state,
                          "decisive": c.decisive, "finding": c.finding, "assumed": c.assumed}
                         for c in self.criteria],
            "missing_documentation": list(self.missing_documentation),
            "modified_request": None if m is None else {"item": m.item, "quantity": m.quantity,
                                                         "refills": m.refills, "sessions": m.sessions,
                                                         "supply_days": m.supply_days, "change": m.change},
            "reason": self.reason,
        }


@dataclass(frozen=True, slots=True)
class RulebookRef:
    edition: str | None
    version: str
    digest: str
    edition_basis: str = ""        # why this edition: the request date, or its absence
    edition_chosen: bool = False   # named by the user, not the edition in effect on the date


@dataclass(frozen=True, slots=True)
class CaseDetermination:
    case_id: str
    rulebook: RulebookRef
    determinations: list[Determination] = field(default_factory=list)

    def to_json_data(self) -> dict[str, Any]:
        rb = self.rulebook
        return {"case_id": self.case_id,
                "rulebook": {"edition": rb.edition, "version": rb.version, "digest": rb.digest,
                             "edition_basis": rb.edition_basis, "edition_chosen": rb.edition_chosen},
                "determinations": [d.to_json_data() for d in self.determinations]}
