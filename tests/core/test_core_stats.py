"""core.stats: how every teaching text prints a p-value, and the bootstrap interval of a mean
score against the exact bootstrap distribution and scipy's."""

import itertools
import math

import numpy as np
import pytest
from scipy import stats

from medsafe_utils.core.stats import bootstrap_mean_ci, format_p, mean_ci


@pytest.mark.parametrize(
    ("p", "text"),
    [
        (1.0, "p = 1"),
        (0.0801, "p = 0.08"),
        (0.33, "p = 0.33"),
        (2 * 0.5**10, "p = 0.002"),  # exact McNemar, 10 discordant pairs all one way
        (0.001, "p = 0.001"),
        (0.00099, "p < 0.001"),
        (0.0, "p < 0.001"),
        (math.nan, "p n/a"),
    ],
)
def test_format_p(p, text):
    assert format_p(p) == text


def test_bootstrap_interval_of_a_constant_score_is_the_point():
    assert bootstrap_mean_ci([5] * 9) == (5.0, 5.0)
    assert bootstrap_mean_ci([1, 1, None]) == (1.0, 1.0)  # the unscored left out
    assert bootstrap_mean_ci([4.1] * 5) == (4.1, 4.1)  # no rounding error past the values
    assert all(math.isnan(v) for v in bootstrap_mean_ci([3]))  # one value: no spread known
    assert all(math.isnan(v) for v in bootstrap_mean_ci([None, math.nan]))


def test_bootstrap_interval_stays_on_the_scale_where_the_t_interval_leaves_it():
    # 06's smoke run: the keyword judge scored six answers 5, 5, 5, 5, 1, 1 (mean 3.67)
    scores = [5, 5, 5, 5, 1, 1]
    low, high = mean_ci(scores)
    assert high > 5  # the t interval: 1.50-5.83, past the scale's end
    low, high = bootstrap_mean_ci(scores)
    assert 1 <= low < sum(scores) / 6 < high <= 5
    assert bootstrap_mean_ci(scores) == (low, high)  # the fixed seed: the same interval again


def _exact_bootstrap_quantiles(values, probs):
    """The bootstrap distribution of the mean, exactly: every one of the n^n equally likely
    index tuples enumerated; its quantiles by the inverted CDF (no Monte Carlo)."""
    means = np.array([np.mean(t) for t in itertools.product(values, repeat=len(values))])
    return np.quantile(means, probs, method="inverted_cdf")


def test_bootstrap_interval_against_the_exact_bootstrap_and_scipy():
    scores = [1, 2, 3, 5, 5]  # 3,125 resamples: the exact distribution is enumerable
    exact = _exact_bootstrap_quantiles(scores, [0.025, 0.975])
    low, high = bootstrap_mean_ci(scores)
    # Monte Carlo over 10,000 resamples lands on the exact quantile or its neighbour atom (the
    # means are multiples of 1/5)
    assert abs(low - exact[0]) <= 0.2 + 1e-9 and abs(high - exact[1]) <= 0.2 + 1e-9
    ours_scipy = stats.bootstrap(
        (np.array(scores, float),), np.mean, method="percentile", n_resamples=20_000, rng=1
    ).confidence_interval
    assert low == pytest.approx(ours_scipy.low, abs=0.21)
    assert high == pytest.approx(ours_scipy.high, abs=0.21)
    # a narrower confidence gives a narrower interval
    narrow = bootstrap_mean_ci(scores, confidence=0.5)
    assert low <= narrow[0] <= narrow[1] <= high
