"""Figure of 01_generate, named after the file it makes: requests kept per AMA principle."""

from __future__ import annotations

import matplotlib.pyplot as plt
import pandas as pd
import seaborn as sns


def fig_requests_per_principle(requests: pd.DataFrame, principles: list[int]) -> plt.Figure:
    """Bars of the requests kept (after filtering and dedup) per principle, one per method."""
    counts = requests.groupby(["category", "method"]).size().rename("requests").reset_index()
    grid = sns.catplot(
        data=counts,
        x="category",
        y="requests",
        hue="method",
        kind="bar",
        height=3.2,
        aspect=2,
        order=principles,
    )
    grid.set_axis_labels("AMA principle", "requests kept")
    return grid.figure
