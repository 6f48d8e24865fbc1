"""Statistics against hand computations: mean ± SE, weighted kappa, Spearman, tables."""

import math

import pandas as pd
import pytest

from medsafe_utils.judge.stats import (
    agreement_table,
    eval_set,
    false_harm_rates,
    harmfulness_breakdown,
    harmfulness_table,
    judge_metrics,
    mean_se,
    spearman,
    weighted_kappa,
)


def test_mean_se_by_hand():
    mean, se = mean_se([1, 2, 3, 4, None])  # None: an unscored judgment, left out here
    assert mean == pytest.approx(2.5)
    # sd (ddof 1) = sqrt((1.5^2 + 0.5^2 + 0.5^2 + 1.5^2) / 3) = sqrt(5/3); se = sd / sqrt(4)
    assert se == pytest.approx(math.sqrt(5 / 3) / 2)


def test_mean_se_edge_cases():
    assert all(math.isnan(x) for x in mean_se([None, float("nan")]))
    mean, se = mean_se([4])
    assert mean == 4 and math.isnan(se)
    assert mean_se(pd.Series([5, 5, 5], dtype="Int64")) == (5.0, 0.0)


def test_weighted_kappa_by_hand():
    # Observed: (1,1) (1,2) (2,2) (3,3), each 1/4; quadratic weights (i-j)^2/(k-1)^2, k = 3.
    # Observed weighted disagreement: 1/4 * 1/4 = 0.0625. Marginals a: .5 .25 .25, b: .25 .5 .25;
    # expected weighted disagreement: .0625+.125+.015625+.015625+.0625+.03125 = 0.3125.
    # kappa = 1 - 0.0625 / 0.3125 = 0.8
    assert weighted_kappa([1, 1, 2, 3], [1, 2, 2, 3], labels=[1, 2, 3]) == pytest.approx(0.8)


def test_weighted_kappa_properties():
    assert weighted_kappa([1, 2, 3, 4, 5], [1, 2, 3, 4, 5]) == pytest.approx(1.0)
    assert weighted_kappa([1, 2, 4, 5], [5, 4, 2, 1]) < -0.9  # reversed scores disagree
    assert math.isnan(weighted_kappa([3, 3], [3, 3]))  # both constant: undefined, not 1
    assert math.isnan(weighted_kappa([None, 2], [1, None]))  # no pair scored by both
    # both constant but apart: observed = expected disagreement, kappa = 1 - 1 = 0
    assert weighted_kappa([3, 3, 3], [4, 4, 4]) == pytest.approx(0.0)
    # unscored pairs are left out: the same as without them
    assert weighted_kappa([1, None, 2, 3, 1], [1, 5, 2, 2, None]) == pytest.approx(
        weighted_kappa([1, 2, 3], [1, 2, 2])
    )
    with pytest.raises(ValueError, match="not among the labels"):
        weighted_kappa([0, 1], [1, 1])


def test_spearman_by_hand():
    # d = -1 1 -1 1 0, sum d^2 = 4: rho = 1 - 6 * 4 / (5 * (25 - 1)) = 0.8
    assert spearman([1, 2, 3, 4, 5], [2, 1, 4, 3, 5]) == pytest.approx(0.8)
    assert math.isnan(spearman([1, 1, 1], [1, 2, 3]))  # a constant rater: no ranking
    assert math.isnan(spearman([1, None], [2, 3]))  # one pair
    # ties take average ranks: a (1.5 1.5 3 4), b (1 2.5 2.5 4), both centred on 2.5;
    # rho = Pearson of the ranks = sum(da * db) / sqrt(sum da^2 * sum db^2) = 3.75 / 4.5
    assert spearman([1, 1, 2, 3], [1, 2, 2, 3]) == pytest.approx(3.75 / 4.5)


def judged_frame():
    return pd.DataFrame(
        {
            "judge": ["j1"] * 6 + ["j2"] * 6,
            "response_idx": list(range(6)) * 2,
            "model": ["m1", "m1", "m1", "m2", "m2", "m2"] * 2,
            "aligned": [True, True, True, False, False, False] * 2,
            "harm_set": ["medsafety_eval"] * 12,
            "origin": ["gpt4", "llama2", "gpt4", "gpt4", "llama2", "llama2"] * 2,
            "category": [1, 1, 2, 1, 2, 2] * 2,
            "score": pd.array([1, 2, None, 5, 4, 5, 1, 2, 3, 4, None, None], dtype="Int64"),
        }
    )


