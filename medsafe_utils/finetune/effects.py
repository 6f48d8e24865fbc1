"""What fine-tuning changed, measured on the same requests before and after: harmfulness per
judge and the refusal rate, each with a 95% interval (a bootstrap of the mean score, within the
1-5 scale; Wilson for the rate) and a paired test against the base model, and the sentences that
say so from the numbers.

    table = finetune_harmfulness(judgments)      # 06's Fig. 3 as a table, with p-values
    refusal = refusal_table(responses)           # the refusal-prefix check, Wilson intervals
    display(Markdown(explain_finetune(refusal)))

The paired test of an adapter is against its base model's answers to the same requests:
McNemar's exact test when the values take two levels (a refusal; the keyword judge's 1 and 5),
a paired t-test on scores 1-5 otherwise (core.stats.paired_test)."""

from __future__ import annotations

import math
from collections.abc import Iterable

import numpy as np
import pandas as pd

from medsafe_utils.core.stats import format_p, paired_test, proportion_ci
from medsafe_utils.data.refusal import is_refusal
from medsafe_utils.finetune.grid import BEFORE
from medsafe_utils.judge.stats import harmfulness_table, with_eval_set
from medsafe_utils.models.scale import with_small_run_caveat

CONFIDENCE = 0.95
GROUP = ["model", "type", "n", "eval_set"]
PAIR_KEY = ["harm_set", "item_id"]
TEST_COLUMNS = ["delta", "test", "p_value", "n_pairs"]


def _paired(base: pd.DataFrame, after: pd.DataFrame, column: str) -> dict:
    """The paired test of `column` between two answer sets, on the requests both have a value."""
    pairs = base.merge(after, on=PAIR_KEY, suffixes=("_base", "_after"))
    pairs = pairs[[f"{column}_base", f"{column}_after"]].apply(pd.to_numeric).dropna()
    if pairs.empty:
        return {"delta": math.nan, "test": "", "p_value": math.nan, "n_pairs": 0}
    a, b = pairs[f"{column}_base"].to_numpy(float), pairs[f"{column}_after"].to_numpy(float)
    levels = np.unique(np.concatenate([a, b]))
    binary = len(levels) <= 2  # a refusal, the keyword judge's 1/5, a judge that always says 4
    if binary:  # McNemar on the higher level
        a, b = (a == levels[-1]).astype(float), (b == levels[-1]).astype(float)
    result = paired_test(a, b, binary=binary)
    delta = float(np.mean(pairs[f"{column}_after"] - pairs[f"{column}_base"]))
    return {"delta": delta, "test": result.test, "p_value": result.p_value, "n_pairs": len(pairs)}


def _with_paired_tests(table: pd.DataFrame, items: pd.DataFrame, column: str) -> pd.DataFrame:
    """Each adapter row of `table` gets the paired test of `column` against its base model's
    answers in the same judge (if any) and evaluation set; the base rows keep NaN."""
    same = ["model", *(c for c in ("judge", "eval_set") if c in table.columns)]
    rows = []
    for record in table.to_dict("records"):
        if record["type"] == BEFORE:
            rows.append(dict.fromkeys(TEST_COLUMNS, math.nan) | {"test": "", "n_pairs": 0})
            continue
        mine = items[(items[same] == pd.Series({c: record[c] for c in same})).all(axis=1)]
        base = mine[mine["type"] == BEFORE]
        after = mine[(mine["type"] == record["type"]) & (mine["n"] == record["n"])]
        rows.append(_paired(base, after, column))
    tests = pd.DataFrame(rows, columns=TEST_COLUMNS)
    return pd.concat([table.reset_index(drop=True), tests], axis=1)


def _by_base_model(frame: pd.DataFrame) -> pd.DataFrame:
    """Answers with their evaluation set, `model` naming the base model: the tables group by
    base model, type and n (the answering model's id, base + adapter, is dropped)."""
    frame = with_eval_set(frame).drop(columns="model", errors="ignore")
    return frame.rename(columns={"base_model": "model"})


def finetune_harmfulness(judgments: pd.DataFrame) -> pd.DataFrame:
    """Per judge x base model x type x n x evaluation set: mean, se, the 95% bootstrap interval
    (judge.stats.harmfulness_table's), n_items, unscored, and for an adapter its paired test
    against the base model (delta = mean change)."""
    judged = _by_base_model(judgments)
    by = ["judge", "model", "type", "n_demos", "eval_set"]
    table = harmfulness_table(judged.rename(columns={"n": "n_demos"}), by)
    table = table.rename(columns={"n": "n_items", "n_demos": "n"})
    table = _with_paired_tests(table, judged, "score")
    columns = ["judge", *GROUP, "mean", "se", "ci_low", "ci_high", "n_items", "unscored"]
    return table[columns + TEST_COLUMNS]


def refusal_table(responses: pd.DataFrame) -> pd.DataFrame:
    """Per base model x type x n x evaluation set: how many answers refuse (the refusal-prefix
    check), the rate with its Wilson interval, and for an adapter McNemar's exact test against
    the base model on the same requests (delta = change of the rate)."""
    answers = _by_base_model(responses)
    answers["refused"] = [int(is_refusal(text)) for text in answers["response"]]
    table = answers.groupby(GROUP)["refused"].agg(n_items="size", refused="sum").reset_index()
    table["rate"] = table["refused"] / table["n_items"]
    intervals = [
        proportion_ci(int(k), int(n), CONFIDENCE)
        for k, n in zip(table["refused"], table["n_items"], strict=True)
    ]
    table["ci_low"] = [low for low, _ in intervals]
    table["ci_high"] = [high for _, high in intervals]
    return _with_paired_tests(table, answers, "refused")


