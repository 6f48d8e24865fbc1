"""The teaching text of 05 written from the run's own numbers: which judges passed validation,
and what the judges that passed say about the models. Each function returns Markdown (the
notebook shows it with IPython.display.Markdown); the words follow the numbers, so a run where a
judge passes and one where it fails read differently."""

from __future__ import annotations

import math
from collections.abc import Iterable

import pandas as pd

from medsafe_utils.core.stats import format_p, paired_test
from medsafe_utils.judge.stats import with_eval_set
from medsafe_utils.models.scale import with_small_run_caveat

SIGNIFICANCE = 0.05  # a paired difference with p below this "separates" two models


def _passing_first(table: pd.DataFrame) -> list[dict]:
    """The table's rows, the judges that pass first (the ones to read the figures through)."""
    return table.sort_values("passes", ascending=False, kind="stable").to_dict(orient="records")


def _judge_sentence(row: dict) -> str:
    """One judge's verdict on the safe responses, with the counts it rests on."""
    judge, n, unscored = f"`{row['judge']}`", row["n"], row["unscored"]
    threshold = row["max_false_harm_rate"]
    if n == unscored:
        return f"{judge} **fails**: it left all {n} safe responses unscored."
    measured = (
        f"it scored {row['n_false_harm']} of {n - unscored} safe responses above 1 (false-harm "
        f"rate {row['false_harm_rate']:.2f}, 95% CI {row['false_harm_ci_low']:.2f}–"
        f"{row['false_harm_ci_high']:.2f}; mean score {row['mean_score']:.2f}, where every one "
        "should score 1)"
    )
    if unscored:
        measured += (
            f" and left {unscored} unscored, counted against it "
            f"({row['false_harm_or_unscored_rate']:.2f} with them)"
        )
    if row["passes"]:
        return f"{judge} **passes**: {measured}, within the threshold of {threshold:.2f}."
    why = (
        "calls known-safe answers harmful too often"
        if row["false_harm_rate"] > threshold
        else "leaves too many answers unscored"
    )
    return (
        f"{judge} **fails**: {measured}, above the threshold of {threshold:.2f}; it {why} to be "
        "trusted, and its panels in the figures below carry a red mark."
    )


def explain_validation(table: pd.DataFrame) -> str:
    """A paragraph on validation_table: each judge's verdict with its rates and counts, and
    which judges the harmfulness figures that follow can be read through."""
    lines = [f"- {_judge_sentence(row)}" for row in _passing_first(table)]
    passing = table.loc[table["passes"], "judge"].tolist()
    if passing:
        names = ", ".join(f"`{j}`" for j in passing)
        verdict = (
            f"Read the harmfulness figures below through {names}. The check goes one way only: "
            "it shows that a judge does not call refusals harmful, not that it catches harmful "
            "answers (the expert review at the end measures that)."
        )
    else:
        verdict = (
            "No judge passes: every harmfulness figure below is marked, and its differences "
            "describe the judges, not the models."
        )
    return "\n".join(lines) + "\n\n" + verdict


def _separation(eval_set: str, group: pd.DataFrame, means: pd.DataFrame) -> str:
    """Whether a judge separates the most and the least harmful model on one evaluation set, on
    the requests both answered (paired t-test)."""
    ordered = means["mean"].sort_values(kind="stable")  # two models even when all means tie
    low, high = ordered.index[0], ordered.index[-1]
    wide = group.pivot_table(index="item", columns="model", values="score", aggfunc="first")
    pairs = wide[[low, high]].dropna()
    head = (
        f"On {eval_set} it scores `{high}` {means.loc[high, 'mean']:.2f} and `{low}` "
        f"{means.loc[low, 'mean']:.2f}"
    )
    if len(pairs) < 2:
        return f"{head}; they share {len(pairs)} scored request(s), too few to test."
    test = paired_test(pairs[low], pairs[high], binary=False)
    numbers = (
        f"difference {test.delta:.2f} ± {test.delta_se:.2f} over {len(pairs)} shared requests, "
        f"paired t {format_p(test.p_value)}"
    )
    if not math.isnan(test.p_value) and test.p_value < SIGNIFICANCE:
        return f"{head}: it separates them ({numbers})."
    return f"{head}: it does not separate them at this size ({numbers})."


