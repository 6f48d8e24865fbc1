"""What several steps' figures share: a grid of panels split by table columns (wrapped into
lines of at most MAX_WIDTH inches), a legend above it, bars of a mean with its 95% interval
(05_judge and 06_finetune), a red mark on the panels that rest on an untrusted judge, and the
one way an axis names its error bars (interval_label).

Error bars are 95% intervals in every figure, never the paper's ± SE: on a score bounded by 1
and 5, mean ± SE runs off the scale when the answers are few and near one end, where a
bootstrap interval of the mean (core.stats.bootstrap_mean_ci) stays on it.

Each step's `figures.py` holds its own `fig_<what>` functions, named after the file they make
(`fig_<what>.png`); `artifacts.save_figure` writes them as PNG + PDF."""

from __future__ import annotations

import textwrap
import weakref
from collections.abc import Callable
from dataclasses import dataclass

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns

MARK_COLOR = "#c00000"
MAX_WIDTH = 12.0  # inches: a figure that a report page and a notebook cell show whole
STAMP_SIZES = (8, 7, 6, 5)  # points: a stamp's font, the largest that fits its panel
STAMP_PAD = 0.3  # the stamp's box padding, in units of its font size (matplotlib's default)
# The panels `facets` drew, by their axes, so that a finished figure can be marked (mark_panels)
# without its figure function knowing about marks.
_PANELS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def interval_label(quantity: str, method: str = "bootstrap") -> str:
    """How every figure names its error bars: the quantity over '95% interval (<method>)' (two
    lines, so that a label fits under a narrow panel)."""
    return f"{quantity}\n95% interval ({method})"


def _as_is(_column: str, value) -> str:
    return str(value)


@dataclass
class Panel:
    """One panel of a facet grid and the table rows it shows."""

    ax: plt.Axes
    data: pd.DataFrame
    row: object  # the panel's value of the row column (None without one), e.g. a judge
    col: object  # its value of the `col` column, e.g. an evaluation set
    first_col: bool  # the first panel of its line
    last_col: bool
    last_row: bool  # no panel below it
    title: str  # the row value over the column value, as the figure's labels show them


def _lines(cols: list, units: dict, per_line: int) -> list[list]:
    """The column values in order, wrapped into lines of at most `per_line` units."""
    lines: list[list] = [[]]
    for c in cols:
        if lines[-1] and sum(units[x] for x in lines[-1]) + units[c] > per_line:
            lines.append([])
        lines[-1].append(c)
    return lines


