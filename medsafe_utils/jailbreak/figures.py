"""Figure of 02_jailbreak, named after the file it makes: the GCG loss per step.

`records`: attack_goals(...), one row per goal with its per-step losses."""

from __future__ import annotations

import matplotlib.pyplot as plt
import pandas as pd
from matplotlib.ticker import MaxNLocator

from medsafe_utils.models.labels import model_label


def fig_gcg_loss(records: pd.DataFrame) -> plt.Figure:
    """Loss per step (faint) and best loss so far (solid), one colour per goal."""
    fig, ax = plt.subplots(figsize=(7, 4))
    for i, record in enumerate(records.itertuples()):
        steps = range(len(record.losses) + 1)  # step 0: the initial suffix
        colour = f"C{i % 10}"
        ax.plot(steps, [record.initial_loss, *record.losses], color=colour, alpha=0.3, linewidth=1)
        ax.plot(
            steps,
            [record.initial_loss, *record.best_losses],
            color=colour,
            linewidth=1.5,
            label=f"{record.goal_id}{' (success)' if record.success else ''}",
        )
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set(
        xlabel="GCG step",
        ylabel="target loss (mean cross-entropy)",
        title=f"GCG on {model_label(records['model'].iloc[0])}" if len(records) else "GCG",
    )
    ax.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    return fig