def _passing_line(judge: str, judged: pd.DataFrame) -> str:
    """A passing judge, set by set: the model means, and whether it separates the models."""
    alone: dict[str, list[str]] = {}  # model -> its means on the sets where it is the only one
    sentences = []
    for eval_set, group in judged.groupby("eval_set", sort=False):
        means = group.groupby("model")["score"].agg(["mean", "count"]).dropna()
        if len(means) == 1:
            mean, n = means.iloc[0]
            alone.setdefault(means.index[0], []).append(f"{mean:.2f} on {eval_set} (n = {n:.0f})")
        elif len(means) > 1:
            sentences.append(_separation(eval_set, group, means))
        else:
            sentences.append(f"On {eval_set} it scored no answer.")
    for model, parts in alone.items():
        listed = ", ".join(parts[:-1]) + (" and " if len(parts) > 1 else "") + parts[-1]
        sentences.insert(
            0, f"It scores `{model}` {listed}; with one model there is nothing to separate."
        )
    return f"- `{judge}` passes validation. " + " ".join(sentences)


def _failing_line(judge: str, judged: pd.DataFrame, safe_mean: float) -> str:
    """A failing judge: its model means beside its mean on the known-safe refusals."""
    means = judged.groupby(["eval_set", "model"])["score"].mean().dropna()
    if means.empty or math.isnan(safe_mean):
        return f"- `{judge}` fails validation and has no scores to compare."
    low, high = means.min(), means.max()
    spread = (
        f"gives every model {low:.2f} on every set"
        if f"{low:.2f}" == f"{high:.2f}"
        else f"gives the models means from {low:.2f} to {high:.2f}"
    )
    relation = "no lower than" if safe_mean >= low else "below"
    return (
        f"- `{judge}` fails validation: it {spread}, and the known-safe refusals {safe_mean:.2f}, "
        f"{relation} its lowest model mean; its marked panels say little about the models."
    )


def explain_harmfulness(judgments: pd.DataFrame, table: pd.DataFrame) -> str:
    """A paragraph on the judged responses, per judge of validation_table: for a judge that
    passes, whether it separates the most and the least harmful model on each evaluation set;
    for one that fails, its range of model means beside its mean on the safe responses."""
    judged = judgments if "eval_set" in judgments else with_eval_set(judgments)
    judged = judged.assign(
        score=pd.to_numeric(judged["score"], errors="coerce").astype(float),
        item=judged["harm_set"].astype(str) + "/" + judged["item_id"].astype(str),
    )
    lines = [
        _passing_line(row["judge"], judged[judged["judge"] == row["judge"]])
        if row["passes"]
        else _failing_line(row["judge"], judged[judged["judge"] == row["judge"]], row["mean_score"])
        for row in _passing_first(table)
    ]
    if not table["passes"].any():
        lines.append(
            "\nNo judge passed validation, so no difference in these figures is a finding."
        )
    return "\n".join(lines)


def judging_paragraph(
    validation: pd.DataFrame,
    harmfulness: pd.DataFrame,
    *,
    profile: str,
    models: Iterable[str],
    backends: str | Iterable[str] = "hf",
) -> str:
    """The closing paragraph of 05: how many judges passed validation, each judge's highest and
    lowest mean score over models and harm sets (tab_harmfulness), the answers left unscored,
    and the small-run caveat."""
    passing = validation.loc[validation["passes"], "judge"].tolist()
    text = [
        f"{len(validation)} judge(s) scored the answers of "
        f"{harmfulness['model'].nunique()} model(s); {len(passing)} of {len(validation)} passed "
        "validation on MedSafetyBench's safe responses"
        + (f" ({', '.join(f'`{j}`' for j in passing)})." if passing else ".")
    ]
    per_set = harmfulness[harmfulness["breakdown"] == "harm_set"].dropna(subset=["mean"])
    for judge, rows in per_set.groupby("judge", sort=False):
        high, low = rows.loc[rows["mean"].idxmax()], rows.loc[rows["mean"].idxmin()]
        spread = (
            f"gives every model and harm set a mean of {low['mean']:.2f}"
            if f"{low['mean']:.2f}" == f"{high['mean']:.2f}"
            else f"scores from {low['mean']:.2f} (`{low['model']}`, {low['harm_set']}) to "
            f"{high['mean']:.2f} (`{high['model']}`, {high['harm_set']})"
        )
        text.append(
            f"`{judge}` {spread} on the 1-5 scale and "
            f"left {int(rows['unscored'].sum())} answer(s) unscored"
            + (
                "."
                if judge in passing
                else "; it failed validation, so its scores describe "
                "the judge more than the models."
            )
        )
    return with_small_run_caveat(" ".join(text), profile, models, backends)
