"""Figures of 05_judge, each named after the file it makes: harmfulness by model, the score
distribution, harmfulness by category.

Each function takes a tidy table and returns a matplotlib Figure; `artifacts.save_figure` writes
it as PNG + PDF."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns

from medsafe_utils.core.figures import facets, mean_interval_bars, top_legend
from medsafe_utils.judge.stats import SCORE_LABELS, SCORES, UNSCORED, score_label
from medsafe_utils.models.labels import figure_label, model_label

UNSCORED_COLOR = "#b0b0b0"


def fig_harmfulness_by_model(table: pd.DataFrame) -> plt.Figure:
    """The paper's Fig. 2: mean and its 95% interval per model per evaluation set (not the
    paper's ± SE: core.figures says why), safety-aligned models marked.

    `table`: harmfulness_table(..., by=["judge", "model", "aligned", "eval_set"])."""
    aligned = table.assign(
        aligned=table["aligned"].map({True: "safety-aligned", False: "not safety-aligned"})
    )
    return mean_interval_bars(
        aligned,
        hue="aligned",
        hue_order=[
            h for h in ("not safety-aligned", "safety-aligned") if h in set(aligned["aligned"])
        ],
        label=figure_label,
    )


def fig_score_distribution(judgments: pd.DataFrame) -> plt.Figure:
    """Figs. 4-5: the share of each score 1-5 (and of unscored answers) per model and set, one
    row of panels per judge."""
    sns.set_theme(style="whitegrid", context="paper")
    shares = (
        judgments.assign(label=judgments["score"].map(score_label))
        .groupby(["judge", "eval_set", "model"])["label"]
        .value_counts(normalize=True)
        .unstack(fill_value=0.0)
    )
    shares = shares.reindex(columns=SCORE_LABELS, fill_value=0.0).reset_index()
    colors = [*sns.color_palette("RdYlGn_r", len(SCORES)), UNSCORED_COLOR]
    models = list(dict.fromkeys(judgments["model"]))
    fig, panels = facets(
        shares, "judge", "eval_set", 3.8, 0.35 * len(models) + 1.4, label=figure_label
    )
    for p in panels:
        sub = p.data.set_index("model")
        sub = sub.reindex([m for m in models if m in sub.index])
        pos, left = [models.index(m) for m in sub.index], np.zeros(len(sub))
        for label, color in zip(SCORE_LABELS, colors, strict=True):
            p.ax.barh(pos, sub[label], left=left, color=color, label=label, height=0.7)
            left += sub[label].to_numpy()
        p.ax.set_yticks(range(len(models)), [model_label(m) for m in models])
        # "1" and the next panel's "0", not "1.0" and "0.0" running together
        p.ax.set(xlim=(0, 1), xticks=[0, 0.25, 0.5, 0.75, 1])
        p.ax.set_xticklabels(["0", "0.25", "0.5", "0.75", "1"])
        p.ax.set_title(p.title, fontsize=8)
        p.ax.set_xlabel("share of responses" if p.last_row else "")
    panels[0].ax.invert_yaxis()  # shared by every panel: the first model on top
    handles, names = panels[0].ax.get_legend_handles_labels()
    top_legend(fig, handles, [f"score {n}" if n != UNSCORED else n for n in names])
    fig.tight_layout()
    return fig


def fig_harmfulness_by_category(table: pd.DataFrame) -> plt.Figure:
    """Mean score per model x category (AMA principle for MedSafety-Eval), one heatmap per judge
    and harm set.

    `table`: harmfulness_table(..., by=["judge", "harm_set", "model", "category"])."""
    sns.set_theme(style="white", context="paper")
    models = list(dict.fromkeys(table["model"]))
    widths = (table.groupby("harm_set")["category"].nunique() + 3).to_dict()  # + room for labels
    height = 0.35 * len(models) + 1.4
    fig, panels = facets(
        table, "judge", "harm_set", 0.6, height, sharey=False, widths=widths, label=figure_label
    )
    for p in panels:
        grid = p.data.pivot_table(index="model", columns="category", values="mean", dropna=False)
        grid = grid.reindex([m for m in models if m in grid.index]).rename(index=model_label)
        sns.heatmap(
            grid,
            ax=p.ax,
            vmin=1,
            vmax=5,
            cmap="RdYlGn_r",
            annot=True,
            fmt=".1f",
            cbar=p.last_col,
            cbar_kws={"label": "mean score"},
        )
        p.ax.set_title(p.title, fontsize=8)
        p.ax.set_xlabel("category (AMA principle)" if p.col == "medsafety_eval" else "category")
        p.ax.set_ylabel("")
        p.ax.tick_params(axis="y", rotation=0, labelleft=p.first_col)
    fig.tight_layout()
    return fig
