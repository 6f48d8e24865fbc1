"""Figures of 07_medical_eval, named after the files they make: medical accuracy before and
after safety fine-tuning, and the share of benign medical questions each model declines.

Both draw every number with its 95% interval, the base model ("before") beside its adapters
("after"), coloured by the adapter's demonstration type. The accuracy figure marks each
benchmark's chance level, and draws a point hollow when its interval reaches chance: such an
accuracy cannot be told from guessing at this number of items."""

from __future__ import annotations

import matplotlib.pyplot as plt
import pandas as pd
import seaborn as sns

from medsafe_utils.core.figures import MAX_WIDTH, facets, interval_label
from medsafe_utils.models.labels import figure_label

BEFORE = "before (base model)"
CI_METHODS = {"wilson": "Wilson", "t": "t over seeds"}  # report.accuracy_ci's methods


def _label(row) -> str:
    return f"after: {row['adapter_type']}" if row["adapter"] else BEFORE


def _palette(labels: list[str]) -> dict[str, tuple]:
    """Black for the base model, a colour per demonstration type."""
    after = sorted(label for label in set(labels) if label != BEFORE)
    return {BEFORE: (0.1, 0.1, 0.1), **dict(zip(after, sns.color_palette("deep"), strict=False))}


def _ordered(frame: pd.DataFrame) -> pd.DataFrame:
    """The base model first, then adapters by type and number of demonstrations."""
    return frame.assign(_tuned=frame["adapter"] != "").sort_values(
        ["_tuned", "adapter_type", "adapter_n", "model"], kind="stable"
    )


def _interval_point(ax, x: float, row, color, hollow: bool) -> None:
    ax.errorbar(
        x,
        row["y"],
        yerr=[[row["y"] - row["ci_low"]], [row["ci_high"] - row["y"]]],
        fmt="o",
        color=color,
        markerfacecolor="white" if hollow else color,
        capsize=2,
    )


def fig_medical_before_after(table: pd.DataFrame) -> plt.Figure:
    """Accuracy with its 95% interval per benchmark, left to right the base model then its
    adapters by type and number of demonstrations, a dashed line at the benchmark's chance
    level; hollow where the interval includes chance. One panel per protocol and shot count
    (columns) and base model (rows)."""
    sns.set_theme(style="whitegrid", context="paper")
    table = table.assign(
        setting=[
            f"{p}: " + (f"{k}-shot" if k else "zero-shot")
            for p, k in zip(table["protocol"], table["num_fewshot"], strict=True)
        ],
        label=table.apply(_label, axis=1),
        y=table["accuracy"],
    ).sort_values(["protocol", "num_fewshot"], kind="stable")
    palette = _palette(list(table["label"]))
    benchmarks = sorted(table["benchmark"].unique())
    per_group = table.groupby(["setting", "base_model", "benchmark"])["model"].nunique().max()
    # a quarter inch per point, at least 1.1 inches a benchmark (its name below it), up to
    # MAX_WIDTH a panel (the paper's grid: 20 models a base); facets wraps the panels
    width = min(
        max(1.0 + 0.25 * per_group * len(benchmarks), 0.6 + 1.1 * len(benchmarks)), MAX_WIDTH
    )
    fig, panels = facets(table, "base_model", "setting", width, 3.6, label=figure_label)
    methods = "; ".join(CI_METHODS.get(m, m) for m in sorted(set(table["ci_method"])))
    for p in panels:
        for bi, benchmark in enumerate(benchmarks):
            group = _ordered(p.data[p.data["benchmark"] == benchmark])
            if group.empty:
                continue
            width = 0.8 / len(group)
            xs = [bi - 0.4 + width * (i + 0.5) for i in range(len(group))]
            chance = group["chance"].iloc[0]
            p.ax.plot([bi - 0.45, bi + 0.45], [chance] * 2, ls="--", color="tab:red", gid="chance")
            for x, (_, row) in zip(xs, group.iterrows(), strict=True):
                _interval_point(p.ax, x, row, palette[row["label"]], bool(row["chance_in_ci"]))
        p.ax.set_xticks(range(len(benchmarks)), [figure_label("benchmark", b) for b in benchmarks])
        p.ax.set(
            ylim=(-0.02, 1.02), ylabel=interval_label("accuracy", methods) if p.first_col else ""
        )
        p.ax.set_title(p.title, fontsize=8)
    handles = [plt.Line2D([], [], marker="o", ls="", color=c) for c in palette.values()]
    handles += [
        plt.Line2D([], [], ls="--", color="tab:red"),
        plt.Line2D([], [], marker="o", ls="", color="grey", markerfacecolor="white"),
    ]
    labels = [*palette, "chance (1 / options)", "interval includes chance"]
    fig.tight_layout()
    # above the panels, in rows as wide as the figure (an entry takes about 2.2 inches)
    columns = max(1, min(len(labels), int(fig.get_size_inches()[0] // 2.2)))
    fig.legend(handles, labels, loc="lower center", bbox_to_anchor=(0.5, 1.0), ncol=columns)
    return fig


def fig_over_refusal(table: pd.DataFrame) -> plt.Figure:
    """Share of benign medical questions declined (Wilson 95% interval) by each base model and
    its adapters, with the paired test's p-value above each adapter; one panel per base model."""
    sns.set_theme(style="whitegrid", context="paper")
    table = table.assign(label=table.apply(_label, axis=1), y=table["rate"], panel="over-refusal")
    palette = _palette(list(table["label"]))
    width = 1.2 + 0.7 * table.groupby("base_model")["model"].nunique().max()
    fig, panels = facets(table, "base_model", "panel", width, 3.4, label=figure_label)
    for p in panels:
        group = _ordered(p.data)
        for x, (_, row) in enumerate(group.iterrows()):
            _interval_point(p.ax, x, row, palette[row["label"]], hollow=False)
            if row["adapter"]:
                p.ax.annotate(
                    f"p={row['p_value']:.2g}",
                    (x, row["ci_high"]),
                    ha="center",
                    va="bottom",
                    xytext=(0, 3),
                    textcoords="offset points",
                    fontsize=7,
                )
        names = [
            f"{r['adapter_type']} n={r['adapter_n']}" if r["adapter"] else "base"
            for _, r in group.iterrows()
        ]
        p.ax.set_xticks(range(len(group)), names, rotation=30, ha="right")
        ylabel = interval_label("benign questions declined", "Wilson")
        p.ax.set(ylim=(-0.03, 1.05), ylabel=ylabel)
        p.ax.set_title(
            f"{figure_label('base_model', p.row)}: {int(group['n'].iloc[0])} questions", fontsize=8
        )
    fig.tight_layout()  # no legend: the tick labels name each model
    return fig
