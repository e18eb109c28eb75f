"""Errors a user can act on: what went wrong, in which file and line, and what was expected."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


class AnnostreamError(Exception):
    """Base class for errors whose message is meant for a user."""


@dataclass
class InputError(AnnostreamError):
    """Bad input in an analysis folder, gene panel, VCF, PED, config or event.

    ``str(error)`` reads ``FILE:LINE: MESSAGE (expected EXPECTED)``.
    """

    message: str
    file: str | None = None
    line: int | None = None
    expected: str | None = None

    def __post_init__(self) -> None:
        super().__init__(str(self))

    def __str__(self) -> str:
        where = ""
        if self.file:
            where = f"{self.file}:{self.line}: " if self.line is not None else f"{self.file}: "
        tail = f" (expected {self.expected})" if self.expected else ""
        return f"{where}{self.message}{tail}"

    def to_dict(self) -> dict[str, Any]:
        return {"message": str(self), "file": self.file, "line": self.line, "expected": self.expected}


class DuplicateAnalysisError(InputError):
    """An analysis with this name was already imported with different content."""


class MissingGenepanelError(InputError):
    """The analysis names a gene panel that is not in the database."""


class UnknownAnalysisError(InputError):
    """A request names an analysis that is not stored (the API answers 404)."""
