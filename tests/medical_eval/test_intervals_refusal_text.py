"""07's additions for reading a small run honestly: accuracy intervals and chance levels against
hand values, the over-refusal table (rates, Wilson intervals, McNemar) on hand-made responses,
and the paragraphs that describe the figures, which must change with the numbers."""

import math

import pandas as pd
import pytest
from medeval_rows import prediction_row  # tests/medical_eval/medeval_rows.py

import medsafe_utils.medical_eval.over_refusal as over_refusal
from medsafe_utils.core.stats import mean_ci, proportion_ci
from medsafe_utils.medical_eval.figures import fig_over_refusal
from medsafe_utils.medical_eval.narrative import accuracy_paragraph, over_refusal_paragraph
from medsafe_utils.medical_eval.over_refusal import (
    ask_benign,
    benign_questions,
    over_refusal_metrics,
    over_refusal_table,
)
from medsafe_utils.medical_eval.report import accuracy_ci, accuracy_table, chance_levels
from medsafe_utils.models.adapters import AdapterRecord
from medsafe_utils.prompt_models.respond import RespondConfig

# ---- intervals and chance ---------------------------------------------------------------------


def test_wilson_and_t_intervals_by_hand():
    # Wilson, 5 of 20: centre (p + z²/2n) / (1 + z²/n), half-width z/(1 + z²/n) · sqrt(p(1-p)/n
    # + z²/4n²), z = 1.959964
    z, n, p = 1.959964, 20, 0.25
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z / (1 + z * z / n) * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    assert proportion_ci(5, 20) == pytest.approx((centre - half, centre + half), abs=1e-6)
    assert proportion_ci(5, 20) == pytest.approx((0.1119, 0.4687), abs=1e-4)  # textbook value
    # t interval of [1, 1, .5, 0, 1]: mean .7, sd sqrt(.8/4), t(4, .975) = 2.776445
    half = 2.776445 * math.sqrt(0.8 / 4) / math.sqrt(5)
    assert mean_ci([1, 1, 0.5, 0, 1]) == pytest.approx((0.7 - half, 0.7 + half), abs=1e-6)
    assert mean_ci([0.5, 0.5]) == (0.5, 0.5)
    assert all(math.isnan(v) for v in mean_ci([1.0]))


def test_accuracy_interval_wilson_for_one_run_t_clipped_for_seeds():
    one_run = pd.Series([1, 0, 0, 0] * 5)
    assert accuracy_ci(one_run, n_seeds=1) == pytest.approx((*proportion_ci(5, 20), "wilson"))
    averaged = pd.Series([1, 0.5, 0.5, 0])  # t interval (-0.15, 1.15), clipped to [0, 1]
    assert accuracy_ci(averaged, n_seeds=2) == (0.0, 1.0, "t")


def test_chance_levels_from_the_items_options():
    items = pd.DataFrame(
        {
            "benchmark": ["medqa", "medqa", "pubmedqa", "mixed", "mixed", "mixed"],
            "choices": [list("abcd"), list("abcd"), ["yes", "no", "maybe"]]
            + [list("abcd"), list("abcd"), list("abc")],
        }
    )
    chance = chance_levels(items)
    assert chance["medqa"] == 0.25 and chance["pubmedqa"] == pytest.approx(1 / 3)
    assert chance["mixed"] == pytest.approx((0.25 + 0.25 + 1 / 3) / 3)


def _accuracy_predictions(base: list[int], tuned: list[int], benchmark="pubmedqa") -> pd.DataFrame:
    """Zero-shot log-likelihood predictions of a base model and one med adapter."""
    rows = [
        prediction_row(model, adapter, i, c, benchmark=benchmark)
        for model, adapter, correct in (("m", "", base), ("m+med", "med", tuned))
        for i, c in enumerate(correct)
    ]
    return pd.DataFrame(rows)


