"""Tables as notebooks show them: uncut texts, a long table's head with where the rest is, an
empty expert table as the sentence saying why."""

import pandas as pd

from medsafe_utils.core import paths, quiet
from medsafe_utils.core.display import (
    DISPLAY_OPTIONS,
    HEAD_ROWS,
    MAX_ROWS,
    Shown,
    set_display_options,
    show_table,
)
from medsafe_utils.judge.review import NO_LABELS, ReviewResult


def test_notebooks_keep_cell_texts_and_columns_whole():
    model = "smollm2-135m-instruct+smollm2-135m-instruct__med_n16"  # 51 characters
    wide = pd.DataFrame({f"column_{i}": [model] for i in range(25)})
    defaults = [x for option in DISPLAY_OPTIONS for x in (option, pd.get_option(option))]
    with pd.option_context(*defaults):  # the test's process keeps its own options after
        pd.set_option("display.max_colwidth", 50)
        pd.set_option("display.max_columns", 20)
        assert "..." in repr(wide)  # pandas' defaults cut it
        set_display_options()
        assert "..." not in repr(wide) and repr(wide).count(model) == 25
    assert "set_display_options" in quiet.setup_notebook.__code__.co_names  # every notebook's


def test_a_long_table_shows_its_head_and_names_its_csv():
    table = pd.DataFrame({"model": [f"m{i}" for i in range(MAX_ROWS + 1)]})
    assert show_table(table.head(MAX_ROWS)) is not None
    assert show_table(table.head(MAX_ROWS)).equals(table.head(MAX_ROWS))  # short: itself
    csv = paths.REPO_ROOT / "results" / "smoke" / "05_judge" / "tab_harmfulness.csv"
    shown = show_table(table, csv)
    assert isinstance(shown, Shown) and len(shown.frame) == HEAD_ROWS
    sentence = f"The first {HEAD_ROWS} of {MAX_ROWS + 1} rows; all of them are in "
    assert f"{sentence}results/smoke/05_judge/tab_harmfulness.csv." in repr(shown)
    assert "m0" in shown._repr_html_() and f"m{MAX_ROWS}" not in shown._repr_html_()


def test_an_empty_table_is_a_sentence():
    assert repr(show_table(pd.DataFrame({"n": []}), empty="None unscored.")) == "None unscored."
    assert show_table(pd.DataFrame({"n": []})).empty  # no sentence given: the table itself


def test_expert_tables_without_labels_say_why_and_how():
    empty = ReviewResult(*(pd.DataFrame() for _ in range(4)), pd.DataFrame({"alpha": [None]}))
    shown = empty.show("rater_agreement")
    assert repr(shown) == NO_LABELS and "`expert_labels`" in NO_LABELS
    labelled = ReviewResult(
        *(pd.DataFrame() for _ in range(3)),
        pd.DataFrame({"rater": ["a"]}),
        pd.DataFrame({"alpha": [0.5]}),
    )
    assert labelled.show("rater_agreement").equals(pd.DataFrame({"alpha": [0.5]}))
