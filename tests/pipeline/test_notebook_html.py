"""Executed notebooks as HTML, opened in headless Chromium: nothing comes from the internet, and
markup a model wrote into an output (a script, an event handler, a remote image, a link) is
shown as text or dropped, never run; tables and headings still render."""

import nbformat
import pandas as pd
import pytest
from nbformat.v4 import new_code_cell, new_markdown_cell, new_output

from medsafe_utils.core import paths
from medsafe_utils.pipeline.notebook_html import CONTENT_SECURITY_POLICY
from medsafe_utils.pipeline.report import render_notebooks

pytestmark = pytest.mark.slow
ATTACKS = [
    '<script>document.title = "pwned"; window.pwned = 1</script>',
    '<img src="x" onerror="window.pwned = 2">',
    '<img src="https://tracker.example/pixel.png">',
    '<a href="https://evil.example/">read more</a> <a href="javascript:window.pwned = 3">x</a>',
    '<link rel="stylesheet" href="https://evil.example/s.css">',
    '<iframe src="https://evil.example/"></iframe><svg onload="window.pwned = 4"></svg>',
    '<meta http-equiv="refresh" content="0; url=https://evil.example/">',
]


def _hostile_notebook(path) -> None:
    """The 05 notebook's cells, and outputs a model could have put there."""
    nb = nbformat.read(paths.NOTEBOOKS_DIR / "05_judge.ipynb", as_version=4)
    table = pd.DataFrame({"model": ["m"], "response": ["<b>not bold</b>"], "score": [5]})
    nb.cells += [
        new_markdown_cell("## Math and a table\n\n$x^2$\n\n| a | b |\n|---|---|\n| 1 | 2 |"),
        new_code_cell(
            "table",
            outputs=[
                new_output(
                    "execute_result",
                    data={"text/html": table.to_html(), "text/plain": str(table)},
                    execution_count=1,
                )
            ],
        ),
        new_code_cell(
            "display(HTML(response))",
            outputs=[new_output("display_data", data={"text/html": html}) for html in ATTACKS]
            + [
                new_output("display_data", data={"application/javascript": "window.pwned = 5"}),
                new_output("display_data", data={"text/markdown": ATTACKS[0] + " *em*"}),
            ],
        ),
    ]
    nbformat.write(nb, path)


def test_a_rendered_notebook_loads_nothing_and_runs_no_output(tmp_path, browser):
    executed = tmp_path / "smoke" / "executed"
    executed.mkdir(parents=True)
    _hostile_notebook(executed / "05_judge.ipynb")
    (executed / "05_judge.html").write_text("<script src='https://cdn.example/x.js'></script>")
    page = render_notebooks(tmp_path / "smoke")["05_judge"]  # a page from before is redone
    text = page.read_text(encoding="utf-8")
    assert CONTENT_SECURITY_POLICY in text and "cdn.example" not in text
    assert "cdnjs" not in text and "unpkg" not in text and "<script src" not in text

    browser.get(page.as_uri())
    assert browser.title == "05_judge"
    assert browser.execute_script("return window.pwned === undefined")
    assert browser.current_url == page.as_uri()  # no refresh to elsewhere
    external = browser.execute_script(
        "return Array.from(document.querySelectorAll('[src], [href]'))"
        ".map(e => e.getAttribute('src') || e.getAttribute('href'))"
        ".filter(u => /^\\s*(https?:|\\/\\/|javascript:)/i.test(u))"
    )
    assert external == []
    assert not browser.execute_script("return document.querySelectorAll('script[src]').length")
    loaded = browser.execute_script(
        "return performance.getEntriesByType('resource').map(r => r.name)"
        ".filter(n => /^https?:/.test(n))"
    )
    assert loaded == []
    # The attacks are on the page as text; the tables and headings still render.
    body = browser.find_element("tag name", "body").text
    assert 'document.title = "pwned"' in body and "<b>not bold</b>" in body
    assert browser.execute_script("return document.querySelectorAll('table.dataframe th').length")
    assert browser.execute_script("return document.querySelectorAll('h2').length") >= 2
