"""Errors raised for bad input. Every one names where the problem is and what was expected."""

from __future__ import annotations


class MtusError(Exception):
    """Base class for errors the CLI reports as one clean line (exit code 2)."""


class InputError(MtusError):
    """Bad input: a case, letter or rule file that cannot be read or is invalid.

    ``source`` is the file (or ``<stdin>``), ``location`` the field path or ``line N``,
    ``expected`` what would have been valid.
    """

    def __init__(self, source: str, problem: str, *, location: str | None = None,
                 expected: str | None = None):
        self.source = source
        self.problem = problem
        self.location = location
        self.expected = expected
        super().__init__(self.message)

    @property
    def message(self) -> str:
        where = self.source + (f": {self.location}" if self.location else "")
        text = f"{where}: {self.problem}"
        if self.expected:
            text += f" (expected {self.expected})"
        return text


class RulebookError(MtusError):
    """The rulebook is invalid; carries every problem found, each with file and line."""

    def __init__(self, problems: list[str]):
        self.problems = problems
        super().__init__("\n".join(problems))


class EngineError(MtusError):
    """The rules backend reported an inconsistency; never silently ignored."""
