"""Figures of 06_finetune, each named after the file it makes: harmfulness before and after
fine-tuning, and against the number of demonstrations.

`table`: effects.finetune_harmfulness(judgments), one row per judge x model x type x n x set; the
error bars are its 95% intervals (ci_low, ci_high), drawn as 0 where an interval is undefined."""

from __future__ import annotations

import matplotlib.pyplot as plt
import pandas as pd
import seaborn as sns

from medsafe_utils.core.figures import facets, mean_se_bars, top_legend
from medsafe_utils.finetune.alpaca import FT_KINDS
from medsafe_utils.finetune.grid import BEFORE

TYPE_LABELS = {
    BEFORE: "before (base model)",
    "med": "medical safety",
    "gen": "general safety",
    "both": "medical + general",
}


def _type_order(table: pd.DataFrame) -> list[str]:
    return [t for t in (BEFORE, *FT_KINDS) if t in set(table["type"])]


def _half_interval(table: pd.DataFrame) -> pd.Series:
    """The half width of each row's (symmetric) 95% interval, 0 where it is undefined."""
    return (table["ci_high"] - table["mean"]).fillna(0)


def fig_before_after(table: pd.DataFrame, n: int = 0) -> plt.Figure:
    """The paper's Fig. 3: each base model before and after fine-tuning on each demonstration
    type (at n, or each type's largest n when n is 0), per evaluation set, mean and 95% interval."""
    after = table[table["type"] != BEFORE]
    chosen = after[after["n"] == (n or after.groupby("type")["n"].transform("max"))]
    sub = pd.concat([table[table["type"] == BEFORE], chosen], ignore_index=True)
    sizes = chosen.groupby("type")["n"].max().to_dict()
    labels = {
        t: TYPE_LABELS[t] + (f" (n={sizes[t]})" if t in sizes else "") for t in _type_order(sub)
    }
    return mean_se_bars(
        sub.assign(se=_half_interval(sub)),
        y="model",
        col="eval_set",
        row="judge",
        hue="type",
        hue_order=_type_order(sub),
        hue_labels=labels,
        xlabel="mean harmfulness score (1-5), 95% interval",
    )


def fig_harm_vs_n(table: pd.DataFrame) -> plt.Figure:
    """Mean harmfulness (95% interval) against the number of demonstrations, one line per type
    (n = 0 is the base model), one panel per evaluation set and judge x base model."""
    sns.set_theme(style="whitegrid", context="paper")
    table = table.assign(panel=table["judge"] + "\n" + table["model"])
    fig, panels = facets(table, "panel", "eval_set", 3.6, 2.8)
    # The colours of fig_before_after: the first is the base model's.
    palette = dict(zip(FT_KINDS, sns.color_palette("deep", 1 + len(FT_KINDS))[1:], strict=True))
    for p in panels:
        before = p.data[p.data["type"] == BEFORE]
        for kind in [t for t in FT_KINDS if t in set(p.data["type"])]:
            line = pd.concat([before, p.data[p.data["type"] == kind]]).sort_values("n")
            p.ax.errorbar(
                line["n"],
                line["mean"],
                yerr=_half_interval(line),
                marker="o",
                capsize=2,
                color=palette[kind],
                label=TYPE_LABELS[kind],
            )
        p.ax.set_ylim(1, 5)
        p.ax.set_title(p.title, fontsize=8)
        p.ax.set_xlabel("demonstrations (0 = base model)" if p.last_row else "")
        p.ax.set_ylabel("mean harmfulness, 95% interval" if p.first_col else "")
    top_legend(fig, *panels[0].ax.get_legend_handles_labels())
    fig.tight_layout()
    return fig
