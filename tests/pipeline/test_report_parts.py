"""report.html's parts on hand-made inputs: the closing paragraphs of the executed notebooks
(each step's own, a shared one once, HTML in them escaped, fan-out jobs' notebooks left out) and
long tables collapsed."""

import nbformat
import pandas as pd
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook, new_output

from medsafe_utils.pipeline.report import CLOSING, OPEN_ROWS, closing_html, table_html

CAVEAT = "**This run proves the pipeline**; it shows no finding."


def _executed(path, closing: str | None, heading: str = f"## 9. {CLOSING}") -> None:
    """An executed notebook whose last two cells are the closing heading and its paragraph."""
    cells = [new_markdown_cell("# A step"), new_code_cell("x = 1")]
    if closing is not None:
        shown = new_output("display_data", data={"text/markdown": closing})
        cells += [new_markdown_cell(f"{heading}\n\nWritten from the tables."), new_code_cell("")]
        cells[-1].outputs = [shown]
    nbformat.write(new_notebook(cells=cells), path)


def test_closing_paragraphs_each_step_then_the_shared_one_escaped(tmp_path):
    executed = tmp_path / "executed"
    executed.mkdir()
    _executed(
        executed / "04_prompt_models.ipynb", f"2 models <script>x()</script> answered.\n\n{CAVEAT}"
    )
    _executed(executed / "05_judge.ipynb", f"One judge passed.\n\n{CAVEAT}")
    _executed(executed / "04_prompt_models.gpt-4o.ipynb", "a job's own paragraph")  # a shard
    _executed(executed / "06_finetune.ipynb", None)  # stopped before its closing section
    page = closing_html(tmp_path)
    assert page.startswith(f"<h2>{CLOSING}</h2><h3>04_prompt_models</h3>")
    assert "<script>" not in page and "&lt;script&gt;x()&lt;/script&gt;" in page
    assert page.index("04_prompt_models") < page.index("One judge passed") < page.index("proves")
    assert page.count("proves the pipeline") == 1 and "<strong>" in page  # markdown rendered
    assert "a job's own paragraph" not in page and "06_finetune" not in page
    _executed(executed / "05_judge.ipynb", "One judge passed.", heading="## 9. Figures")
    assert "One judge passed" not in closing_html(tmp_path)  # only under the closing heading
    for notebook in executed.iterdir():
        notebook.unlink()
    assert closing_html(tmp_path) == ""


def test_long_tables_start_collapsed(tmp_path):
    step = tmp_path / "05_judge"
    step.mkdir()
    for n in (OPEN_ROWS, OPEN_ROWS + 1):
        pd.DataFrame({"model": [f"m{i}" for i in range(n)]}).to_csv(step / f"tab_{n}.csv")
    short = table_html(step / f"tab_{OPEN_ROWS}.csv", tmp_path, harmful_text=False)
    long = table_html(step / f"tab_{OPEN_ROWS + 1}.csv", tmp_path, harmful_text=False)
    assert "<details>" not in short and f"m{OPEN_ROWS - 1}" in short
    assert f"<details><summary>{OPEN_ROWS + 1} rows</summary>" in long and f"m{OPEN_ROWS}" in long
