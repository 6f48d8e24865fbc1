"""Tables as a notebook shows them: never elided. `set_display_options` (called by
quiet.setup_notebook) keeps pandas from cutting cell texts and columns; `show_table` shows a long
table's head with a sentence saying how many rows it has and which CSV holds them all, and an
empty table as a sentence saying why it is empty.

    show_table(table, run.path("tab_harmfulness.csv"))   # whole up to MAX_ROWS rows
    show_table(unscored, empty="Every answer had a clear score.")"""

from __future__ import annotations

import html
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from medsafe_utils.core import paths

MAX_ROWS = 40  # whole up to this (the paper's 32 models); longer: its first HEAD_ROWS rows
HEAD_ROWS = 10
DISPLAY_OPTIONS = {
    "display.max_colwidth": None,  # cell texts whole (model ids, judge ids, file names)
    "display.max_columns": None,  # every column
    "display.width": 1000,  # the text view wraps no table
}


def set_display_options() -> None:
    """pandas' options for notebooks: no cell text and no column cut."""
    for option, value in DISPLAY_OPTIONS.items():
        pd.set_option(option, value)


@dataclass
class Shown:
    """A table (or none) and a sentence under it, for a notebook's HTML and text views."""

    frame: pd.DataFrame | None
    note: str

    def _repr_html_(self) -> str:
        table = self.frame._repr_html_() if self.frame is not None else ""
        return f"{table}<p>{html.escape(self.note)}</p>"

    def __repr__(self) -> str:
        table = f"{self.frame.to_string()}\n\n" if self.frame is not None else ""
        return table + self.note


def _where(csv: Path) -> str:
    """The CSV's path from the repository root when it is inside it, else in full."""
    csv = Path(csv).resolve()
    return str(csv.relative_to(paths.REPO_ROOT) if csv.is_relative_to(paths.REPO_ROOT) else csv)


def show_table(
    frame: pd.DataFrame, csv: Path | str | None = None, *, empty: str = ""
) -> pd.DataFrame | Shown:
    """The table itself up to MAX_ROWS rows; a longer one as its head and a sentence naming its
    row count and the CSV holding it (`csv`); an empty one as the sentence `empty`, if given."""
    if frame.empty and empty:
        return Shown(None, empty)
    if len(frame) <= MAX_ROWS:
        return frame
    where = f"; all of them are in {_where(csv)}" if csv else ""
    return Shown(frame.head(HEAD_ROWS), f"The first {HEAD_ROWS} of {len(frame)} rows{where}.")
