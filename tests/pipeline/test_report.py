"""Models accumulating in one results folder, and report.html on it in a real headless browser.

The folder is the one the README's "Evaluate your model" commands leave (tests/pipeline/
conftest.py: 04 and 05 on 2 general-harm requests with tiny-random, then SmolLM2, then gpt-4o,
then gpt-4o again): the tables hold every model, the earlier ones are not recomputed, the repeated
command skips both steps. The report opens, every figure loads, every link resolves, and it holds
no request or response unless asked, neither do the executed notebooks it links (those of the
smoke chain: test_rendered_notebooks.py)."""

import contextlib
import html
import io
import json
import shutil
from pathlib import Path
from urllib.parse import unquote, urlparse

import pandas as pd
import pytest

from medsafe_utils.core import paths
from medsafe_utils.pipeline.report import (
    HIDDEN_NOTE,
    WARNING,
    closing_paragraph,
    write_report,
)

pytestmark = pytest.mark.slow
TINY = {"harm_sets": ["general"], "n_general": 2, "max_new_tokens": 8}  # conftest's TINY file


def _records(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


@pytest.mark.server
def test_models_accumulate_without_recomputing(readme_evaluations):
    done = readme_evaluations
    out, (a, _), (b, _) = done.out, done.cases[0], done.cases[-1]
    models = [model for model, _ in done.cases]
    assert not any("up to date" in log for log in done.logs[:3])
    assert done.logs[3].count("up to date, skipped") == 2  # the same command again
    responses = _records(out / "04_prompt_models" / "responses.jsonl")
    assert [r for r in responses if r["model"] == a] == done.first["responses"]  # kept as it was
    assert [r["model"] for r in responses].count(b) == 2
    cache = _records(out / "04_prompt_models" / "generation_cache.jsonl")
    assert [r for r in cache if r["model"] == a] == done.first["cache"]  # not generated again
    manifest = json.loads((out / "04_prompt_models" / "manifest.json").read_text())
    assert manifest["models"] == [b] and manifest["earlier_models"] == sorted(models[:-1])
    assert TINY.items() <= manifest["overrides"].items() and manifest["overrides"]["models"] == [b]
    tab = pd.read_csv(out / "05_judge" / "tab_harmfulness.csv")
    assert sorted(tab.loc[tab["breakdown"] == "harm_set", "model"]) == sorted(models)
    summary = pd.read_csv(out / "04_prompt_models" / "tab_responses_summary.csv")
    assert set(summary["model"]) == set(models)


@pytest.mark.server
def test_report_opens_with_every_figure_and_link(readme_evaluations, browser):
    out, first = readme_evaluations.out, readme_evaluations.first
    report = out / "report.html"
    browser.get(report.as_uri())
    assert browser.title == "MedSafetyBench: paper"
    images = browser.execute_script(
        "return Array.from(document.images).map(i => [i.alt, i.complete, i.naturalWidth])"
    )
    figures = sorted(p.stem for p in out.glob("*/fig_*.png"))
    assert sorted(alt for alt, _, _ in images) == figures and len(figures) >= 3
    assert all(done and width > 0 for _, done, width in images), images
    links = browser.execute_script(
        "return Array.from(document.links).map(a => a.getAttribute('href'))"
    )
    for href in links:
        if href.startswith("#"):
            assert browser.execute_script(
                "return document.getElementById(arguments[0]) !== null", href[1:]
            ), href
        else:
            target = Path(unquote(urlparse((report.parent / href).as_uri()).path))
            assert target.is_file(), href
    executed = sorted(h for h in links if h.startswith("executed/"))
    assert executed == ["executed/04_prompt_models.html", "executed/05_judge.html"]
    browser.get((out / executed[1]).as_uri())  # the notebook renders as a page
    assert browser.title == "05_judge"
    assert "Judge the responses" in browser.find_element("tag name", "body").text
    responses = _records(out / "04_prompt_models" / "responses.jsonl")
    for notebook in executed:  # the cells that show requests and responses say they are hidden
        browser.get((out / notebook).as_uri())
        assert HIDDEN_NOTE.strip() in browser.find_element("tag name", "body").text, notebook
        shown = _page_text(browser)
        assert not any(" ".join(r["request"].split()) in shown for r in responses), notebook

    browser.get(report.as_uri())
    text = browser.find_element("tag name", "body").text
    for step in ("04_prompt_models", "05_judge"):  # each step's wall time from its manifest
        manifest = json.loads((out / step / "manifest.json").read_text())
        assert f"{manifest['wall_s']:.1f}" in text
    assert all(model in text for model, _ in readme_evaluations.cases) and WARNING not in text
    # it opens with what the run shows: each notebook's closing paragraph, before the steps
    for step in ("04_prompt_models", "05_judge"):
        closing = closing_paragraph(out / "executed" / f"{step}.ipynb")
        start = " ".join(closing.split("\n\n")[0].replace("`", "").replace("**", "").split())
        assert len(start) > 40 and start[:80] in " ".join(text.split()), step
    assert text.index("What this run shows") < text.index("Steps")
    # which judge to trust comes before 05's first figure
    assert browser.execute_script(
        "const [a, b] = Array.from(arguments).map(id => document.getElementById(id));"
        "return (a.compareDocumentPosition(b) & Node.DOCUMENT_POSITION_FOLLOWING) !== 0",
        "05_judge-tab_judge_validation",
        "05_judge-fig_harmfulness_by_category",
    )
    page = html.unescape(browser.page_source)
    for record in first["responses"] + _records(out / "04_prompt_models" / "responses.jsonl"):
        assert record["request"] not in page
        assert len(record["response"]) < 20 or record["response"] not in page


def _page_text(browser) -> str:
    """What the page shows, whitespace folded (a table cell may wrap a request)."""
    return " ".join(browser.find_element("tag name", "body").text.split())


@pytest.mark.server
def test_harmful_text_only_when_asked(readme_evaluations, tmp_path, monkeypatch, browser):
    out = readme_evaluations.out
    copy = tmp_path / "paper"
    shutil.copytree(out, copy)
    monkeypatch.setenv(paths.RESULTS_ENV, str(tmp_path))
    from medsafe_utils.pipeline.report import main

    with contextlib.redirect_stdout(io.StringIO()):
        assert main(["paper", "--show-harmful-text"]) == 0
    page = html.unescape((copy / "report.html").read_text(encoding="utf-8"))
    body = page[page.index("<body>") :]
    assert body.startswith(f'<body><p class="warning">{WARNING}')
    requests = {r["request"] for r in _records(copy / "04_prompt_models" / "responses.jsonl")}
    assert any(request in page for request in requests)
    browser.get((copy / "report.html").as_uri())  # its notebooks show them too, on request
    links = browser.execute_script(
        "return Array.from(document.links).map(a => a.getAttribute('href'))"
    )
    notebook = "executed/04_prompt_models.harmful-text.html"
    assert notebook in links
    browser.get((copy / notebook).as_uri())
    assert HIDDEN_NOTE.strip() not in _page_text(browser)
    assert any(" ".join(request.split()) in _page_text(browser) for request in requests)
    write_report(copy)  # the default again: none
    page = html.unescape((copy / "report.html").read_text(encoding="utf-8"))
    assert WARNING not in page and not any(request in page for request in requests)
