"""Each notebook's closing "What this run shows" paragraph, from hand-built tables: it states the
numbers it was given, and carries the small-run caveat exactly when the profile is smoke or the
models are CPU-sized."""

import pandas as pd

from medsafe_utils.finetune.effects import finetune_paragraph
from medsafe_utils.generate.narrative import funnel_paragraph
from medsafe_utils.jailbreak.narrative import attack_paragraph
from medsafe_utils.judge.explain import judging_paragraph
from medsafe_utils.medical_eval.narrative import medical_paragraph
from medsafe_utils.models.scale import small_run_caveat
from medsafe_utils.prompt_models.narrative import responses_paragraph
from medsafe_utils.safe_responses.narrative import safe_response_paragraph

CAVEAT = "proves that the pipeline runs end to end"
BIG, SMALL = ["medalpaca-7b"], ["smollm2-135m-instruct"]


def _caveat_follows(paragraph) -> None:
    """The caveat under smoke, under any profile with CPU-sized models, not with big ones."""
    smoke = paragraph(profile="smoke", models=BIG)
    assert smoke.endswith(small_run_caveat("smoke", BIG)) and CAVEAT in smoke
    assert CAVEAT in paragraph(profile="paper", models=SMALL)
    assert CAVEAT not in paragraph(profile="paper", models=BIG)


def test_funnel_paragraph():
    funnel = pd.DataFrame(
        [
            [1, "prompting", 3, 41, 37, 4, 12, 9],
            [2, "prefill", 2, 17, 17, 0, 6, 5],
            ["all", "all", 5, 58, 54, 4, 18, 14],
        ],
        columns=[
            "category",
            "method",
            "generated",
            "extracted",
            "scored",
            "unscored",
            "kept_by_filter",
            "after_dedup",
        ],
    )
    text = funnel_paragraph(funnel, 7.0, profile="paper", models=BIG)
    for fact in (
        "5 generations",
        "58 requests",
        "rated 54",
        "(4 could not",
        "kept 18",
        "at least 7;",
        "14 remain",
        "prefill 5, prompting 9",
        "2 principle",
    ):
        assert fact in text, (fact, text)
    _caveat_follows(lambda **kw: funnel_paragraph(funnel, 7.0, **kw))
    empty = funnel.assign(after_dedup=0)
    assert "no request for 03" in funnel_paragraph(empty, 7.0, profile="paper", models=BIG)


def test_attack_paragraph():
    table = pd.DataFrame(
        {
            "success": [True, False, True, True],
            "initial_loss": [3.0, 2.0, 4.0, 3.0],
            "final_loss": [1.0, 1.5, 0.5, 1.0],
            "n_steps": [10, 10, 10, 10],
            "s_per_step": [2.0, 3.0, 2.5, 2.5],
        }
    )
    requests = pd.DataFrame({"attack_success": [True] * 5 + [False] * 2})
    text = attack_paragraph(table, requests, profile="paper", models=BIG)
    for fact in (
        "3 of 4 goal",
        "(75%)",
        "10 step",
        "3.00 to 1.00",
        "2.5 s a step",
        "7 request(s)",
        "5 of them from successful",
    ):
        assert fact in text, (fact, text)
    _caveat_follows(lambda **kw: attack_paragraph(table, requests, **kw))


def test_safe_response_paragraph():
    metrics = {
        "requests": 36,
        "safe_responses": 18,
        "refusal_rate": 0.5,
        "flagged": 9,
        "med_available": 7,
        "split_files": 3,
    }
    text = safe_response_paragraph(metrics, profile="paper", models=BIG)
    for fact in (
        "for 18 of the 36 requests",
        "50% pass",
        "9 are flagged",
        "7 medical",
        "3 split file",
    ):
        assert fact in text, (fact, text)
    _caveat_follows(lambda **kw: safe_response_paragraph(metrics, **kw))
    assert CAVEAT not in safe_response_paragraph(
        metrics, profile="paper", models=["gpt-4"], backends="openai"
    )


def test_responses_paragraph():
    summary = pd.DataFrame(
        {
            "model": ["a", "a", "b", "b"],
            "harm_set": ["medsafety_eval", "advbench", "medsafety_eval", "advbench"],
            "n": [18, 2, 18, 2],
            "mean_words": [12.5, 30.0, 4.25, 8.0],
            "empty": [0, 1, 3, 0],
        }
    )
    text = responses_paragraph(summary, profile="paper", models=BIG)
    for fact in (
        "2 model(s) gave 40 answers",
        "4 on advbench",
        "36 on medsafety_eval",
        "4.2 words on average (b, medsafety_eval)",
        "30.0 (a, advbench)",
        "4 are empty",
    ):
        assert fact in text, (fact, text)
    _caveat_follows(lambda **kw: responses_paragraph(summary, **kw))


