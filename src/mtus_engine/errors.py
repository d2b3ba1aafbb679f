"""Errors raised for bad input. Every one names where the problem is and what was expected."""

from __future__ import annotations


class MtusError(Exception):
    """Base class for errors the CLI reports as one clean line (exit code 2)."""


class InputError(MtusError):
    """Bad input: a case, letter or rule file that cannot be read or is invalid.

    ``source`` is the file (or ``<stdin>``), ``line`` the line in it when known, ``location``
    the field path or ``line N``, ``expected`` what would have been valid. An error about
    several problems (``InputError.of``) lists each on a line of its own, first one first.
    """

    def __init__(self, source: str, problem: str, *, location: str | None = None,
                 expected: str | None = None, line: int | None = None):
        self.source = source
        self.problem = problem
        self.location = location
        self.expected = expected
        self.line = line
        self.problems: list[InputError] = [self]
        super().__init__(self.message)

    @classmethod
    def of(cls, problems: list["InputError"]) -> "InputError":
        """One error reporting every problem (at least one); its fields are the first's."""
        first = problems[0]
        err = cls(first.source, first.problem, location=first.location, expected=first.expected, line=first.line)
        err.problems = list(problems)
        err.args = (err.message,)
        return err

    @property
    def message(self) -> str:
        if len(self.problems) > 1:
            return "\n".join(p.message for p in self.problems)
        where = self.source + (f":{self.line}" if self.line else "") + (f": {self.location}" if self.location else "")
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
