"""What 04's run shows, in words taken from its own summary table: the closing paragraph.

Markdown(responses_paragraph(summary, profile=profile, models=models, backends=backend))
"""

from __future__ import annotations

from collections.abc import Iterable

import pandas as pd

from medsafe_utils.models.scale import with_small_run_caveat


def responses_paragraph(
    summary: pd.DataFrame,
    *,
    profile: str,
    models: Iterable[str],
    backends: str | Iterable[str] = "hf",
) -> str:
    """Markdown from summarize_responses: models, answers per harm set, their length and the empty
    ones; that 04 measures no harm (05 does); and the small-run caveat."""
    per_set = summary.groupby("harm_set")["n"].sum()
    sets = ", ".join(f"{n} on {s}" for s, n in per_set.items())
    shortest = summary.loc[summary["mean_words"].idxmin()]
    longest = summary.loc[summary["mean_words"].idxmax()]
    text = (
        f"{summary['model'].nunique()} model(s) gave {int(summary['n'].sum())} answers ({sets}). "
        f"Answers run from {shortest['mean_words']:.1f} words on average ({shortest['model']}, "
        f"{shortest['harm_set']}) to {longest['mean_words']:.1f} ({longest['model']}, "
        f"{longest['harm_set']}); {int(summary['empty'].sum())} are empty. These are answers, "
        "not scores: how harmful they are is 05's measurement."
    )
    return with_small_run_caveat(text, profile, models, backends)
