"""CSV that a spreadsheet opens as text: a cell of model, request or rater text that begins like
a formula is written with a leading apostrophe, so no spreadsheet evaluates it (OWASP, CSV
injection). The form's Save labels (review_form.html, csvField) applies the same rule.

    write_csv(frame, path)   # every writer of a CSV that a person may open in a spreadsheet
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

# A cell starting with one of these is a formula (or becomes one) in Excel, LibreOffice, Sheets.
FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def neutralise(value):
    """`value` with an apostrophe before a formula-like start; any other value unchanged."""
    if isinstance(value, str) and value.startswith(FORMULA_START):
        return "'" + value
    return value


def safe_frame(frame: pd.DataFrame) -> pd.DataFrame:
    """A copy whose text cells are neutralised (numeric columns are left as numbers)."""
    out = frame.copy()
    out.columns = [neutralise(c) for c in out.columns]  # a pivot's headers may be model names
    for column in out.columns:
        values = out[column]
        if isinstance(values.dtype, pd.CategoricalDtype):
            values = values.astype(object)
        if values.dtype == object or pd.api.types.is_string_dtype(values):
            out[column] = values.map(neutralise)
    return out


def write_csv(frame: pd.DataFrame, path: str | Path, **kwargs) -> Path:
    """`frame.to_csv(path, index=False, **kwargs)` with every text cell neutralised and CRLF
    line ends (RFC 4180, as Excel writes; a cell holding a bare CR is then quoted, not split)."""
    path = Path(path)
    safe_frame(frame).to_csv(path, index=False, lineterminator="\r\n", **kwargs)
    return path
