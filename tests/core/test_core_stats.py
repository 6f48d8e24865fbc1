"""core.stats.format_p: how every teaching text prints a p-value."""

import math

import pytest

from medsafe_utils.core.stats import format_p


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
