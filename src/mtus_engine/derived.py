"""A request after derivation (case.derive_request): every field of a Request, typed, with the
fields the records leave out as None. Reading a field that does not exist raises (the old
dict-with-getattr read a typo as None and a rule silently saw "not documented")."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterator


@dataclass(frozen=True, slots=True)
class DerivedRequest:
    item: str
    drug: str | None = None
    strength: str | None = None
    quantity: int | None = None
    refills: int | None = None
    sessions: int | None = None
    prior_sessions: int | None = None
    authorized_sessions: int | None = None
    prior_treatment: bool | None = None
    prior_use_weeks: int | None = None
    functional_improvement: bool | None = None
    modality: str | None = None
    body_region: list[str] | None = None
    incomplete: bool | None = None
    units_per_day: float | None = None
    ingredients: list[str] | None = None
    diagnosis_type: str | None = None
    purchase: bool | None = None
    fluoroscopy: bool | None = None
    injections_past_year: int | None = None
    injections_per_session: int | None = None
    hours_per_week: int | None = None
    homemaker_only: bool | None = None
    # the fields derivation gave, in its order (request_facts keeps absent facts out)
    given: tuple[str, ...] = ()

    @classmethod
    def of(cls, fields: dict[str, Any]) -> "DerivedRequest":
        """From derive_request's fields; an unknown field is a TypeError, never dropped."""
        return cls(**fields, given=tuple(fields))

    def items(self) -> Iterator[tuple[str, Any]]:
        """The fields derivation gave, in its order (None-valued ones never are)."""
        for name in self.given:
            yield name, getattr(self, name)