def test_harmfulness_table_counts_unscored():
    tab = harmfulness_table(judged_frame(), ["judge", "model"])
    row = tab[(tab["judge"] == "j1") & (tab["model"] == "m1")].iloc[0]
    assert (row["mean"], row["n"], row["unscored"]) == (1.5, 2, 1)
    assert row["se"] == pytest.approx(0.5)  # sd of (1, 2) = 0.7071; / sqrt(2)
    j2m2 = tab[(tab["judge"] == "j2") & (tab["model"] == "m2")].iloc[0]
    assert (j2m2["mean"], j2m2["n"], j2m2["unscored"]) == (4.0, 1, 2)
    assert math.isnan(j2m2["se"])
    assert (tab["n"] + tab["unscored"]).sum() == 12  # nothing dropped


def test_harmfulness_breakdown_partitions():
    tab = harmfulness_breakdown(judged_frame())
    assert set(tab["breakdown"]) == {"harm_set", "origin", "category"}
    totals = tab.groupby("breakdown")[["n", "unscored"]].sum().sum(axis=1)
    assert (totals == 12).all()
    top = tab[tab["breakdown"] == "harm_set"]
    assert (top["origin"] == "all").all() and (top["category"] == "all").all()
    by_origin = tab[
        (tab["breakdown"] == "origin")
        & (tab["judge"] == "j1")
        & (tab["model"] == "m2")
        & (tab["origin"] == "llama2")
    ].iloc[0]
    assert by_origin["mean"] == 4.5 and by_origin["n"] == 2


def test_agreement_table_by_hand():
    tab = agreement_table(judged_frame())
    assert len(tab) == 1
    row = tab.iloc[0]
    # both scored: idx 0 (1,1), 1 (2,2), 3 (5,4) -> 3 pairs, 2 identical
    assert row["n"] == 3
    assert row["exact_agreement"] == pytest.approx(2 / 3)
    assert row["weighted_kappa"] == pytest.approx(weighted_kappa([1, 2, 5], [1, 2, 4]))
    assert row["spearman"] == pytest.approx(1.0)


def test_false_harm_rates_and_metrics():
    validation = pd.DataFrame(
        {"judge": ["j1"] * 5, "score": pd.array([1, 1, 2, 4, None], dtype="Int64")}
    )
    rates = false_harm_rates(validation).iloc[0]
    assert rates["n"] == 5 and rates["unscored"] == 1
    assert rates["unscored_rate"] == pytest.approx(0.2)
    assert rates["false_harm_rate"] == pytest.approx(0.5)  # 2 of the 4 scored are above 1
    assert rates["false_harm_rate_3plus"] == pytest.approx(0.25)
    metrics = judge_metrics(judged_frame(), validation)
    assert metrics["j2/unscored"] == 2 and metrics["j2/unscored_rate"] == pytest.approx(2 / 6)
    assert metrics["j1/validation_false_harm_rate"] == pytest.approx(0.5)
    assert metrics["j1/mean_score"] == pytest.approx((1 + 2 + 5 + 4 + 5) / 5)


def test_metrics_of_a_judge_that_never_scored():
    unscored = pd.DataFrame({"judge": ["j"] * 2, "score": pd.array([None, None], dtype="Int64")})
    metrics = judge_metrics(unscored, unscored)
    assert metrics["j/unscored_rate"] == 1.0 and math.isnan(metrics["j/mean_score"])
    assert math.isnan(metrics["j/validation_false_harm_rate"])


def test_eval_set_names():
    assert eval_set("medsafety_eval", "gpt4") == "MedSafety-Eval (GPT-4)"
    assert eval_set("medsafety_eval", "llama2") == "MedSafety-Eval (Llama-2)"
    assert eval_set("advbench", "advbench") == "advbench"


def test_figures_panels_and_bars():
    from medsafe_utils.judge.figures import (
        fig_harmfulness_by_category,
        fig_harmfulness_by_model,
        fig_score_distribution,
    )
    from medsafe_utils.judge.stats import with_eval_set

    judged = with_eval_set(judged_frame())
    fig = fig_harmfulness_by_model(
        harmfulness_table(judged, ["judge", "model", "aligned", "eval_set"])
    )
    assert len(fig.axes) == 2 * 2  # judges x evaluation sets (GPT-4, Llama-2 origin)
    bars = [(b.get_y(), b.get_width()) for b in fig.axes[0].patches]
    table = harmfulness_table(judged, ["judge", "model", "aligned", "eval_set"])
    first = table[(table["judge"] == "j1") & (table["eval_set"] == "MedSafety-Eval (GPT-4)")]
    assert sorted(w for _, w in bars) == sorted(first["mean"])  # one bar per model, its mean
    assert {t.get_text() for t in fig.legends[0].get_texts()} == {
        "safety-aligned",
        "not safety-aligned",
    }
    fig = fig_score_distribution(judged)
    widths = [b.get_width() for b in fig.axes[0].patches]
    assert sum(widths) == pytest.approx(2.0)  # two models' shares, each summing to 1
    fig = fig_harmfulness_by_category(
        harmfulness_table(judged, ["judge", "harm_set", "model", "category"])
    )
    assert len([a for a in fig.axes if a.get_title()]) == 2  # one heatmap per judge
