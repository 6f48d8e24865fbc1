"""Expert review: the stratified sample, the export, label files (and their errors), and the
judges against the experts, on hand-computed values."""

import csv
import json
import math
import re

import numpy as np
import pandas as pd
import pytest

from medsafe_utils.core.artifacts import read_jsonl
from medsafe_utils.judge import review, stats
from medsafe_utils.judge.review import (
    LABEL_COLUMNS,
    LabelError,
    ReviewConfig,
    clear_expert_results,
    compare_to_experts,
    consensus_scores,
    fig_expert_confusion,
    kappa_interval,
    rater_agreement,
    read_labels,
    review_sample,
    sample_id,
    weighted_kappa,
)
from medsafe_utils.judge.review_form import (
    MAX_SHOWN,
    export_review,
    form_html,
    label_template,
    shown,
)

CYCLE, KEYWORD = "judge:cycle", "keyword:refusal-prefix-baseline"


def _labels(scores: dict[str, dict[str, int]]) -> pd.DataFrame:
    """read_labels' frame from {rater: {review_id: score}}."""
    return pd.DataFrame(
        [
            {
                "rater": r,
                "file": f"{r}.csv",
                "row": 0,
                "review_id": i,
                "expert_score": s,
                "comment": "",
            }
            for r, items in scores.items()
            for i, s in items.items()
        ]
    )


def _sample(judge_scores: list[dict]) -> pd.DataFrame:
    ids = [f"r-{i}" for i in range(len(judge_scores))]
    return pd.DataFrame(
        {"review_id": ids, "sample_id": sample_id(ids), "judge_scores": judge_scores}
    )


# Weighted kappa, its interval, Krippendorff's alpha, the consensus: by hand.


def test_weighted_kappa_by_hand():
    # Pairs (1,1) (2,2) (3,4): observed sum of (i-j)^2 / n = 1/3; expected over the margins
    # {1,2,3} x {1,2,4}, each 1/9: (10 + 5 + 6) / 9 = 21/9; kappa = 1 - (1/3) / (21/9) = 6/7.
    assert weighted_kappa([1, 2, 3], [1, 2, 4]) == pytest.approx(6 / 7)
    assert weighted_kappa([1, 5, 3], [1, 5, 3]) == pytest.approx(1.0)
    assert weighted_kappa([4, 4, 4], [1, 2, 5]) == pytest.approx(0.0)  # a constant judge
    assert math.isnan(weighted_kappa([4, 4], [4, 4]))  # undefined: both constant


def test_weighted_kappa_matches_its_definition(kappa_by_hand):
    """Both kappas (review's and stats') against numpy from the definition, on 60 random pairs."""
    rng = np.random.default_rng(0)
    a, b = rng.integers(1, 6, 60), rng.integers(1, 6, 60)
    b[:30] = a[:30]
    expected = kappa_by_hand(a, b)
    assert 0.3 < expected < 0.9  # neither agreement nor chance: a case that tells kappas apart
    assert weighted_kappa(a, b) == pytest.approx(expected)
    assert stats.weighted_kappa(a, b) == pytest.approx(expected)


def test_kappa_interval_brackets_the_estimate_and_is_seeded():
    rng = np.random.default_rng(1)
    expert = rng.integers(1, 6, 80)
    judge = np.clip(expert + rng.integers(-1, 2, 80), 1, 5)
    config = ReviewConfig(n_bootstrap=300, seed=7)
    low, high = kappa_interval(expert, judge, config)
    assert low < weighted_kappa(expert, judge) < high <= 1
    assert (low, high) == kappa_interval(expert, judge, config)
    wide = kappa_interval(expert[:20], judge[:20], config)
    assert wide[1] - wide[0] > high - low  # fewer items, a wider interval
    assert kappa_interval([1, 2, 5, 5], [1, 2, 5, 5], config) == (1.0, 1.0)
    assert all(math.isnan(x) for x in kappa_interval([3], [3], config))


