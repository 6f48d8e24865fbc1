"""06's before/after tables against hand computations: intervals, paired tests, refusal rates,
and the teaching text that must follow the numbers."""

import math

import pandas as pd
import pytest
from scipy import stats

from medsafe_utils.core.stats import bootstrap_mean_ci
from medsafe_utils.finetune.effects import explain_finetune, finetune_harmfulness, refusal_table

REFUSAL = "I'm sorry, but I cannot help with that."


def _answers(type_, n, texts, harm_set="advbench"):
    return pd.DataFrame(
        {
            "model": f"m+{type_}",  # the answering model; the tables group by base_model
            "base_model": "m",
            "type": type_,
            "n": n,
            "harm_set": harm_set,
            "origin": harm_set,
            "item_id": [f"i{k}" for k in range(len(texts))],
            "response": texts,
        }
    )


def test_refusal_table_by_hand():
    # 8 requests: the base refuses 1, the adapter 7; the adapter newly refuses 6, drops none.
    before = _answers("none", 0, [REFUSAL] + ["Sure, here is how."] * 7)
    after = _answers("med", 100, [REFUSAL] * 7 + ["Sure."])
    table = refusal_table(pd.concat([before, after], ignore_index=True))
    base = table[table["type"] == "none"].iloc[0]
    tuned = table[table["type"] == "med"].iloc[0]
    assert (base["refused"], base["n_items"], base["rate"]) == (1, 8, 1 / 8)
    assert (tuned["refused"], tuned["rate"], tuned["delta"]) == (7, 7 / 8, 6 / 8)
    # Wilson interval from its formula, z = 1.96
    z, p, n = stats.norm.ppf(0.975), 7 / 8, 8
    centre = (p + z**2 / (2 * n)) / (1 + z**2 / n)
    half = z / (1 + z**2 / n) * math.sqrt(p * (1 - p) / n + z**2 / (4 * n**2))
    assert (tuned["ci_low"], tuned["ci_high"]) == (
        pytest.approx(centre - half),
        pytest.approx(centre + half),
    )
    # McNemar exact: 6 discordant pairs, all one way: 2 * 0.5**6
    assert tuned["test"] == "mcnemar_exact" and tuned["p_value"] == pytest.approx(2 / 64)
    assert tuned["n_pairs"] == 8 and math.isnan(base["p_value"]) and base["test"] == ""


def _judged(judge, type_, n, scores):
    return pd.DataFrame(
        {
            "judge": judge,
            "model": f"m+{type_}",
            "base_model": "m",
            "type": type_,
            "n": n,
            "harm_set": "medsafety_eval",
            "origin": "gpt4",
            "item_id": [f"i{k}" for k in range(len(scores))],
            "score": pd.array(scores, dtype="Int64"),
        }
    )


def test_harmfulness_table_intervals_and_paired_tests():
    before = [4, 5, 3, 4, 5]
    after = [2, 3, 1, 3, None]  # one unscored answer: paired on the other four
    keyword_before, keyword_after = [5, 5, 5, 1, 5], [1, 1, 5, 1, 1]
    judged = pd.concat(
        [
            _judged("hf", "none", 0, before),
            _judged("hf", "med", 50, after),
            _judged("kw", "none", 0, keyword_before),
            _judged("kw", "med", 50, keyword_after),
        ],
        ignore_index=True,
    )
    table = finetune_harmfulness(judged).set_index(["judge", "type"])
    row = table.loc[("hf", "none")]
    # the bootstrap interval of core.stats (tested against the exact bootstrap there), on the
    # scale, which the t interval (4.2 ± 1.04) leaves
    assert (row["ci_low"], row["ci_high"]) == bootstrap_mean_ci(before)
    t_high = 4.2 + stats.t.ppf(0.975, 4) * stats.sem(before)
    assert 3 <= row["ci_low"] < 4.2 < row["ci_high"] <= 5 < t_high
    tuned = table.loc[("hf", "med")]
    t = stats.ttest_rel([2, 3, 1, 3], [4, 5, 3, 4])
    assert tuned["test"] == "paired_t" and tuned["n_pairs"] == 4
    assert tuned["p_value"] == pytest.approx(t.pvalue) and tuned["delta"] == pytest.approx(-1.75)
    assert (tuned["n_items"], tuned["unscored"]) == (4, 1)
    # the keyword judge's 1 and 5: McNemar on "5" (3 items 5 -> 1, none 1 -> 5): 2 * 0.5**3
    keyword = table.loc[("kw", "med")]
    assert keyword["test"] == "mcnemar_exact" and keyword["p_value"] == pytest.approx(0.25)


def test_a_judge_that_always_gives_one_score_changes_nothing():
    # SmolLM2 as a judge scores everything 4: no discordant pair, p = 1 (not an error)
    judged = pd.concat([_judged("hf", "none", 0, [4] * 5), _judged("hf", "med", 50, [4] * 5)])
    tuned = finetune_harmfulness(judged).set_index("type").loc["med"]
    assert (tuned["test"], tuned["p_value"], tuned["delta"]) == ("mcnemar_exact", 1.0, 0.0)


def test_teaching_text_follows_the_numbers():
    base = _answers("none", 0, ["Sure."] * 10)
    strong = _answers("med", 100, [REFUSAL] * 10)
    weak = _answers("med", 100, [REFUSAL] + ["Sure."] * 9)
    effect = explain_finetune(refusal_table(pd.concat([base, strong])))
    none = explain_finetune(refusal_table(pd.concat([base, weak])))
    assert "raised the refusal rate significantly" in effect and "0.00 → 1.00" in effect
    assert "No comparison shows a significant change" in none and "0.00 → 0.10" in none
    assert "p = 1" in none and "p = 0.002" in effect  # exact McNemar: 2 * 0.5**10 = 0.00195


def test_teaching_text_compares_the_kinds_on_the_medical_set():
    medical = dict(harm_set="medsafety_eval")
    base = _answers("none", 0, ["Sure."] * 10, **medical)
    med = _answers("med", 100, [REFUSAL] * 9 + ["Sure."], **medical)
    gen = _answers("gen", 100, [REFUSAL] * 4 + ["Sure."] * 6, **medical)
    text = explain_finetune(refusal_table(pd.concat([base, med, gen]).assign(origin="gpt4")))
    assert "refusal rate med 0.90, gen 0.40; med demonstrations raised refusals most" in text
    close = _answers("gen", 100, [REFUSAL] * 9 + ["Sure."], **medical)
    text = explain_finetune(refusal_table(pd.concat([base, med, close]).assign(origin="gpt4")))
    assert "the kinds did about equally there (a difference of 0.00" in text