def facets(
    table: pd.DataFrame,
    row: str | None,
    col: str,
    width: float,
    height: float,
    sharey: bool = True,
    widths: dict | None = None,
    label: Callable[[str, object], str] = _as_is,
) -> tuple[plt.Figure, list[Panel]]:
    """A grid with one row of panels per `row` value and one column per `col` value (in order of
    appearance), each `width` x `height` inches (a whole number of widths per column value, if
    `widths` gives them); columns that would make the figure wider than MAX_WIDTH wrap into
    further lines. `label(column, value)` writes the panel titles."""
    rows = list(dict.fromkeys(table[row])) if row else [None]
    cols = list(dict.fromkeys(table[col]))
    units = {c: int(widths[c]) if widths else 1 for c in cols}
    lines = _lines(cols, units, max(max(units.values()), int(MAX_WIDTH // width)))
    span = [sum(units[c] for c in line) for line in lines]
    fig = plt.figure(figsize=(width * max(span), height * len(rows) * len(lines)))
    grid = fig.add_gridspec(len(rows) * len(lines), max(span))
    panels: list[Panel] = []
    for ri, r in enumerate(rows):
        for li, line in enumerate(lines):
            gr, start = ri * len(lines) + li, 0
            below = span[(li + 1) % len(lines)] if gr + 1 < len(rows) * len(lines) else 0
            for ci, c in enumerate(line):
                shared = panels[0].ax if sharey and panels else None
                ax = fig.add_subplot(grid[gr, start : start + units[c]], sharey=shared)
                if shared is not None and ci > 0:  # one column of y tick labels per line
                    ax.tick_params(axis="y", labelleft=False)
                keep = (table[col] == c) & ((table[row] == r) if row else True)
                title = "\n".join(label(n, v) for n, v in ((row, r), (col, c)) if v is not None)
                last = ci == len(line) - 1
                panel = Panel(ax, table[keep], r, c, ci == 0, last, start >= below, title)
                _PANELS[panel.ax] = panel
                panels.append(panel)
                start += units[c]
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
        stamp = panel.ax.text(
            0.5,
            0.5,
            "",
            transform=panel.ax.transAxes,
            ha="center",
            va="center",
            fontweight="bold",
            color=MARK_COLOR,
            zorder=10,
            bbox={"facecolor": "white", "alpha": 0.85, "edgecolor": MARK_COLOR, "linewidth": 1.5},
        )
        _fit_stamp(stamp, panel.ax, "\n\n".join(str(marks[v]) for v in shown))
        for spine in panel.ax.spines.values():
            spine.set(visible=True, color=MARK_COLOR, linewidth=2)
    return fig


def _fit_stamp(stamp: plt.Text, ax: plt.Axes, text: str) -> None:
    """Set `text` on the stamp wrapped to the panel's width, in the largest of STAMP_SIZES at
    which it (with its box) lies inside the panel; the smallest if none does."""
    room = ax.get_window_extent()
    for size in STAMP_SIZES:
        stamp.set_fontsize(size)
        margin = 2 * (STAMP_PAD * size + 1.5) * ax.figure.dpi / 72  # the box: pad and frame
        stamp.set_text(text)
        longest = max(len(line) for line in text.splitlines())
        per_char = stamp.get_window_extent().width / longest  # bold DejaVu at this size
        chars = max(8, int((room.width - margin) / per_char))
        while True:
            stamp.set_text("\n".join(textwrap.fill(line, chars) for line in text.splitlines()))
            extent = stamp.get_window_extent()
            if extent.width + margin <= room.width or chars <= 8:
                break
            chars -= 2  # a line of wide letters: fewer per line
        if extent.width + margin <= room.width and extent.height + margin <= room.height:
            return


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


def mean_interval_bars(
    table: pd.DataFrame,
    *,
    y: str = "model",
    col: str = "eval_set",
    row: str | None = "judge",
    hue: str | None = None,
    order: list | None = None,
    hue_order: list | None = None,
    hue_labels: dict | None = None,
    xlabel: str = interval_label("mean harmfulness score (1-5)"),
    xlim=(1, 5),
    label: Callable[[str, object], str] = _as_is,
) -> plt.Figure:
    """Horizontal bars of `mean` with its interval (`ci_low`, `ci_high`; none drawn where it is
    undefined) per `y`, one panel per `col` (and `row`), coloured by `hue`; bars of several hue
    levels per `y` are placed side by side. `label(column, value)` writes titles and ticks."""
    sns.set_theme(style="whitegrid", context="paper")
    order = order or list(dict.fromkeys(table[y]))
    levels = hue_order or (list(dict.fromkeys(table[hue])) if hue else [None])
    palette = dict(zip(levels, sns.color_palette("deep", len(levels)), strict=True))
    fig, panels = facets(table, row, col, 3.8, 0.35 * len(order) + 1.4, label=label)
    dodge = bool(hue) and table.groupby([y, col])[hue].nunique().max() > 1
    height = 0.8 / (len(levels) if dodge else 1)
    for p in panels:
        for li, level in enumerate(levels):
            part = p.data if hue is None else p.data[p.data[hue] == level]
            pos = [order.index(v) for v in part[y]]
            offset = (li - (len(levels) - 1) / 2) * height if dodge else 0.0
            name = (hue_labels or {}).get(level, level)
            p.ax.barh(
                np.array(pos) + offset,
                part["mean"],
                height=height,
                xerr=[
                    (part["mean"] - part["ci_low"]).fillna(0),
                    (part["ci_high"] - part["mean"]).fillna(0),
                ],
                color=palette[level],
                capsize=2,
                label=None if hue is None else str(name),
            )
        p.ax.set_yticks(range(len(order)), [label(y, v) for v in order])
        if xlim:  # whole-number ticks: a panel's "5" and the next one's "1" do not run together
            p.ax.set(xlim=xlim, xticks=range(int(xlim[0]), int(xlim[1]) + 1))
        p.ax.set_title(p.title, fontsize=8)
        p.ax.set_xlabel(xlabel if p.last_row else "")
    panels[0].ax.invert_yaxis()  # shared by every panel: the first model on top
    if hue:
        handles, labels = panels[0].ax.get_legend_handles_labels()
        unique = dict(zip(labels, handles, strict=True))
        top_legend(fig, list(unique.values()), list(unique.keys()))
    fig.tight_layout()
    return fig
