"""A request after derivation (items.derive_request): every field of a Request, typed, with the
fields the records leave out as None. Reading a field that does not exist raises (the old
dict-with-getattr read a typo as None and a rule silently saw "not documented").

The fields are the Request model's: item and strength, then the request facts declared in the
fact vocabulary (read from the declarations, so this module never imports pydantic): a request
fact added to rules/vocabulary is a field here with no Python edit.
"""

from __future__ import annotations

from dataclasses import make_dataclass
from typing import Any, Iterator

from .items import CASE_FACTS

_new = object.__new__


def _of(cls, fields: dict[str, Any]):
    """From derive_request's fields; an unknown field is a TypeError, never dropped.

    Built per request: the fields go into the instance dict in one update instead of through
    the frozen __init__ (object.__setattr__ for each of ~24 fields); the ones not given read
    as their class default, None."""
    if not fields.keys() <= cls._field_names or "item" not in fields:
        return cls(**fields, given=tuple(fields))   # raises the usual TypeError
    obj = _new(cls)
    d = obj.__dict__
    d.update(fields)
    d["given"] = tuple(fields)
    return obj


def _items(self) -> Iterator[tuple[str, Any]]:
    """The fields derivation gave, in its order (None-valued ones never are)."""
    d = self.__dict__
    for name in self.given:
        yield name, d[name]


# each field's type as the Request model annotates it (documentation only: nothing is checked here)
_TYPES = {"boolean": "bool", "integer": "int", "number": "float", "string": "str", "list": "list[str]"}

DerivedRequest = make_dataclass(
    "DerivedRequest",
    [("item", str), ("strength", "str | None", None)]
    + [(name, f"{_TYPES[spec.type]} | None", None) for name, spec in CASE_FACTS.items() if spec.source == "request"]
    # the fields derivation gave, in its order (request_facts keeps absent facts out)
    + [("given", tuple, ())],
    namespace={"of": classmethod(_of), "items": _items, "__module__": __name__},
    # not slotted: class-level defaults let ``of`` fill only the fields given
    frozen=True)
DerivedRequest._field_names = frozenset(DerivedRequest.__dataclass_fields__) - {"given"}
