"""Temporary: the kept libraries' statistics equal today's hand-written ones (issue 13)."""

import math
import warnings

import numpy as np
import pandas as pd
import pytest
from scipy import stats
from sklearn.metrics import cohen_kappa_score

from medsafe_utils.judge.stats import SCORES, spearman, weighted_kappa
from medsafe_utils.medical_eval.stats import mcnemar_exact


def library_kappa(a, b, labels=SCORES) -> float:
    pairs = pd.DataFrame({"a": pd.to_numeric(pd.Series(list(a)), errors="coerce"),
                          "b": pd.to_numeric(pd.Series(list(b)), errors="coerce")}).dropna()
    if pairs.empty or len(set(pairs["a"]) | set(pairs["b"])) == 1:
        return math.nan
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        return float(cohen_kappa_score(pairs["a"], pairs["b"], labels=labels, weights="quadratic"))


def same(x: float, y: float) -> bool:
    return (math.isnan(x) and math.isnan(y)) or x == pytest.approx(y, abs=1e-12)


KAPPA_CASES = [
    ([1, 1, 2, 3], [1, 2, 2, 3], [1, 2, 3]),  # 0.8 by hand
    ([1, 2, 3, 4, 5], [1, 2, 3, 4, 5], SCORES),
    ([1, 2, 4, 5], [5, 4, 2, 1], SCORES),
    ([3, 3], [3, 3], SCORES),  # both constant, same: NaN
    ([3, 3, 3], [4, 4, 4], SCORES),  # both constant, different: 0
    ([3, 3, 3], [1, 3, 5], SCORES),  # one constant
    ([1, None, 2, 3, 1], [1, 5, 2, 2, None], SCORES),  # unscored left out
    ([None, None], [1, 2], SCORES),  # nothing paired: NaN
    ([2], [4], SCORES),
    ([1, 2, 3, 4, 5, 1, 1, 2, 5, 4, 3, 3], [1, 3, 3, 5, 5, 2, 1, 1, 4, 4, 2, 3], SCORES),
]


@pytest.mark.parametrize(("a", "b", "labels"), KAPPA_CASES)
def test_kappa_cases(a, b, labels):
    assert same(library_kappa(a, b, labels), weighted_kappa(a, b, labels))


def test_kappa_random():
    rng = np.random.default_rng(0)
    for _ in range(500):
        n = int(rng.integers(1, 40))
        a = rng.integers(1, 6, n).astype(float)
        b = np.clip(a + rng.integers(-2, 3, n), 1, 5) if rng.random() < 0.5 else \
            rng.integers(1, 6, n).astype(float)
        a[rng.random(n) < 0.1] = np.nan
        labels = SCORES if rng.random() < 0.8 else [1, 2, 3, 4, 5, 6, 7]
        assert same(library_kappa(a, b, labels), weighted_kappa(a, b, labels))


def hand_spearman(a, b) -> float:
    """Pearson correlation of average ranks, written out."""
    pairs = pd.DataFrame({"a": pd.to_numeric(pd.Series(list(a)), errors="coerce"),
                          "b": pd.to_numeric(pd.Series(list(b)), errors="coerce")}).dropna()
    ra, rb = pairs["a"].rank().to_numpy(), pairs["b"].rank().to_numpy()
    if len(pairs) < 2 or ra.std() == 0 or rb.std() == 0:
        return math.nan
    ra, rb = ra - ra.mean(), rb - rb.mean()
    return float((ra * rb).sum() / math.sqrt((ra ** 2).sum() * (rb ** 2).sum()))


def test_spearman_equals_hand():
    rng = np.random.default_rng(1)
    cases = [([1, 2, 3, 4, 5], [2, 1, 4, 3, 5]), ([1, 1, 1], [1, 2, 3]), ([1], [2]),
             ([1, None, 3], [2, 5, None]), ([1, 2, 2, 3], [1, 1, 2, 2])]
    for _ in range(300):
        n = int(rng.integers(1, 30))
        a, b = rng.integers(1, 6, n).astype(float), rng.integers(1, 6, n).astype(float)
        b[rng.random(n) < 0.1] = np.nan
        cases.append((a, b))
    for a, b in cases:
        assert same(spearman(a, b), hand_spearman(a, b))


def hand_mcnemar(base, other) -> tuple[int, int, float]:
    """Two-sided exact McNemar: 2 * P(X <= min(b, c)), X ~ Bin(b + c, 1/2), at most 1."""
    b = sum(1 for x, y in zip(base, other, strict=True) if y and not x)
    c = sum(1 for x, y in zip(base, other, strict=True) if x and not y)
    n = b + c
    tail = sum(math.comb(n, k) for k in range(min(b, c) + 1)) / 2 ** n
    return b, c, min(1.0, 2 * tail)


def test_mcnemar_equals_hand():
    rng = np.random.default_rng(2)
    cases = [([1, 1, 0, 0, 0, 0, 0, 1, 1, 0], [1, 0, 1, 1, 1, 1, 1, 1, 1, 0]),
             ([1, 0], [1, 0]), ([], []), ([0, 0, 0], [1, 1, 1]), ([1, 0], [0, 1])]
    for _ in range(300):
        n = int(rng.integers(1, 60))
        base = rng.random(n) < rng.random()
        other = np.where(rng.random(n) < 0.3, ~base, base)
        cases.append((base.astype(int).tolist(), other.astype(int).tolist()))
    for base, other in cases:
        b, c, p = mcnemar_exact(base, other)
        hb, hc, hp = hand_mcnemar(base, other)
        assert (b, c) == (hb, hc) and p == pytest.approx(hp, rel=1e-9)


def test_binomtest_is_exact_mcnemar():
    """scipy's binomtest on the discordant pairs: the exact McNemar p used by mcnemar_exact."""
    for b, c in [(5, 1), (2, 0), (3, 3), (10, 4), (0, 7)]:
        assert stats.binomtest(b, b + c, 0.5).pvalue == pytest.approx(hand_mcnemar(
            [0] * b + [1] * c, [1] * b + [0] * c)[2])
