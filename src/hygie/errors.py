"""Errors a user can act on.

A ``HygieError`` is the user's to fix (bad input, unknown release...): the CLI prints it and exits 1.
Any other exception is a bug in hygie: the CLI exits 2. Messages never carry patient values beyond what
the operator already holds in the input file at the named place.
"""

from __future__ import annotations

from dataclasses import dataclass


class HygieError(Exception):
    """An error the user can fix; its message says what and where."""


@dataclass(frozen=True)
class Problem:
    """One problem found in an input: where it is and why it is a problem."""

    file: str
    reason: str
    row: int | None = None  # 1-based data row (the header is not counted)
    column: str | None = None

    def __str__(self) -> str:
        where = self.file
        if self.row is not None:
            where += f", row {self.row}"
        if self.column is not None:
            where += f", column '{self.column}'"
        return f"{where}: {self.reason}"


class InputError(HygieError):
    """The input cannot be loaded; nothing was published."""

    def __init__(self, problems: list[Problem] | Problem, *, more: int = 0, hint: str | None = None) -> None:
        self.problems = [problems] if isinstance(problems, Problem) else list(problems)
        self.more = more
        lines = [str(p) for p in self.problems]
        if more:
            lines.append(f"... and {more} more problem(s) of the same kind")
        if hint:
            lines.append(f"hint: {hint}")
        super().__init__("\n".join(lines))


class NotFoundError(HygieError):
    """A named object (release, dataset...) does not exist."""


class ConflictError(HygieError):
    """The action would overwrite or contradict something that already exists."""