def test_krippendorff_alpha_by_hand():
    # Raters a = (1, 3, 3), b = (1, 3, 5): values n1 = 2, n3 = 3, n5 = 1, n = 6; coincidences
    # o11 = 2, o33 = 2, o35 = o53 = 1. Ordinal distances d(c,k) = (sum_{g=c..k} n_g
    # - (n_c + n_k)/2)^2: d(1,3) = 6.25, d(1,5) = 20.25, d(3,5) = 4. Observed: 2 * 4 = 8;
    # expected (ordered pairs): 2 * (2*3*6.25 + 2*1*20.25 + 3*1*4) = 180;
    # alpha = 1 - (n - 1) * 8 / 180 = 7/9.
    labels = _labels({"a": {"x": 1, "y": 3, "z": 3}, "b": {"x": 1, "y": 3, "z": 5}})
    row = rater_agreement(labels).iloc[0]
    assert row["krippendorff_alpha_ordinal"] == pytest.approx(7 / 9)
    assert row["n_raters"] == 2 and row["n_items"] == 3


def test_krippendorff_alpha_on_the_published_example():
    # Krippendorff (2011), "Computing Krippendorff's alpha-reliability": 4 observers, 12 units,
    # missing values; ordinal alpha = 0.815 (nominal 0.743, interval 0.849).
    data = {
        "A": [1, 2, 3, 3, 2, 1, 4, 1, 2, None, None, None],
        "B": [1, 2, 3, 3, 2, 2, 4, 1, 2, 5, None, 3],
        "C": [None, 3, 3, 3, 2, 3, 4, 2, 2, 5, 1, None],
        "D": [1, 2, 3, 3, 2, 4, 4, 1, 2, 5, 1, None],
    }
    labels = _labels(
        {
            r: {f"u{i:02d}": v for i, v in enumerate(vals) if v is not None}
            for r, vals in data.items()
        }
    )
    row = rater_agreement(labels).iloc[0]
    assert round(row["krippendorff_alpha_ordinal"], 3) == 0.815
    assert row["n_items"] == 11  # unit 12 has one value: not pairable


def test_rater_agreement_needs_two_raters_on_an_item():
    one = rater_agreement(_labels({"a": {"x": 1, "y": 5}})).iloc[0]
    assert one["n_raters"] == 1 and one["n_items"] == 0
    assert math.isnan(one["krippendorff_alpha_ordinal"])
    apart = rater_agreement(_labels({"a": {"x": 1}, "b": {"y": 5}})).iloc[0]
    assert apart["n_items"] == 0 and math.isnan(apart["krippendorff_alpha_ordinal"])


def test_consensus_is_the_median_with_halves_rounded_toward_harm():
    labels = _labels(
        {"a": {"x": 1, "y": 4, "z": 2, "w": 3}, "b": {"x": 3, "y": 5, "z": 3}, "c": {"z": 5}}
    )
    got = consensus_scores(labels).set_index("review_id")
    assert got["expert_score"].to_dict() == {"w": 3, "x": 2, "y": 5, "z": 3}
    assert got["n_raters"].to_dict() == {"w": 1, "x": 2, "y": 2, "z": 3}


# The judges against the experts.


def test_compare_to_experts_by_hand():
    judge = [1, 4, 3, 2, 5, None]
    sample = _sample([{"j": s, "k": 5} for s in judge])
    expert = [1, 2, 3, 4, 5, 5]
    labels = _labels({"a": {f"r-{i}": e for i, e in enumerate(expert)}})
    result = compare_to_experts(sample, labels, ReviewConfig(n_bootstrap=200))
    row = result.agreement.set_index("judge").loc["j"]
    assert (row["n_labelled"], row["n"], row["unscored"]) == (6, 5, 1)
    assert row["exact_agreement"] == pytest.approx(3 / 5)  # (1,1) (3,3) (5,5)
    # Uniform margins on both sides: expected sum (i-j)^2 = 100/25 = 4; observed 8/5 = 1.6.
    assert row["weighted_kappa"] == pytest.approx(1 - 1.6 / 4)
    assert row["kappa_ci_low"] <= row["weighted_kappa"] <= row["kappa_ci_high"]
    # Expert >= 4 among the scored: 4 (judge 2: a miss), 5 (judge 5); expert <= 2: 1 (judge 1),
    # 2 (judge 4: a false alarm).
    assert (row["n_expert_harmful"], row["miss_rate"]) == (2, 0.5)
    assert (row["n_expert_safe"], row["false_alarm_rate"]) == (2, 0.5)
    constant = result.agreement.set_index("judge").loc["k"]
    assert constant["weighted_kappa"] == pytest.approx(0.0) and constant["miss_rate"] == 0.0
    assert constant["false_alarm_rate"] == 1.0 and constant["exact_agreement"] == pytest.approx(
        2 / 6
    )
    cells = (
        result.confusion[result.confusion["judge"] == "j"]
        .set_index(["expert_score", "judge_score"])["n"]
        .to_dict()
    )
    assert cells == {
        (1, "1"): 1,
        (2, "4"): 1,
        (3, "3"): 1,
        (4, "2"): 1,
        (5, "5"): 1,
        (5, "unscored"): 1,
    }
    assert result.confusion.groupby("judge")["n"].sum().eq(6).all()


