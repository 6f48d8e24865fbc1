"""Errors that say which file, which row and what was expected."""

from __future__ import annotations

from pathlib import Path


class DataError(ValueError):
    """Bad input data: names the file, the row where there is one, and what was expected."""

    def __init__(
        self, path: str | Path, problem: str, *, row: int | None = None, expected: str | None = None
    ):
        self.path = str(path)
        self.row = row
        self.problem = problem
        self.expected = expected
        where = f"{self.path}" + (f", row {row}" if row is not None else "")
        message = f"{where}: {problem}"
        if expected:
            message += f" (expected {expected})"
        super().__init__(message)
