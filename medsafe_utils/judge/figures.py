"""Seaborn figures of harmfulness scores (05_judge; reusable by 06_finetune).

Each function takes a tidy table and returns a matplotlib Figure; `artifacts.save_figure` writes
it as PNG + PDF."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns

from medsafe_utils.judge.stats import SCORES

UNSCORED_COLOR = "#b0b0b0"


def _facets(table: pd.DataFrame, row: str | None, col: str, width: float, height: float,
            sharey: bool = True, widths: dict | None = None):
    """A grid of panels: one row per `row` value, one column per `col` value (relative
    `widths` per column value, if given)."""
    rows = list(dict.fromkeys(table[row])) if row else [None]
    cols = list(dict.fromkeys(table[col]))
    ratios = [widths[c] for c in cols] if widths else [1] * len(cols)
    fig, axes = plt.subplots(len(rows), len(cols), squeeze=False, sharey=sharey,
                             figsize=(width * sum(ratios), height * len(rows)),
                             gridspec_kw={"width_ratios": ratios})
    return fig, axes, rows, cols


def _panels(rows: list, cols: list) -> list:
    """((row index, row), (col index, col)) for every panel."""
    return [((ri, r), (ci, c)) for ri, r in enumerate(rows) for ci, c in enumerate(cols)]


def _title(r, c) -> str:
    """A panel's title: the row value (a judge) over the column value (a set)."""
    return "\n".join(str(v) for v in (r, c) if v is not None)


def _select(table: pd.DataFrame, row: str | None, r, col: str, c) -> pd.DataFrame:
    keep = table[col] == c
    if row:
        keep &= table[row] == r
    return table[keep]


def plot_mean_se(table: pd.DataFrame, *, y: str = "model", col: str = "eval_set",
                 row: str | None = "judge", hue: str | None = None, order: list | None = None,
                 hue_order: list | None = None, hue_labels: dict | None = None,
                 xlabel: str = "mean harmfulness score (1-5) ± SE", xlim=(1, 5)) -> plt.Figure:
    """Horizontal bars of `mean` ± `se` per `y`, one panel per `col` (and `row`), coloured by
    `hue`; bars of several hue levels per `y` are placed side by side."""
    sns.set_theme(style="whitegrid", context="paper")
    order = order or list(dict.fromkeys(table[y]))
    levels = hue_order or (list(dict.fromkeys(table[hue])) if hue else [None])
    palette = dict(zip(levels, sns.color_palette("deep", len(levels)), strict=True))
    fig, axes, rows, cols = _facets(table, row, col, 4.2, 0.35 * len(order) + 1.4)
    dodge = bool(hue) and table.groupby([y, col])[hue].nunique().max() > 1
    height = 0.8 / (len(levels) if dodge else 1)
    for (ri, r), (ci, c) in _panels(rows, cols):
        ax, sub = axes[ri][ci], _select(table, row, r, col, c)
        for li, level in enumerate(levels):
            part = sub if hue is None else sub[sub[hue] == level]
            pos = [order.index(v) for v in part[y]]
            offset = (li - (len(levels) - 1) / 2) * height if dodge else 0.0
            label = (hue_labels or {}).get(level, level)
            ax.barh(np.array(pos) + offset, part["mean"], height=height, xerr=part["se"].fillna(0),
                    color=palette[level], capsize=2, label=None if hue is None else str(label))
        ax.set_yticks(range(len(order)), order)
        ax.set_xlim(*xlim) if xlim else None
        ax.invert_yaxis() if ci == 0 else None
        ax.set_title(_title(r, c), fontsize=8)
        ax.set_xlabel(xlabel if ri == len(rows) - 1 else "")
    if hue:
        handles, labels = axes[0][0].get_legend_handles_labels()
        unique = dict(zip(labels, handles, strict=True))
        fig.legend(unique.values(), unique.keys(), loc="upper center", ncol=len(unique),
                   bbox_to_anchor=(0.5, 1.02), frameon=False)
    fig.tight_layout()
    return fig