def test_partial_labels_are_counted_and_metrics_are_flat():
    sample = _sample([{"j": s} for s in [1, 2, 3, 4, 5]])
    labels = _labels({"a": {"r-0": 1, "r-1": 2, "r-2": 3}, "b": {"r-0": 1, "r-4": 5}})
    result = compare_to_experts(sample, labels, ReviewConfig(n_bootstrap=50))
    assert result.raters.set_index("rater")[["labelled", "of"]].to_dict(orient="index") == {
        "a": {"labelled": 3, "of": 5},
        "b": {"labelled": 2, "of": 5},
    }
    assert len(result.consensus) == 4 and result.agreement["n_labelled"].iloc[0] == 4
    metrics = result.metrics()
    assert metrics["expert/n_labelled"] == 4 and metrics["expert/n_raters"] == 2
    assert metrics["expert/j/exact_agreement"] == 1.0
    assert metrics["expert/raters/n_items"] == 1
    assert all(isinstance(v, (int, float, str)) for v in metrics.values())


def test_fig_expert_confusion_has_a_panel_per_judge():
    sample = _sample([{"j": 1, "k": 5}, {"j": 5, "k": None}])
    result = compare_to_experts(
        sample, _labels({"a": {"r-0": 1, "r-1": 4}}), ReviewConfig(n_bootstrap=20)
    )
    fig = fig_expert_confusion(result.confusion)
    assert [ax.get_title() for ax in fig.axes] == ["j\n2 items", "k\n2 items"]


# The sample.


def test_sample_is_stratified_by_the_first_judges_score(review_judgments):
    sample = review_sample(review_judgments, ReviewConfig(n=12, seed=0))
    # Strata 1-5 and unscored, taken in turn: two items each.
    assert sample["stratum"].value_counts().to_dict() == {
        s: 2 for s in ["1", "2", "3", "4", "5", "unscored"]
    }
    assert sample["position"].tolist() == list(range(1, 13))
    assert sample["review_id"].is_unique and sample["sample_id"].nunique() == 1
    assert sample["sample_id"].iloc[0] == sample_id(sample["review_id"])
    for row in sample.itertuples():
        assert row.stratum == (
            "unscored" if row.judge_scores[CYCLE] is None else str(row.judge_scores[CYCLE])
        )
        assert row.judge_scores[KEYWORD] in (1, 5)
    # Within a stratum the items rotate over model x harm set before any repeats.
    bigger = review_sample(review_judgments, ReviewConfig(n=24, seed=0))
    for _, group in bigger.groupby("stratum"):
        assert group.groupby(["model", "harm_set"]).size().eq(1).all()


def test_sample_is_stable_and_seeded(review_judgments):
    config = ReviewConfig(n=12, seed=0)
    first = review_sample(review_judgments, config)
    shuffled = review_judgments.sample(frac=1, random_state=5)
    assert review_sample(shuffled, config).equals(first)  # row order does not matter
    other = review_sample(review_judgments, ReviewConfig(n=12, seed=1))
    assert set(other["review_id"]) != set(first["review_id"])
    everything = review_sample(review_judgments, ReviewConfig(n=1000))
    assert len(everything) == 40  # never more than there are responses
    # The presentation order is shuffled, not grouped by the judge's score.
    assert first["stratum"].tolist() != sorted(first["stratum"])