PUBMEDQA = pd.DataFrame({"benchmark": "pubmedqa", "choices": [["yes", "no", "maybe"]] * 40})


def test_accuracy_table_marks_intervals_that_include_chance():
    table = accuracy_table(
        _accuracy_predictions([1] * 30 + [0] * 10, [1] * 14 + [0] * 26), PUBMEDQA
    )
    base, tuned = table.iloc[0], table.iloc[1]
    assert base["chance"] == pytest.approx(1 / 3) and base["ci_method"] == "wilson"
    assert (base["ci_low"], base["ci_high"]) == pytest.approx(proportion_ci(30, 40))
    assert not base["chance_in_ci"] and base["ci_low"] > 1 / 3
    assert tuned["accuracy"] == 0.35 and tuned["chance_in_ci"]
    assert tuned["delta"] == pytest.approx(-0.4) and tuned["p_value"] < 0.001  # b=0, c=16
    with pytest.raises(ValueError, match="chance level"):
        accuracy_table(_accuracy_predictions([1], [1], benchmark="medqa"), PUBMEDQA)


# ---- the paragraphs follow the numbers ---------------------------------------------------------


def test_accuracy_paragraph_says_what_the_numbers_say():
    effect = accuracy_table(
        _accuracy_predictions([1] * 30 + [0] * 10, [1] * 14 + [0] * 26), PUBMEDQA
    )
    same = [1, 0, 0] * 13 + [1]  # 14 of 40 right, before and after
    none = accuracy_table(_accuracy_predictions(same, same), PUBMEDQA)
    effect_text, none_text = accuracy_paragraph(effect), accuracy_paragraph(none)
    assert "1 of 2 accuracy intervals include chance; 1 lies above it" in effect_text
    assert "pubmedqa (loglikelihood, zero-shot), 0.75 to 0.35 (-0.40, p < 0.001)" in effect_text
    assert "1 of 1 changes are significant at 0.05 (1 of them losses)" in effect_text
    assert "all 2 accuracy intervals include chance" in none_text
    assert "0.35 to 0.35 (+0.00, p = 1)" in none_text
    assert "None of the 1 changes is significant" in none_text
    base_only = accuracy_paragraph(none[none["adapter"] == ""])
    assert "No adapter was evaluated" in base_only


def _refusal_responses(base: list[int], **adapters: list[int]) -> pd.DataFrame:
    """Hand-made over-refusal rows: 1 = the model declined that question."""
    rows = []
    for adapter, refused in {"": base, **adapters}.items():
        for i, r in enumerate(refused):
            rows.append(
                {
                    "model": f"m+{adapter}" if adapter else "m",
                    "base_model": "m",
                    "adapter": adapter,
                    "adapter_type": adapter,
                    "adapter_n": 16 if adapter else 0,
                    "item_id": f"q{i}",
                    "refused": bool(r),
                }
            )
    return pd.DataFrame(rows)


def test_over_refusal_table_rates_intervals_and_mcnemar_by_hand():
    base = [1] + [0] * 19
    med = [1] * 9 + [0] * 11  # 8 newly declined, none answered that were declined: p = 2/2^8
    gen = [0, 1] + [0] * 18  # one each way: p = 1
    table = over_refusal_table(_refusal_responses(base, med=med, gen=gen)).set_index("model")
    assert table.loc["m", ["n", "refused", "rate"]].tolist() == [20, 1, 0.05]
    assert (table.loc["m", "ci_low"], table.loc["m", "ci_high"]) == pytest.approx(
        proportion_ci(1, 20)
    )
    assert math.isnan(table.loc["m", "p_value"])
    med_row = table.loc["m+med"]
    assert med_row["rate"] == 0.45 and med_row["base_rate"] == 0.05
    assert med_row["n_newly_refused"] == 8 and med_row["n_no_longer_refused"] == 0
    assert med_row["p_value"] == pytest.approx(2 * 0.5**8)
    assert table.loc["m+gen", "p_value"] == 1.0 and table.loc["m+gen", "delta"] == 0.0
    metrics = over_refusal_metrics(table.reset_index())
    assert metrics["over_refusal/m+med"] == 0.45 and metrics["over_refusal_n"] == 20
    assert metrics["over_refusal_p/m+med"] == pytest.approx(2 * 0.5**8)
    with pytest.raises(ValueError, match="other questions"):
        over_refusal_table(_refusal_responses(base, med=med[:10]))
    fig = fig_over_refusal(table.reset_index())
    [ax] = fig.axes
    assert [c.lines[0].get_ydata()[0] for c in ax.containers] == [0.05, 0.05, 0.45]
    assert sorted(t.get_text() for t in ax.texts) == ["p=0.0078", "p=1"]


