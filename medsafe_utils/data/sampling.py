"""Seeded subsets that keep every group represented (03's requests, 04/06's evaluation requests,
05's validation set)."""

from __future__ import annotations

import pandas as pd


def sample_per_group(
    frame: pd.DataFrame, by: str | list[str], n: int, seed: int = 0
) -> pd.DataFrame:
    """Up to n rows of each group, drawn with `seed`, in the drawn order; n = 0 keeps every row
    in its order. The same seed and frame give the same rows."""
    if not n:
        return frame
    # Shuffle once, then the first n of each group: a seeded sample within every group.
    return frame.sample(frac=1, random_state=seed).groupby(by).head(n)