def test_review_ids_identify_the_response(review_judgments):
    sample = review_sample(review_judgments, ReviewConfig(n=1000))
    changed = review_judgments.assign(response=review_judgments["response"] + "!")
    assert not set(review_sample(changed, ReviewConfig(n=1000))["review_id"]) & set(
        sample["review_id"]
    )
    assert all(re.fullmatch(r"r-[0-9a-f]{12}", i) for i in sample["review_id"])


def test_06_responses_are_told_apart_by_adapter(review_judgments):
    base = review_judgments[review_judgments["model"] == "model-a"]
    grid = pd.concat([base.assign(adapter=""), base.assign(adapter="model-a__med_n16")])
    sample = review_sample(grid, ReviewConfig(n=1000))
    assert len(sample) == 40 and set(sample["model"]) == {"model-a", "model-a__med_n16"}


# The export.


def test_export_writes_the_form_the_template_and_the_key(tmp_path, review_judgments):
    sample = review_sample(review_judgments, ReviewConfig(n=1000))
    written = export_review(sample, tmp_path / "expert_review")
    assert sorted(p.name for p in written) == [
        "guide.md",
        "labels_template.csv",
        "review_form.html",
        "sample.jsonl",
    ]
    template = pd.read_csv(
        tmp_path / "expert_review" / "labels_template.csv",
        dtype=str,
        keep_default_na=False,
        encoding="utf-8-sig",
    )
    assert list(template.columns) == LABEL_COLUMNS and len(template) == 40
    assert template["response"].tolist() == sample["response"].tolist()  # quotes, newlines
    assert (template["expert_score"] == "").all()
    key = pd.read_json(tmp_path / "expert_review" / "sample.jsonl", lines=True)
    assert key["judge_scores"].tolist() == sample["judge_scores"].tolist()
    guide = (tmp_path / "expert_review" / "guide.md").read_text()
    assert "proactively declines" in guide and "usage_policy_medical" in guide


def test_the_form_embeds_items_without_judges_or_models(review_judgments):
    sample = review_sample(review_judgments, ReviewConfig(n=1000))
    html = form_html(sample)
    assert "/*__REVIEW_DATA__*/" not in html and "http" not in html.lower().replace(
        "http-equiv", ""
    )  # nothing is fetched: it works offline
    for hidden in (CYCLE, KEYWORD, "model-a", "judge_scores", "stratum"):
        assert hidden not in html
    blob = re.search(
        r'<script id="review-data" type="application/json">(.*?)</script>', html, re.S
    )[1]
    assert "</" not in blob  # '</script>' inside a response cannot end the block
    data = json.loads(blob)
    assert data["sample_id"] == sample["sample_id"].iloc[0] and data["columns"] == LABEL_COLUMNS
    assert [i["response"] for i in data["items"]] == sample["response"].tolist()
    assert list(data["rubric"]) == ["1", "2", "3", "4", "5"]
    assert set(data["policies"]) == {"usage_policy_medical", "usage_policy_general"}


# Label files: partial ones are read, bad ones name the file and row.


@pytest.fixture
def labelled(tmp_path, review_judgments):
    """(sample, a function writing a label file from the template with edits)."""
    sample = review_sample(review_judgments, ReviewConfig(n=10, seed=2))

    def write(name: str, scores: dict[int, str], edit=None):
        table = label_template(sample)
        for row, score in scores.items():
            table.loc[row, "expert_score"] = score
        if edit:
            table = edit(table)
        path = tmp_path / name
        table.to_csv(path, index=False)
        return path

    return sample, write


def test_partial_label_files_are_read(labelled):
    sample, write = labelled
    a = write("labels_dr_a.csv", {0: "4", 3: "1.0", 9: " 5 "})
    b = write("labels_dr_b.csv", {0: "3"}, edit=lambda t: t.assign(comment="unsure"))
    labels = read_labels([a, b], sample)
    assert labels.groupby("rater").size().to_dict() == {"dr_a": 3, "dr_b": 1}
    assert labels[labels["rater"] == "dr_a"]["expert_score"].tolist() == [4, 1, 5]
    assert labels[labels["rater"] == "dr_a"]["row"].tolist() == [2, 5, 11]
    assert labels[labels["rater"] == "dr_b"]["comment"].tolist() == ["unsure"]
    assert read_labels([], sample).empty


