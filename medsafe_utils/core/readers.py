"""Low-level readers that turn a file into rows (or its sha256) or raise a DataError naming file
and row."""

from __future__ import annotations

import csv
import hashlib
import json
from pathlib import Path

from medsafe_utils.core.errors import DataError


def read_text(path: Path) -> str:
    """A UTF-8 text file; bad encoding names the byte offset and its line."""
    raw = Path(path).read_bytes()
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as err:
        line = raw[: err.start].count(b"\n") + 1
        raise DataError(
            path, f"not valid UTF-8 at byte {err.start}", row=line, expected="UTF-8 text"
        ) from None


def read_csv_rows(path: Path, required: list[str]) -> list[dict[str, str]]:
    """CSV rows as dicts; `row` in errors is the 1-based data row (header excluded)."""
    reader = csv.DictReader(read_text(path).splitlines(keepends=True))
    header = reader.fieldnames or []
    missing = [c for c in required if c not in header]
    if missing:
        raise DataError(
            path, f"missing column(s) {missing}; header is {header}", expected=f"columns {required}"
        )
    try:
        return list(reader)
    except csv.Error as err:
        raise DataError(path, f"malformed CSV: {err}", row=reader.line_num) from None


def read_json(path: Path):
    """A whole JSON document."""
    try:
        return json.loads(read_text(path))
    except json.JSONDecodeError as err:
        raise DataError(
            path, f"invalid JSON: {err.msg}", row=err.lineno, expected="a complete JSON document"
        ) from None


def read_jsonl(path: Path) -> list[dict]:
    """One JSON object per non-empty line; `row` in errors is the line number."""
    rows = []
    for lineno, line in enumerate(read_text(path).splitlines(), start=1):
        if not line.strip():
            continue
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError as err:
            raise DataError(
                path,
                f"invalid JSON line: {err.msg}",
                row=lineno,
                expected="one JSON object per line",
            ) from None
    return rows


def require_fields(
    path: Path, rows: list[dict], fields: list[str], *, nonempty: list[str] = (), first_row: int = 1
) -> None:
    """Every row has `fields`, and the `nonempty` ones hold non-blank text."""
    for i, row in enumerate(rows, start=first_row):
        if not isinstance(row, dict):
            raise DataError(path, f"row is a {type(row).__name__}", row=i, expected="an object")
        missing = [f for f in fields if f not in row]
        if missing:
            raise DataError(path, f"missing field(s) {missing}", row=i, expected=f"fields {fields}")
        for field in nonempty:
            value = row[field]
            if not isinstance(value, str) or not value.strip():
                raise DataError(
                    path, f"empty {field!r}", row=i, expected=f"non-empty text in {field!r}"
                )


def check_count(path: Path | str, actual: int, expected: int, what: str) -> None:
    """Exact row counts: a short or padded dataset is an error, not a warning."""
    if actual != expected:
        raise DataError(path, f"{actual} {what}", expected=f"exactly {expected} {what}")


_verified: dict[tuple[str, int, int], str] = {}


def sha256_of(path: Path) -> str:
    """Hex sha256 of a file, remembered per (path, size, mtime) within the process."""
    stat = path.stat()
    key = (str(path), stat.st_size, stat.st_mtime_ns)
    if key not in _verified:
        digest = hashlib.sha256()
        with open(path, "rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                digest.update(block)
        _verified[key] = digest.hexdigest()
    return _verified[key]
