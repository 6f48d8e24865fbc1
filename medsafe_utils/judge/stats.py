"""Statistics of judged responses: mean harmfulness with standard errors and 95% bootstrap
intervals (core.stats.bootstrap_mean_ci: within the 1-5 scale), unscored counts kept beside them,
agreement between judges, and the false-harm rate on known-safe responses."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pandas as pd
from scipy.stats import spearmanr
from sklearn.metrics import cohen_kappa_score

from medsafe_utils.core.stats import bootstrap_mean_ci, mean_se

SCORES = [1, 2, 3, 4, 5]
UNSCORED = "unscored"
SCORE_LABELS = [*map(str, SCORES), UNSCORED]  # a score as a category, for counts and colours
SET_NAMES = {"medsafety_eval": "MedSafety-Eval"}
ORIGIN_NAMES = {"gpt4": "GPT-4", "llama2": "Llama-2"}


def score_label(score) -> str:
    """A score as a category of SCORE_LABELS: '1'..'5', or 'unscored'."""
    return UNSCORED if pd.isna(score) else str(int(score))


def harmfulness_table(judgments: pd.DataFrame, by: list[str]) -> pd.DataFrame:
    """Per group of `by`: mean score, se, the 95% bootstrap interval (ci_low, ci_high), n
    (scored), unscored (never dropped, counted here)."""
    missing = set(by + ["score"]) - set(judgments.columns)
    if missing:
        raise KeyError(f"judgments lack column(s) {sorted(missing)}")
    rows = []
    for key, group in judgments.groupby(by, sort=True, dropna=False):
        scores = pd.to_numeric(group["score"], errors="coerce")
        mean, se = mean_se(scores)
        low, high = bootstrap_mean_ci(scores)
        rows.append(
            [*key, mean, se, low, high, int(scores.notna().sum()), int(scores.isna().sum())]
        )
    return pd.DataFrame(rows, columns=[*by, "mean", "se", "ci_low", "ci_high", "n", "unscored"])


def _pairs(a, b) -> tuple[np.ndarray, np.ndarray]:
    """The pairs (a, b) where both scores are present, as numbers."""
    a, b = (
        pd.to_numeric(pd.Series(list(x)), errors="coerce").to_numpy(float, na_value=np.nan)
        for x in (a, b)
    )
    both = ~np.isnan(a) & ~np.isnan(b)
    return a[both], b[both]


def weighted_kappa(a, b, labels: list[int] = SCORES) -> float:
    """Cohen's kappa with quadratic weights between two raters' scores (pairs with a missing
    score are left out). NaN when the expected disagreement is zero (both raters constant)."""
    a, b = _pairs(a, b)
    seen = set(a.tolist()) | set(b.tolist())
    if seen - set(labels):
        raise ValueError(f"scores {sorted(seen - set(labels))} are not among the labels {labels}")
    # One label seen: no expected disagreement, kappa undefined (scikit-learn would warn).
    if len(seen) < 2:
        return math.nan
    return float(cohen_kappa_score(a, b, labels=labels, weights="quadratic"))


def spearman(a, b) -> float:
    """Spearman's rank correlation over the pairs where both values are present."""
    a, b = _pairs(a, b)
    if len(a) < 2 or len(set(a.tolist())) < 2 or len(set(b.tolist())) < 2:
        return math.nan
    return float(spearmanr(a, b).statistic)


def agreement_table(judgments: pd.DataFrame) -> pd.DataFrame:
    """Each pair of judges on the same responses (response_idx): n (both scored), exact
    agreement, quadratic weighted kappa, Spearman."""
    wide = judgments.pivot_table(
        index="response_idx", columns="judge", values="score", aggfunc="first", dropna=False
    )
    rows = []
    for first, second in itertools.combinations(sorted(judgments["judge"].unique()), 2):
        a = pd.to_numeric(wide[first], errors="coerce")
        b = pd.to_numeric(wide[second], errors="coerce")
        both = a.notna() & b.notna()
        rows.append(
            {
                "judge_a": first,
                "judge_b": second,
                "n": int(both.sum()),
                "exact_agreement": float((a[both] == b[both]).mean()) if both.any() else math.nan,
                "weighted_kappa": weighted_kappa(a, b),
                "spearman": spearman(a, b),
            }
        )
    return pd.DataFrame(
        rows, columns=["judge_a", "judge_b", "n", "exact_agreement", "weighted_kappa", "spearman"]
    )


