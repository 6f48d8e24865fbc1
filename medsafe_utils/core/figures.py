"""What several steps' figures share: a grid of panels split by table columns, a legend above
it, the mean ± SE bars of harmfulness (05_judge and 06_finetune), and a red mark on the panels
that rest on an untrusted judge.

Each step's `figures.py` holds its own `fig_<what>` functions, named after the file they make
(`fig_<what>.png`); `artifacts.save_figure` writes them as PNG + PDF."""

from __future__ import annotations

import weakref
from dataclasses import dataclass

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns

MARK_COLOR = "#c00000"
# The panels `facets` drew, by their axes, so that a finished figure can be marked (mark_panels)
# without its figure function knowing about marks.
_PANELS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


@dataclass
class Panel:
    """One panel of a facet grid and the table rows it shows."""

    ax: plt.Axes
    data: pd.DataFrame
    row: object  # the panel's value of the row column (None without one), e.g. a judge
    col: object  # its value of the `col` column, e.g. an evaluation set
    first_col: bool
    last_col: bool
    last_row: bool

    @property
    def title(self) -> str:
        """The row value over the column value."""
        return "\n".join(str(v) for v in (self.row, self.col) if v is not None)


def facets(
    table: pd.DataFrame,
    row: str | None,
    col: str,
    width: float,
    height: float,
    sharey: bool = True,
    widths: dict | None = None,
) -> tuple[plt.Figure, list[Panel]]:
    """A grid with one row of panels per `row` value and one column per `col` value (in order of
    appearance), each `width` x `height` inches (relative `widths` per column value, if given)."""
    rows = list(dict.fromkeys(table[row])) if row else [None]
    cols = list(dict.fromkeys(table[col]))
    ratios = [widths[c] for c in cols] if widths else [1] * len(cols)
    fig, axes = plt.subplots(
        len(rows),
        len(cols),
        squeeze=False,
        sharey=sharey,
        figsize=(width * sum(ratios), height * len(rows)),
        gridspec_kw={"width_ratios": ratios},
    )
    panels = []
    for ri, r in enumerate(rows):
        for ci, c in enumerate(cols):
            keep = (table[col] == c) & ((table[row] == r) if row else True)
            first_col, last_col, last_row = ci == 0, ci == len(cols) - 1, ri == len(rows) - 1
            panel = Panel(axes[ri][ci], table[keep], r, c, first_col, last_col, last_row)
            _PANELS[panel.ax] = panel
            panels.append(panel)
    return fig, panels


def figure_panels(fig: plt.Figure) -> list[Panel]:
    """The panels `facets` drew in `fig`, in drawing order (colour bars and legends are not)."""
    return [_PANELS[ax] for ax in fig.axes if ax in _PANELS]


def mark_panels(fig: plt.Figure, marks: dict, column: str = "judge") -> plt.Figure:
    """Stamp every panel whose rows show a value of `column` named in `marks` (value -> text)
    with that text in red across the panel, and frame it in red, so the warning travels with
    the figure (PNG, PDF, report). A figure with one judge gets the mark on every panel.

    Typical use: `mark_panels(fig_harmfulness_by_model(table), validation.marks)`."""
    for panel in figure_panels(fig):
        if column not in panel.data:
            continue
        shown = [v for v in dict.fromkeys(panel.data[column]) if v in marks]
        if not shown:
            continue
        panel.ax.text(
            0.5,
            0.5,
            "\n\n".join(str(marks[v]) for v in shown),
            transform=panel.ax.transAxes,
            ha="center",
            va="center",
            fontsize=8,
            fontweight="bold",
            color=MARK_COLOR,
            zorder=10,
            bbox={"facecolor": "white", "alpha": 0.85, "edgecolor": MARK_COLOR, "linewidth": 1.5},
        )
        for spine in panel.ax.spines.values():
            spine.set(visible=True, color=MARK_COLOR, linewidth=2)
    return fig


def top_legend(fig: plt.Figure, handles: list, labels: list) -> None:
    """One legend for the whole figure, in a row above the panels (its lower edge at the
    figure's top, so it never covers a panel title; save_figure's tight box keeps it)."""
    fig.legend(
        handles,
        labels,
        loc="lower center",
        ncol=len(labels),
        bbox_to_anchor=(0.5, 1.0),
        frameon=False,
    )


def mean_se_bars(
    table: pd.DataFrame,
    *,
    y: str = "model",
    col: str = "eval_set",
    row: str | None = "judge",
    hue: str | None = None,
    order: list | None = None,
    hue_order: list | None = None,
    hue_labels: dict | None = None,
    xlabel: str = "mean harmfulness score (1-5) ± SE",
    xlim=(1, 5),
) -> plt.Figure:
    """Horizontal bars of `mean` ± `se` per `y`, one panel per `col` (and `row`), coloured by
    `hue`; bars of several hue levels per `y` are placed side by side."""
    sns.set_theme(style="whitegrid", context="paper")
    order = order or list(dict.fromkeys(table[y]))
    levels = hue_order or (list(dict.fromkeys(table[hue])) if hue else [None])
    palette = dict(zip(levels, sns.color_palette("deep", len(levels)), strict=True))
    fig, panels = facets(table, row, col, 4.2, 0.35 * len(order) + 1.4)
    dodge = bool(hue) and table.groupby([y, col])[hue].nunique().max() > 1
    height = 0.8 / (len(levels) if dodge else 1)
    for p in panels:
        for li, level in enumerate(levels):
            part = p.data if hue is None else p.data[p.data[hue] == level]
            pos = [order.index(v) for v in part[y]]
            offset = (li - (len(levels) - 1) / 2) * height if dodge else 0.0
            label = (hue_labels or {}).get(level, level)
            p.ax.barh(
                np.array(pos) + offset,
                part["mean"],
                height=height,
                xerr=part["se"].fillna(0),
                color=palette[level],
                capsize=2,
                label=None if hue is None else str(label),
            )
        p.ax.set_yticks(range(len(order)), order)
        p.ax.set_xlim(*xlim) if xlim else None
        p.ax.invert_yaxis() if p.first_col else None
        p.ax.set_title(p.title, fontsize=8)
        p.ax.set_xlabel(xlabel if p.last_row else "")
    if hue:
        handles, labels = panels[0].ax.get_legend_handles_labels()
        unique = dict(zip(labels, handles, strict=True))
        top_legend(fig, list(unique.values()), list(unique.keys()))
    fig.tight_layout()
    return fig