@pytest.mark.parametrize("score", ["0", "6", "2.5", "four", "-1"])
def test_a_score_outside_1_to_5_names_the_file_and_row(labelled, score):
    sample, write = labelled
    path = write("labels_x.csv", {0: "3", 4: score})
    with pytest.raises(LabelError, match=rf"labels_x\.csv, row 6: score '{re.escape(score)}'"):
        read_labels([path], sample)


def test_an_unknown_item_names_the_file_and_row(labelled):
    sample, write = labelled

    def rename(table):
        table.loc[2, "review_id"] = "r-000000000000"
        return table

    path = write("labels_x.csv", {0: "3", 2: "1"}, edit=rename)
    with pytest.raises(LabelError, match=r"labels_x\.csv, row 4: unknown item id 'r-0000"):
        read_labels([path], sample)


def test_an_item_twice_names_both_rows(labelled):
    sample, write = labelled

    def repeat(table):
        return pd.concat([table, table.iloc[[1]]], ignore_index=True)

    path = write("labels_x.csv", {1: "2"}, edit=repeat)
    with pytest.raises(LabelError, match=r"row 12: item r-\w+ again \(first in row 3\)"):
        read_labels([path], sample)


def test_a_file_for_another_sample_is_refused(labelled, review_judgments):
    sample, write = labelled
    path = write("labels_x.csv", {0: "3"})
    other = review_sample(review_judgments, ReviewConfig(n=10, seed=3))
    with pytest.raises(
        LabelError,
        match=r"labels_x\.csv, row 2: sample_id 's-\w+' is not this "
        r"sample's .* different sample",
    ):
        read_labels([path], other)


def test_empty_and_malformed_files_are_refused(labelled, tmp_path):
    sample, write = labelled
    empty = tmp_path / "labels_empty.csv"
    empty.write_text("")
    with pytest.raises(LabelError, match=r"labels_empty\.csv: the file is empty"):
        read_labels([empty], sample)
    blank = write("labels_blank.csv", {})
    with pytest.raises(LabelError, match=r"labels_blank\.csv: no scores"):
        read_labels([blank], sample)
    header = tmp_path / "labels_header.csv"
    header.write_text(",".join(LABEL_COLUMNS) + "\n")
    with pytest.raises(LabelError, match=r"labels_header\.csv: no scores"):
        read_labels([header], sample)
    wrong = write("labels_cols.csv", {0: "2"}, edit=lambda t: t.drop(columns="expert_score"))
    with pytest.raises(LabelError, match=r"labels_cols\.csv: no column\(s\) \['expert_score'\]"):
        read_labels([wrong], sample)
    with pytest.raises(LabelError, match=r"labels_missing\.csv: no such label file"):
        read_labels([tmp_path / "labels_missing.csv"], sample)
    (tmp_path / "sub").mkdir()
    again = tmp_path / "sub" / "labels_dr_a.csv"
    again.write_text(write("labels_dr_a.csv", {0: "1"}).read_text())
    with pytest.raises(LabelError, match=r"two label files for rater\(s\) \['dr_a'\]"):
        read_labels([tmp_path / "labels_dr_a.csv", again], sample)


# What a spreadsheet makes of a label file: each way it goes wrong names the file.


def test_a_windows_1252_or_utf16_file_says_save_as_csv_utf8(labelled):
    sample, write = labelled
    path = write("labels_x.csv", {0: "3"}, edit=lambda t: t.assign(comment="très bien"))
    text = path.read_text(encoding="utf-8")
    path.write_bytes(text.encode("cp1252", errors="replace"))  # as Excel saves "CSV"
    with pytest.raises(LabelError, match=r"labels_x\.csv, line \d+: not UTF-8 .*'CSV UTF-8"):
        read_labels([path], sample)
    path.write_bytes(text.encode("utf-16"))  # Excel's "Unicode Text": a BOM, then UTF-16
    with pytest.raises(LabelError, match=r"labels_x\.csv: the file is UTF-16 .*'CSV UTF-8"):
        read_labels([path], sample)


def test_a_semicolon_separated_file_is_named(labelled):
    sample, write = labelled
    path = write("labels_x.csv", {0: "3"})
    path.write_text(label_template(sample).to_csv(index=False, sep=";"), encoding="utf-8")
    with pytest.raises(LabelError, match=r"labels_x\.csv: the columns are separated by ';'"):
        read_labels([path], sample)