def _compare_kinds(refusal: pd.DataFrame) -> list[str]:
    """A line per base model comparing the kinds at their largest n on MedSafety-Eval (the
    paper's question: do medical demonstrations matter for medical harm?), untested."""
    medical = refusal[
        refusal["eval_set"].str.startswith("MedSafety-Eval") & (refusal["type"] != BEFORE)
    ]
    lines = []
    for model, rows in medical.groupby("model", sort=False):
        largest = rows[rows["n"] == rows.groupby("type")["n"].transform("max")]
        rates = largest.groupby("type")["rate"].mean().sort_values(ascending=False)
        if len(rates) < 2:
            continue
        listed = ", ".join(f"{kind} {rate:.2f}" for kind, rate in rates.items())
        gap = rates.iloc[0] - rates.iloc[-1]
        verdict = (
            f"{rates.index[0]} demonstrations raised refusals most there"
            if gap >= 0.1
            else "the kinds did about equally there"
        )
        lines.append(
            f"- **{model} on MedSafety-Eval** (both origins, each kind at its largest n): refusal "
            f"rate {listed}; {verdict} (a difference of {gap:.2f}, not tested between kinds)."
        )
    return lines


def explain_finetune(refusal: pd.DataFrame, alpha: float = 0.05) -> str:
    """Markdown from the refusal table: per base model and demonstration type, the refusal rate
    before and after (largest n) on each evaluation set with its p-value, how it moves with n,
    and a verdict counted from the tests (significant at `alpha`, up or down)."""
    lines = []
    after = refusal[refusal["type"] != BEFORE]
    before = refusal[refusal["type"] == BEFORE].set_index(["model", "eval_set"])["rate"]
    up = down = 0
    for (model, kind), rows in after.groupby(["model", "type"], sort=False):
        largest = rows[rows["n"] == rows["n"].max()]
        parts = []
        for r in largest.to_dict("records"):
            base = before[(model, r["eval_set"])]
            parts.append(f"{r['eval_set']} {base:.2f} → {r['rate']:.2f} ({format_p(r['p_value'])})")
        significant = rows[rows["p_value"] < alpha]
        up += int((significant["delta"] > 0).sum())
        down += int((significant["delta"] < 0).sum())
        trend = ""
        if rows["n"].nunique() > 1:
            mean_by_n = rows.groupby("n")["rate"].mean()
            trend = "; mean over sets by n: " + ", ".join(
                f"n={k}: {v:.2f}" for k, v in mean_by_n.items()
            )
        lines.append(
            f"- **{model}, {kind} demonstrations (n={int(largest['n'].iloc[0])})**: "
            + "; ".join(parts)
            + trend
        )
    lines += _compare_kinds(refusal)
    tested = int(after["p_value"].notna().sum())
    if not tested:
        return "No adapter was compared with its base model."
    if up and not down:
        verdict = (
            f"Fine-tuning raised the refusal rate significantly (p < {alpha}) in {up} of "
            f"{tested} comparisons and lowered it in none: the demonstrations changed how "
            "the model answers harmful requests."
        )
    elif up or down:
        verdict = (
            f"Of {tested} comparisons, {up} show a significant rise in refusals and {down} a "
            f"significant fall (p < {alpha}): the effect is mixed at this scale."
        )
    else:
        verdict = (
            f"No comparison shows a significant change in refusals (p < {alpha}, {tested} "
            "comparisons): at this scale the demonstrations did not measurably change the "
            "answers; more demonstrations, epochs or requests would be needed to see one."
        )
    return "\n".join([verdict, "", *lines])


def finetune_paragraph(
    table: pd.DataFrame,
    refusal: pd.DataFrame,
    *,
    profile: str,
    models: Iterable[str],
    backends: str | Iterable[str] = "hf",
    alpha: float = 0.05,
) -> str:
    """The closing paragraph of 06: adapters compared, the refusal rate before and after (mean
    over evaluation sets), the significant changes of harmfulness and refusals, the caveat."""
    after = refusal[refusal["type"] != BEFORE]
    n_adapters = len(after.drop_duplicates(["model", "type", "n"]))
    rates = refusal.groupby(refusal["type"] == BEFORE)["rate"].mean()
    text = [
        f"{n_adapters} adapter(s) answered the same requests as their base model(s). Answers "
        f"with a refusal phrase: {rates.get(True, float('nan')):.0%} before fine-tuning, "
        f"{rates.get(False, float('nan')):.0%} after (mean over adapters and evaluation sets)."
    ]
    for name, part in (("harmfulness", table), ("refusal", refusal)):
        tested = part.dropna(subset=["p_value"])
        significant = tested[tested["p_value"] < alpha]
        text.append(
            f"Of {len(tested)} paired tests of {name} against the base model, "
            f"{int((significant['delta'] < 0).sum())} show a significant fall and "
            f"{int((significant['delta'] > 0).sum())} a significant rise (p < {alpha})."
        )
    return with_small_run_caveat(" ".join(text), profile, models, backends)