def test_over_refusal_paragraph_effect_and_no_effect():
    base = [1] + [0] * 19
    effect = over_refusal_paragraph(
        over_refusal_table(_refusal_responses(base, med=[1] * 9 + [0] * 11))
    )
    none = over_refusal_paragraph(
        over_refusal_table(_refusal_responses(base, med=[0, 1] + [0] * 18))
    )
    assert effect.startswith("Before fine-tuning, m declined 1 of 20 benign medical questions (5%")
    assert "After fine-tuning: med (n=16) 9 of 20 (45%, p = 0.0078)" in effect
    assert "decline benign questions more often (med; significant at 0.05)" in effect
    assert "No change is significant" not in effect
    assert (
        "med (n=16) 1 of 20 (5%, p = 1)" in none
        and "No change is significant at 0.05 (the largest: med, +0%)" in none
    )
    assert "more often" not in none


# ---- the questions and the asking --------------------------------------------------------------


def test_benign_questions_stratified_seeded_without_options():
    questions = benign_questions(["medqa", "pubmedqa", "mmlu_medical"], 7, seed=3)
    assert questions["benchmark"].value_counts().to_dict() == {
        "medqa": 3,
        "pubmedqa": 2,
        "mmlu_medical": 2,
    }
    assert questions.equals(benign_questions(["medqa", "pubmedqa", "mmlu_medical"], 7, seed=3))
    assert not questions["request"].str.contains("following|except|__", case=False).any()
    assert not questions.equals(benign_questions(["medqa", "pubmedqa", "mmlu_medical"], 7, seed=4))
    with pytest.raises(ValueError, match="stand alone"):
        benign_questions(["medqa"], 10_000)


def test_ask_benign_reads_refusals_and_needs_the_adapter(monkeypatch, tmp_path):
    answers = {"": ["Anemia is ...", "I'm sorry, I cannot help."], "med": ["As an AI, no.", "No."]}

    def fake_respond(model, requests, config, cache_path, adapter_path=None):
        name = "med" if adapter_path else ""
        revision = "r+adapter-abc" if adapter_path else "r"
        return requests.assign(model=model, model_revision=revision, response=answers[name])

    monkeypatch.setattr(over_refusal, "respond", fake_respond)
    questions = pd.DataFrame({"item_id": ["q0", "q1"], "request": ["Anemia?", "Dose?"]})
    med = AdapterRecord("m", "med", 16, str(tmp_path), "m__med_n16", "published")
    got = ask_benign(["m"], [med], questions, RespondConfig(), tmp_path / "c.jsonl")
    assert got["refused"].tolist() == [False, True, True, False]
    assert got["refusal_prefix"].tolist() == ["", "I'm sorry", "As an", ""]
    assert got["adapter"].tolist() == ["", "", "m__med_n16", "m__med_n16"]
    monkeypatch.setattr(
        over_refusal,
        "respond",
        lambda model, requests, *a, **k: requests.assign(
            model=model, model_revision="r", response="x"
        ),
    )
    with pytest.raises(RuntimeError, match="without its adapter"):
        ask_benign(["m"], [med], questions, RespondConfig(), tmp_path / "c.jsonl")