def test_a_row_with_extra_or_missing_fields_names_the_row(labelled):
    sample, write = labelled
    path = write("labels_x.csv", {0: "3", 1: "2"})
    with open(path, newline="", encoding="utf-8") as fh:
        rows = list(csv.reader(fh))
    for changed, fields in ((rows[3] + ["extra"], 11), (rows[3][:-1], 9)):
        with open(path, "w", newline="", encoding="utf-8") as fh:
            csv.writer(fh).writerows([*rows[:3], changed, *rows[4:]])
        with pytest.raises(
            LabelError, match=rf"labels_x\.csv, row 4: {fields} fields, the header has 10"
        ):
            read_labels([path], sample)


def test_a_column_twice_in_the_header_is_refused(labelled):
    sample, write = labelled

    def twice(table):
        table.insert(9, "extra", table["expert_score"])
        return table.rename(columns={"extra": "expert_score"})

    path = write("labels_x.csv", {0: "3"}, edit=twice)
    with pytest.raises(LabelError, match=r"labels_x\.csv, row 1: column\(s\) \['expert_score'\]"):
        read_labels([path], sample)


def test_a_file_over_the_size_limit_is_refused(labelled, monkeypatch):
    sample, write = labelled
    path = write("labels_x.csv", {0: "3"})
    monkeypatch.setattr(review, "MAX_LABEL_BYTES", path.stat().st_size - 1)
    with pytest.raises(LabelError, match=r"labels_x\.csv: [\d,]+ bytes, over the limit of"):
        read_labels([path], sample)


def test_blank_lines_and_quoted_newlines_keep_the_spreadsheets_row_numbers(labelled):
    sample, write = labelled
    path = write("labels_x.csv", {0: "3", 4: "9"}, edit=lambda t: t.assign(comment="a\nb"))
    path.write_text("\n" + path.read_text(encoding="utf-8"), encoding="utf-8")
    with pytest.raises(LabelError, match=r"labels_x\.csv, row 7: score '9'"):
        read_labels([path], sample)


def test_the_label_template_neutralises_formulas_and_reads_back(tmp_path, review_judgments):
    hostile = review_judgments.assign(
        response=review_judgments["response"].radd('=HYPERLINK("http://x.example","ok")+')
    )
    sample = review_sample(hostile, ReviewConfig(n=10, seed=2))
    export_review(sample, tmp_path)
    table = pd.read_csv(tmp_path / "labels_template.csv", dtype=str, encoding="utf-8-sig")
    assert table["response"].str.startswith("'=HYPERLINK").all()
    table.loc[0, "expert_score"] = "4"
    table.to_csv(tmp_path / "labels_dr_a.csv", index=False, encoding="utf-8-sig")
    labels = read_labels([tmp_path / "labels_dr_a.csv"], sample)
    assert labels["expert_score"].tolist() == [4]


def test_long_texts_are_cut_in_the_form_and_the_template(tmp_path, review_judgments):
    long = "x" * (MAX_SHOWN + 1234)
    sample = review_sample(review_judgments.assign(response=long), ReviewConfig(n=4, seed=0))
    assert shown(long) == "x" * MAX_SHOWN + "\n[1,234 more characters]"
    export_review(sample, tmp_path)
    table = pd.read_csv(tmp_path / "labels_template.csv", dtype=str, encoding="utf-8-sig")
    assert (table["response"] == shown(long)).all()
    assert read_jsonl(tmp_path / "sample.jsonl")["response"].eq(long).all()  # the key keeps it


def test_expert_results_of_an_earlier_run_are_cleared(tmp_path):
    kept = ["tab_judge_validation.csv", "tab_expert_review_note.csv", "metrics.json"]
    stale = [f"{stem}.{ext}" for stem in review.EXPERT_RESULTS for ext in ("csv", "md")]
    stale += ["fig_expert_confusion.png", "fig_expert_confusion.pdf"]
    for name in kept + stale:
        (tmp_path / name).write_text("x")
    gone = clear_expert_results(tmp_path)
    assert sorted(p.name for p in gone) == sorted(stale)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(kept)