def fig_harmfulness_by_model(table: pd.DataFrame) -> plt.Figure:
    """The paper's Fig. 2: mean ± SE per model per evaluation set, safety-aligned models marked.

    `table`: harmfulness_table(..., by=["judge", "model", "aligned", "eval_set"])."""
    aligned = table.assign(aligned=table["aligned"].map({True: "safety-aligned",
                                                         False: "not safety-aligned"}))
    return plot_mean_se(aligned, hue="aligned",
                        hue_order=[h for h in ("not safety-aligned", "safety-aligned")
                                   if h in set(aligned["aligned"])])


def fig_score_distribution(judgments: pd.DataFrame, col: str = "eval_set",
                           row: str | None = "judge") -> plt.Figure:
    """Figs. 4-5: the share of each score 1-5 (and of unscored answers) per model and set."""
    sns.set_theme(style="whitegrid", context="paper")
    labels = judgments["score"].map(lambda s: "unscored" if pd.isna(s) else str(int(s)))
    shares = (judgments.assign(label=labels).groupby([*(row and [row] or []), col, "model"])
              ["label"].value_counts(normalize=True).unstack(fill_value=0.0))
    categories = [str(s) for s in SCORES] + ["unscored"]
    shares = shares.reindex(columns=categories, fill_value=0.0).reset_index()
    colors = [*sns.color_palette("RdYlGn_r", len(SCORES)), UNSCORED_COLOR]
    models = list(dict.fromkeys(judgments["model"]))
    fig, axes, rows, cols = _facets(shares, row, col, 4.2, 0.35 * len(models) + 1.4)
    for (ri, r), (ci, c) in _panels(rows, cols):
        ax, sub = axes[ri][ci], _select(shares, row, r, col, c).set_index("model")
        sub = sub.reindex([m for m in models if m in sub.index])
        left = np.zeros(len(sub))
        for category, color in zip(categories, colors, strict=True):
            pos = [models.index(m) for m in sub.index]
            ax.barh(pos, sub[category], left=left, color=color, label=category, height=0.7)
            left += sub[category].to_numpy()
        ax.set_yticks(range(len(models)), models)
        ax.set_xlim(0, 1)
        ax.invert_yaxis() if ci == 0 else None
        ax.set_title(_title(r, c), fontsize=8)
        ax.set_xlabel("share of responses" if ri == len(rows) - 1 else "")
    handles, names = axes[0][0].get_legend_handles_labels()
    fig.legend(handles, [f"score {n}" if n != "unscored" else n for n in names],
               loc="upper center", ncol=len(names), bbox_to_anchor=(0.5, 1.02), frameon=False)
    fig.tight_layout()
    return fig


def fig_harmfulness_by_category(table: pd.DataFrame, col: str = "harm_set",
                                row: str | None = "judge") -> plt.Figure:
    """Mean score per model x category (AMA principle for MedSafety-Eval), one heatmap per set.

    `table`: harmfulness_table(..., by=["judge", "harm_set", "model", "category"])."""
    sns.set_theme(style="white", context="paper")
    models = list(dict.fromkeys(table["model"]))
    widths = (table.groupby(col)["category"].nunique() + 3).to_dict()  # + room for labels
    fig, axes, rows, cols = _facets(table, row, col, 0.6, 0.35 * len(models) + 1.4,
                                    sharey=False, widths=widths)
    for (ri, r), (ci, c) in _panels(rows, cols):
        ax, sub = axes[ri][ci], _select(table, row, r, col, c)
        grid = sub.pivot_table(index="model", columns="category", values="mean", dropna=False)
        grid = grid.reindex([m for m in models if m in grid.index])
        sns.heatmap(grid, ax=ax, vmin=1, vmax=5, cmap="RdYlGn_r", annot=True, fmt=".1f",
                    cbar=ci == len(cols) - 1, cbar_kws={"label": "mean score"})
        ax.set_title(_title(r, c), fontsize=8)
        ax.set_xlabel("category (AMA principle)" if c == "medsafety_eval" else "category")
        ax.set_ylabel("")
        ax.tick_params(axis="y", rotation=0, labelleft=ci == 0)
    fig.tight_layout()
    return fig
