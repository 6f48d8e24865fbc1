"""Statistics shared by the steps: mean and standard error, a proportion's confidence interval,
the interval of a mean score, and paired tests of a change on the same items (05/06
harmfulness and refusal, 07 accuracy).

Standard error: sample standard deviation (n - 1) over sqrt(n), as lm-eval reports it.
The interval of a mean score (harmfulness 1-5): a percentile bootstrap with a fixed seed, which
stays within the values' range, where mean ± SE or a t interval runs off a bounded scale when
the answers are few and near one end (six scores of 1 and 5 averaging 3.67: t interval
1.50-5.83).
A change on the same items: McNemar's exact test (two-sided binomial test on the discordant
pairs) when the values are 0/1, a paired t-test otherwise (scores 1-5, or correctness averaged
over several few-shot seeds)."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import stats


def mean_se(values) -> tuple[float, float]:
    """(mean, standard error = sample sd / sqrt(n)) over the values that are not missing.

    Missing values (unscored judgments) are left out here; count them beside the mean.
    NaN mean for no values, NaN standard error for fewer than two."""
    arr = pd.to_numeric(pd.Series(values, dtype=object), errors="raise").astype(float).to_numpy()
    arr = arr[~np.isnan(arr)]
    if len(arr) == 0:
        return math.nan, math.nan
    se = float(arr.std(ddof=1) / math.sqrt(len(arr))) if len(arr) > 1 else math.nan
    return float(arr.mean()), se


def standard_error(values) -> float:
    """std(ddof=1) / sqrt(n); NaN for fewer than two values (the judge tables' rule too)."""
    return mean_se(values)[1]


@dataclass(frozen=True)
class PairedTest:
    """Change from the base model on the same items."""

    test: str  # mcnemar_exact | paired_t
    delta: float  # accuracy(other) - accuracy(base)
    delta_se: float  # standard error of the per-item differences
    statistic: float  # McNemar: discordant pairs the other model won; t: the t statistic
    p_value: float
    n_better: int  # items the other model gets right more often than the base
    n_worse: int


def mcnemar_exact(base_correct, other_correct) -> tuple[int, int, float]:
    """(b, c, p): items only the other model got right, only the base got right, exact p
    (scipy's two-sided binomial test on the b + c discordant pairs; 1.0 when there are none)."""
    base = np.asarray(base_correct, dtype=bool)
    other = np.asarray(other_correct, dtype=bool)
    b, c = int((other & ~base).sum()), int((base & ~other).sum())
    p = stats.binomtest(b, b + c, 0.5).pvalue if b + c else 1.0
    return b, c, float(p)


def paired_t(base_correct, other_correct) -> tuple[float, float]:
    """(t, p) of a paired t-test; (0, 1) when every difference is zero, NaN for one item."""
    diff = np.asarray(other_correct, dtype=float) - np.asarray(base_correct, dtype=float)
    if len(diff) < 2:
        return float("nan"), float("nan")
    if np.ptp(diff) == 0:  # constant difference: no variance to test against
        return (0.0, 1.0) if diff[0] == 0 else (math.copysign(math.inf, diff[0]), 0.0)
    result = stats.ttest_rel(other_correct, base_correct)
    return float(result.statistic), float(result.pvalue)


def paired_test(base_correct, other_correct, binary: bool | None = None) -> PairedTest:
    """McNemar exact for 0/1 correctness (one run), paired t for seed-averaged correctness.

    binary=None decides from the values; the table passes binary=(one seed)."""
    base = np.asarray(base_correct, dtype=float)
    other = np.asarray(other_correct, dtype=float)
    if base.shape != other.shape or base.ndim != 1:
        raise ValueError(f"paired test needs two equal 1-d arrays, got {base.shape}, {other.shape}")
    diff = other - base
    common = dict(
        delta=float(diff.mean()),
        delta_se=standard_error(diff),
        n_better=int((diff > 0).sum()),
        n_worse=int((diff < 0).sum()),
    )
    if binary is None:
        binary = bool(np.isin(base, (0, 1)).all() and np.isin(other, (0, 1)).all())
    elif binary and not (np.isin(base, (0, 1)).all() and np.isin(other, (0, 1)).all()):
        raise ValueError("McNemar's test needs 0/1 correctness")
    if binary:
        b, _c, p = mcnemar_exact(base, other)
        return PairedTest("mcnemar_exact", statistic=float(b), p_value=p, **common)
    t, p = paired_t(base, other)
    return PairedTest("paired_t", statistic=t, p_value=p, **common)


def proportion_ci(successes: int, n: int, confidence: float = 0.95) -> tuple[float, float]:
    """Wilson score interval of a proportion (scipy's); (NaN, NaN) for no trials."""
    if n == 0:
        return math.nan, math.nan
    interval = stats.binomtest(int(successes), int(n)).proportion_ci(confidence, method="wilson")
    return float(interval.low), float(interval.high)


def t_interval(mean: float, se: float, n: int, confidence: float = 0.95) -> tuple[float, float]:
    """mean ± t(n - 1) x se; (NaN, NaN) when undefined (fewer than two values)."""
    if n < 2 or math.isnan(se):
        return math.nan, math.nan
    half = float(stats.t.ppf((1 + confidence) / 2, n - 1)) * se
    return mean - half, mean + half


def mean_ci(values, confidence: float = 0.95) -> tuple[float, float]:
    """t interval of a mean over the values that are not missing; (NaN, NaN) for fewer than two.
    A zero standard error (every value equal) gives the point (mean, mean)."""
    mean, se = mean_se(values)
    n = int(np.count_nonzero(~np.isnan(np.asarray(values, dtype=float))))
    return t_interval(mean, se, n, confidence)


BOOTSTRAP_RESAMPLES = 10_000
BOOTSTRAP_SEED = 0  # fixed: a table computed twice shows the same interval


def bootstrap_mean_ci(
    values,
    confidence: float = 0.95,
    n_resamples: int = BOOTSTRAP_RESAMPLES,
    seed: int = BOOTSTRAP_SEED,
) -> tuple[float, float]:
    """Percentile bootstrap interval of the mean over the values that are not missing: the
    central `confidence` share of the means of `n_resamples` resamples with replacement. It lies
    within [min, max] of the values (all 5s give [5, 5]); (NaN, NaN) for fewer than two."""
    arr = pd.to_numeric(pd.Series(values, dtype=object), errors="raise").astype(float).to_numpy()
    arr = arr[~np.isnan(arr)]
    if len(arr) < 2:
        return math.nan, math.nan
    # A resample is how often it draws each distinct value: a multinomial draw of the counts,
    # the same distribution as drawing n indices, at a cost that does not grow with n.
    levels, counts = np.unique(arr, return_counts=True)
    draws = np.random.default_rng(seed).multinomial(len(arr), counts / len(arr), n_resamples)
    means = draws @ levels / len(arr)
    tail = (1 - confidence) / 2
    low, high = np.quantile(means, [tail, 1 - tail])
    # the sum can land a rounding error outside the values' range (five 4.1s: 4.1000000000000005)
    return float(max(low, levels[0])), float(min(high, levels[-1]))


def format_p(p: float) -> str:
    """A p-value as the teaching texts print it: two significant digits, "p < 0.001" below that,
    "p n/a" when no test could be run."""
    if not math.isfinite(p):
        return "p n/a"
    return "p < 0.001" if p < 0.001 else f"p = {p:.2g}"
