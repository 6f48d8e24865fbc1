"""Figure of 07_medical_eval, named after the file it makes: medical accuracy before and after
safety fine-tuning.

`table`: accuracy_table(predictions), one row per protocol x model x benchmark x shot count; one
panel per protocol and shot count, titled with both."""

from __future__ import annotations

import matplotlib.pyplot as plt
import pandas as pd


def fig_medical_before_after(table: pd.DataFrame) -> plt.Figure:
    """Adapter vs base accuracy (± SE) per benchmark, one panel per protocol and shot count; bars
    without adapters."""
    panels = sorted(set(zip(table["protocol"], table["num_fewshot"], strict=True)))
    fig, axes = plt.subplots(1, len(panels), figsize=(5 * len(panels), 4.4), squeeze=False)
    tuned = table[table["adapter"] != ""]
    colors = dict(zip(sorted(table["benchmark"].unique()), plt.cm.tab10.colors, strict=False))
    markers = dict(zip(sorted(tuned["adapter_type"].unique()), "osD^v<>", strict=False))
    for ax, (protocol, k) in zip(axes[0], panels, strict=True):
        panel = table[(table["protocol"] == protocol) & (table["num_fewshot"] == k)]
        if tuned.empty:
            pivot = panel.pivot_table(index="benchmark", columns="model", values="accuracy")
            errors = panel.pivot_table(index="benchmark", columns="model", values="se")
            pivot.plot.bar(yerr=errors, ax=ax, rot=0, capsize=3)
            ax.set(ylabel="accuracy", ylim=(0, 1))
        else:
            for _, r in panel[panel["adapter"] != ""].iterrows():
                base = panel[
                    (panel["model"] == r["base_model"]) & (panel["benchmark"] == r["benchmark"])
                ].iloc[0]
                ax.errorbar(
                    base["accuracy"],
                    r["accuracy"],
                    xerr=base["se"],
                    yerr=r["se"],
                    fmt=markers[r["adapter_type"]],
                    color=colors[r["benchmark"]],
                    alpha=0.8,
                    capsize=2,
                )
            ax.plot([0, 1], [0, 1], color="grey", lw=0.8, ls="--")
            ax.set(
                xlim=(0, 1),
                ylim=(0, 1),
                xlabel="base model accuracy",
                ylabel="after safety fine-tuning",
            )
            for name, color in colors.items():
                ax.plot([], [], "s", color=color, label=name)
            for name, marker in markers.items():
                ax.plot([], [], marker, color="black", label=f"adapter: {name}")
            ax.legend(fontsize=7, loc="upper left")
        ax.set_title(f"{protocol}: " + (f"{k}-shot" if k else "zero-shot"))
    fig.suptitle(
        "Medical accuracy before and after safety fine-tuning (± SE)"
        if len(tuned)
        else "Medical accuracy of the base models (± SE); no adapters evaluated"
    )
    fig.tight_layout()
    return fig
