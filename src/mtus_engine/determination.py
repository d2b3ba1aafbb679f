"""Determinations: what the engine concluded for each request, and why.

The models here are the engine's output contract (JSON field names are public).
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict

Decision = Literal["certify", "modify", "non-certify", "no-rule"]
CriterionState = Literal["met", "failed", "not documented", "not applicable"]
SEVERITY = {"certify": 0, "modify": 1, "non-certify": 2}


class _Out(BaseModel):
    model_config = ConfigDict(frozen=True)


class CitationOut(_Out):
    guideline: str
    section: str
    pages: str | None
    certainty: Literal["letter", "public", "recalled"]


class CriterionResult(_Out):
    rule: str
    criterion: str
    asks: str
    fact: str
    value: Any = None
    source: str | None = None       # where the value came from: case, item, medications...
    test: str
    state: CriterionState
    decisive: bool
    finding: str                   # the sentence the rationale uses


class ModifiedRequest(_Out):
    item: str
    quantity: int | None = None
    refills: int | None = None
    sessions: int | None = None


class Determination(_Out):
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


class RulebookRef(_Out):
    edition: str | None
    version: str
    digest: str


class CaseDetermination(_Out):
    case_id: str
    rulebook: RulebookRef
    determinations: list[Determination]

    def to_json_data(self) -> dict[str, Any]:
        return self.model_dump(mode="json")
