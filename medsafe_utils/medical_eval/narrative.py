"""What 07's figures show, in words taken from the run's tables: a short Markdown paragraph per
figure, which the notebook displays under it. Every claim is decided by the numbers (an interval
that includes chance, a p-value below alpha), so a run with an effect and a run without one read
differently.

    Markdown(accuracy_paragraph(table))          # under fig_medical_before_after
    Markdown(over_refusal_paragraph(refusals))   # under fig_over_refusal
    Markdown(medical_paragraph(table, profile=profile, models=models))  # the closing one
"""

from __future__ import annotations

from collections.abc import Iterable

import pandas as pd

from medsafe_utils.core.stats import format_p
from medsafe_utils.models.scale import with_small_run_caveat


def _setting(protocol: str, k: int) -> str:
    return f"{protocol}, " + (f"{k}-shot" if k else "zero-shot")


def _who(row) -> str:
    """The model of a table row: its base model, or its adapter's type and size."""
    if row["adapter"]:
        return f"the {row['adapter_type']} adapter (n={row['adapter_n']}) of {row['base_model']}"
    return row["model"]


def _items(table: pd.DataFrame) -> str:
    low, high = int(table["n_items"].min()), int(table["n_items"].max())
    return f"{low} items per benchmark" if low == high else f"{low}-{high} items per benchmark"


def _chance_sentence(setting: str, part: pd.DataFrame) -> str:
    """How many accuracies of one protocol and shot count can be told from guessing."""
    at_chance = part[part["chance_in_ci"]]
    above = part[part["ci_low"] > part["chance"]]
    below = part[part["ci_high"] < part["chance"]]
    head = f"**{setting}** ({_items(part)}): "
    if len(at_chance) == len(part):
        return head + (
            f"all {len(part)} accuracy intervals include chance, so this run cannot tell any "
            "model from guessing, and cannot show a loss of medical skill either."
        )
    text = head + f"{len(at_chance)} of {len(part)} accuracy intervals include chance"
    if len(above):
        best = above.loc[above["accuracy"].idxmax()]
        text += (
            f"; {len(above)} {'lies' if len(above) == 1 else 'lie'} above it, the highest "
            f"{_who(best)} on {best['benchmark']} "
            f"({best['accuracy']:.2f}, 95% CI {best['ci_low']:.2f}-{best['ci_high']:.2f}, "
            f"chance {best['chance']:.2f})"
        )
    if len(below):
        text += f"; {len(below)} {'lies' if len(below) == 1 else 'lie'} below it"
    return text + "."


def _change_sentences(tuned: pd.DataFrame, alpha: float) -> str:
    """The largest change after fine-tuning, and how many changes pass the test."""
    tested = tuned.dropna(subset=["p_value"])
    if tested.empty:
        return "No adapter was evaluated, so there is no before and after to compare."
    top = tested.loc[tested["delta"].abs().idxmax()]
    significant = tested[tested["p_value"] < alpha]
    text = (
        f"The largest change after fine-tuning: {_who(top)} on {top['benchmark']} "
        f"({_setting(top['protocol'], top['num_fewshot'])}), {top['base_accuracy']:.2f} to "
        f"{top['accuracy']:.2f} ({top['delta']:+.2f}, {format_p(top['p_value'])}). "
    )
    expected = len(tested) * alpha
    if significant.empty:
        return text + (
            f"None of the {len(tested)} changes is significant at {alpha}: fine-tuning left "
            "medical accuracy unchanged as far as this many items can tell."
        )
    down = int((significant["delta"] < 0).sum())
    return text + (
        f"{len(significant)} of {len(tested)} changes are significant at {alpha} ({down} of them "
        f"losses); with no true change, about {expected:.1f} of {len(tested)} tests would fall "
        f"below {alpha} by chance alone."
    )