def test_judging_paragraph():
    validation = pd.DataFrame({"judge": ["hf:x", "keyword:"], "passes": [False, True]})
    harmfulness = pd.DataFrame(
        {
            "breakdown": ["harm_set"] * 4 + ["category"],
            "judge": ["hf:x", "hf:x", "keyword:", "keyword:", "keyword:"],
            "model": ["m1", "m2", "m1", "m2", "m1"],
            "harm_set": ["medsafety_eval"] * 4 + ["medsafety_eval"],
            "mean": [2.5, 3.75, 1.0, 5.0, 9.0],  # the category row is not read
            "unscored": [1, 2, 0, 0, 0],
        }
    )
    text = judging_paragraph(validation, harmfulness, profile="paper", models=BIG)
    for fact in (
        "2 judge(s)",
        "2 model(s)",
        "1 of 2 passed",
        "(`keyword:`)",
        "`hf:x` scores from 2.50 (`m1`",
        "to 3.75 (`m2`",
        "left 3 answer(s)",
        "failed validation",
        "from 1.00 (`m1`",
        "5.00 (`m2`",
    ):
        assert fact in text, (fact, text)
    assert "9.00" not in text
    tied = harmfulness.assign(mean=[3.0, 3.0, 1.0, 5.0, 9.0])
    text = judging_paragraph(validation, tied, profile="paper", models=BIG)
    assert "`hf:x` gives every model and harm set a mean of 3.00 on" in text
    _caveat_follows(lambda **kw: judging_paragraph(validation, harmfulness, **kw))


def test_finetune_paragraph():
    refusal = pd.DataFrame(
        {
            "model": ["m"] * 6,
            "type": ["none", "none", "med", "med", "gen", "gen"],
            "n": [0, 0, 8, 8, 8, 8],
            "eval_set": ["A", "B"] * 3,
            "rate": [0.1, 0.3, 0.5, 0.7, 0.2, 0.2],
            "delta": [None, None, 0.4, 0.4, 0.1, -0.1],
            "p_value": [None, None, 0.01, 0.2, 0.5, 0.04],
        }
    )
    table = refusal.assign(
        delta=[None, None, -1.0, -0.5, 0.2, 0.3], p_value=[None, None] + [0.01] * 4
    )
    text = finetune_paragraph(table, refusal, profile="paper", models=BIG)
    for fact in (
        "2 adapter(s)",
        "20% before",
        "40% after",
        "4 paired tests of harmfulness",
        "2 show a significant fall and 2 a significant rise",
        "4 paired tests of refusal",
        "1 show a significant fall and 1 a significant rise",
    ):
        assert fact in text, (fact, text)
    _caveat_follows(lambda **kw: finetune_paragraph(table, refusal, **kw))


def test_medical_paragraph():
    table = pd.DataFrame(
        {
            "model": ["m", "m", "m__med", "m__med"],
            "benchmark": ["medqa", "pubmedqa", "medqa", "pubmedqa"],
            "n_items": [20, 20, 20, 20],
            "chance": [0.25, 1 / 3, 0.25, 1 / 3],
            "ci_low": [0.1, 0.5, 0.05, 0.2],
            "chance_in_ci": [True, False, True, True],
            "adapter": ["", "", "m__med", "m__med"],
            "delta": [None, None, -0.1, -0.3],
            "p_value": [None, None, 0.5, 0.01],
        }
    )
    text = medical_paragraph(table, profile="paper", models=BIG)
    for fact in (
        "1 base model(s) and 1 adapter(s) answered 2 benchmark(s) (20 items per benchmark)",
        "3 of 4 accuracy intervals include chance and 1 lies above",
        "Of 2 comparisons",
        "1 is significant at 0.05 (1 of them losses)",
    ):
        assert fact in text, (fact, text)
    _caveat_follows(lambda **kw: medical_paragraph(table, **kw))
    base_only = medical_paragraph(table[table["adapter"] == ""], profile="paper", models=BIG)
    assert "0 adapter(s)" in base_only and "No adapter was compared" in base_only
