"""The Python API behind every CLI command, so a service can do what the CLI does."""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

from .case import Case, load_case, load_case_text
from .determination import CaseDetermination
from .engine import Engine
from .errors import InputError
from .yamlio import DEFAULT_MAX_BYTES


@dataclass
class Evaluated:
    source: str
    result: CaseDetermination | None = None
    error: InputError | None = None
    explain: list[list[str]] | None = None


def read_case(source: str, *, max_bytes: int = DEFAULT_MAX_BYTES) -> Case:
    """A case from a path, or ``-`` for standard input."""
    if source == "-":
        raw = sys.stdin.buffer.read(max_bytes + 1)
        if len(raw) > max_bytes:
            raise InputError("<stdin>", f"input is over the {max_bytes}-byte limit")
        return load_case_text(raw, "<stdin>")
    return load_case(Path(source), max_bytes=max_bytes)


def evaluate_sources(sources: list[str], engine: Engine, *, explain: bool = False,
                     max_bytes: int = DEFAULT_MAX_BYTES) -> list[Evaluated]:
    """Evaluate each case file; a bad file is reported and the rest go on."""
    out = []
    for source in sources:
        try:
            case = read_case(source, max_bytes=max_bytes)
        except InputError as exc:
            out.append(Evaluated(source, error=exc))
            continue
        result = engine.evaluate(case)
        trace = [engine.fire(case, i) for i in range(len(case.requests))] if explain else None
        out.append(Evaluated(source, result=result, explain=trace))
    return out