def false_harm_rates(judgments: pd.DataFrame) -> pd.DataFrame:
    """Per judge, on responses known to be safe (score 1 expected): n, unscored, unscored rate,
    n_false_harm (scored above 1), false-harm rate (their share of the scored), strict false-harm
    rate (scored 3 or more), mean score."""
    rows = []
    for judge, group in judgments.groupby("judge", sort=True):
        scores = pd.to_numeric(group["score"], errors="coerce")
        scored = scores.dropna()
        rows.append(
            {
                "judge": judge,
                "n": len(scores),
                "unscored": int(scores.isna().sum()),
                "unscored_rate": float(scores.isna().mean()),
                "n_false_harm": int((scored > 1).sum()),
                "false_harm_rate": float((scored > 1).mean()) if len(scored) else math.nan,
                "false_harm_rate_3plus": float((scored >= 3).mean()) if len(scored) else math.nan,
                "mean_score": float(scored.mean()) if len(scored) else math.nan,
            }
        )
    return pd.DataFrame(rows)


def eval_set(harm_set: str, origin: str) -> str:
    """The paper's evaluation sets: MedSafety-Eval by origin (GPT-4 / Llama-2), general harm."""
    if harm_set in SET_NAMES:
        return f"{SET_NAMES[harm_set]} ({ORIGIN_NAMES.get(origin, origin)})"
    return harm_set


def with_eval_set(judgments: pd.DataFrame) -> pd.DataFrame:
    """The judgments with an `eval_set` column (MedSafety-Eval split by origin)."""
    return judgments.assign(
        eval_set=[
            eval_set(h, o) for h, o in zip(judgments["harm_set"], judgments["origin"], strict=True)
        ]
    )


def harmfulness_breakdown(judgments: pd.DataFrame) -> pd.DataFrame:
    """tab_harmfulness: per judge x model x harm set, then the same per origin and per category
    (`breakdown` says which; 'all' fills the columns a row is not split by). Where a judge
    reports expected scores (hf), their mean is added as `mean_expected`."""
    base = [c for c in ("judge", "model", "aligned", "harm_set") if c in judgments.columns]
    expected = "expected_score" in judgments and judgments["expected_score"].notna().any()
    parts = []
    for breakdown, extra in (("harm_set", []), ("origin", ["origin"]), ("category", ["category"])):
        if extra and extra[0] not in judgments.columns:
            continue
        table = harmfulness_table(judgments, base + extra)
        if expected:
            means = (
                judgments.groupby(base + extra, sort=True, dropna=False)["expected_score"]
                .mean()
                .rename("mean_expected")
                .reset_index()
            )
            table = table.merge(means, on=base + extra, how="left")
        table[extra] = table[extra].astype(object)
        table.insert(0, "breakdown", breakdown)
        parts.append(table)
    out = pd.concat(parts, ignore_index=True)
    split = [c for c in ("origin", "category") if c in out]
    out[split] = out[split].astype(object).where(out[split].notna(), "all")
    return out[
        [
            "breakdown",
            *base,
            *split,
            "mean",
            "se",
            "ci_low",
            "ci_high",
            "n",
            "unscored",
            *(["mean_expected"] if expected else []),
        ]
    ]


def judge_metrics(judgments: pd.DataFrame, validation: pd.DataFrame | None = None) -> dict:
    """Flat metrics per judge: items, unscored rate, mean score; with validation on safe
    responses, the false-harm rates and the unscored rate there."""
    metrics: dict = {}
    for judge, group in judgments.groupby("judge", sort=True):
        scores = pd.to_numeric(group["score"], errors="coerce").astype(float)  # NA -> NaN
        metrics |= {
            f"{judge}/n": len(scores),
            f"{judge}/unscored": int(scores.isna().sum()),
            f"{judge}/unscored_rate": float(scores.isna().mean()),
            f"{judge}/mean_score": float(scores.mean()),
        }
    if validation is not None:
        for row in false_harm_rates(validation).to_dict(orient="records"):
            judge = row.pop("judge")
            metrics |= {f"{judge}/validation_{key}": value for key, value in row.items()}
    return metrics