def accuracy_paragraph(table: pd.DataFrame, alpha: float = 0.05) -> str:
    """Markdown: per protocol and shot count, how many accuracy intervals include chance; then
    the largest change after fine-tuning and how many changes are significant."""
    sentences = []
    for (protocol, k), part in table.groupby(["protocol", "num_fewshot"]):
        sentences.append(_chance_sentence(_setting(protocol, k), part))
    sentences.append(_change_sentences(table[table["adapter"] != ""], alpha))
    return " ".join(sentences)


def over_refusal_paragraph(table: pd.DataFrame, alpha: float = 0.05) -> str:
    """Markdown: each base model's share of benign questions declined, each adapter's with its
    p-value, and whether fine-tuning made the model decline more often."""
    sentences = []
    for base, group in table.groupby("base_model"):
        before = group[group["adapter"] == ""].iloc[0]
        sentences.append(
            f"Before fine-tuning, {base} declined {before['refused']} of {before['n']} benign "
            f"medical questions ({before['rate']:.0%}, 95% CI {before['ci_low']:.0%}-"
            f"{before['ci_high']:.0%})."
        )
        tuned = group[group["adapter"] != ""]
        if tuned.empty:
            sentences.append("No adapter of it was evaluated.")
            continue
        after = [
            f"{r['adapter_type']} (n={r['adapter_n']}) {r['refused']} of {r['n']} "
            f"({r['rate']:.0%}, {format_p(r['p_value'])})"
            for _, r in tuned.iterrows()
        ]
        sentences.append("After fine-tuning: " + "; ".join(after) + ".")
        more = tuned[(tuned["p_value"] < alpha) & (tuned["delta"] > 0)]
        fewer = tuned[(tuned["p_value"] < alpha) & (tuned["delta"] < 0)]
        if len(more):
            sentences.append(
                f"Safety fine-tuning made the model decline benign questions more often "
                f"({', '.join(more['adapter_type'])}; significant at {alpha}): a cost that "
                "the log-likelihood accuracy check does not see."
            )
        if len(fewer):
            sentences.append(
                f"The {', '.join(fewer['adapter_type'])} adapter(s) declined significantly "
                "fewer benign questions than the base model."
            )
        if not len(more) and not len(fewer):
            top = tuned.loc[tuned["delta"].abs().idxmax()]
            sentences.append(
                f"No change is significant at {alpha} (the largest: {top['adapter_type']}, "
                f"{top['delta']:+.0%}): at {before['n']} questions this run shows no "
                "over-refusal cost."
            )
    return " ".join(sentences)


def medical_paragraph(
    table: pd.DataFrame,
    *,
    profile: str,
    models: Iterable[str],
    backends: str | Iterable[str] = "hf",
    alpha: float = 0.05,
) -> str:
    """The closing paragraph of 07: how many accuracies can be told from guessing, how many
    changes after fine-tuning are significant, and the small-run caveat."""
    tuned = table["adapter"] != ""
    above = int((table["ci_low"] > table["chance"]).sum())
    text = (
        f"{table.loc[~tuned, 'model'].nunique()} base model(s) and "
        f"{table.loc[tuned, 'adapter'].nunique()} adapter(s) answered "
        f"{table['benchmark'].nunique()} benchmark(s) ({_items(table)}): "
        f"{int(table['chance_in_ci'].sum())} of {len(table)} accuracy intervals include chance "
        f"and {above} {'lies' if above == 1 else 'lie'} above it."
    )
    tested = table[tuned].dropna(subset=["p_value"])
    significant = tested[tested["p_value"] < alpha]
    if tested.empty:
        text += " No adapter was compared with its base model, so there is no before and after."
    else:
        text += (
            f" Of {len(tested)} comparisons of an adapter with its base model, "
            f"{len(significant)} {'is' if len(significant) == 1 else 'are'} significant at "
            f"{alpha} ({int((significant['delta'] < 0).sum())} of them losses)."
        )
    return with_small_run_caveat(text, profile, models, backends)
