"""Figures of 06_finetune, each named after the file it makes: harmfulness before and after
fine-tuning, and against the number of demonstrations.

`table`: effects.finetune_harmfulness(judgments), one row per judge x model x type x n x set; the
error bars are its 95% bootstrap intervals (ci_low, ci_high), none where one is undefined."""

from __future__ import annotations

import matplotlib.pyplot as plt
import pandas as pd
import seaborn as sns

from medsafe_utils.core.figures import facets, interval_label, mean_interval_bars, top_legend
from medsafe_utils.finetune.alpaca import FT_KINDS
from medsafe_utils.finetune.grid import BEFORE
from medsafe_utils.models.labels import figure_label, judge_label, model_label

TYPE_LABELS = {
    BEFORE: "before (base model)",
    "med": "medical safety",
    "gen": "general safety",
    "both": "medical + general",
}


def _type_order(table: pd.DataFrame) -> list[str]:
    return [t for t in (BEFORE, *FT_KINDS) if t in set(table["type"])]


def _interval(table: pd.DataFrame) -> list[pd.Series]:
    """Each row's 95% interval as error bar lengths (below, above the mean), 0 where undefined."""
    return [
        (table["mean"] - table["ci_low"]).fillna(0),
        (table["ci_high"] - table["mean"]).fillna(0),
    ]


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
    return mean_interval_bars(
        sub,
        y="model",
        col="eval_set",
        row="judge",
        hue="type",
        hue_order=_type_order(sub),
        hue_labels=labels,
        label=figure_label,
    )


def fig_harm_vs_n(table: pd.DataFrame) -> plt.Figure:
    """Mean harmfulness (95% interval) against the number of demonstrations, one line per type
    (n = 0 is the base model), one panel per evaluation set and judge x base model."""
    sns.set_theme(style="whitegrid", context="paper")
    names = zip(table["judge"].map(judge_label), table["model"].map(model_label), strict=True)
    table = table.assign(panel=[f"{judge}\n{model}" for judge, model in names])
    fig, panels = facets(table, "panel", "eval_set", 3.6, 2.8, label=figure_label)
    # The colours of fig_before_after: the first is the base model's.
    palette = dict(zip(FT_KINDS, sns.color_palette("deep", 1 + len(FT_KINDS))[1:], strict=True))
    for p in panels:
        before = p.data[p.data["type"] == BEFORE]
        for kind in [t for t in FT_KINDS if t in set(p.data["type"])]:
            line = pd.concat([before, p.data[p.data["type"] == kind]]).sort_values("n")
            p.ax.errorbar(
                line["n"],
                line["mean"],
                yerr=_interval(line),
                marker="o",
                capsize=2,
                color=palette[kind],
                label=TYPE_LABELS[kind],
            )
        p.ax.set_ylim(1, 5)
        p.ax.set_title(p.title, fontsize=8)
        p.ax.set_xlabel("demonstrations (0 = base model)" if p.last_row else "")
        p.ax.set_ylabel(interval_label("mean harmfulness (1-5)") if p.first_col else "")
    top_legend(fig, *panels[0].ax.get_legend_handles_labels())
    fig.tight_layout()
    return fig
