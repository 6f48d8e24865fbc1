"""What 01's run shows, in words taken from its own funnel: the closing paragraph of the notebook.

Markdown(funnel_paragraph(funnel, harm_threshold, profile=profile, models=[...]))
"""

from __future__ import annotations

from collections.abc import Iterable

import pandas as pd

from medsafe_utils.models.scale import with_small_run_caveat


def funnel_paragraph(
    funnel: pd.DataFrame,
    threshold: float,
    *,
    profile: str,
    models: Iterable[str],
    backends: str | Iterable[str] = "hf",
) -> str:
    """Markdown: generations -> extracted -> rated -> kept -> after dedup, from the funnel's total
    row, the kept requests per method, and the small-run caveat where it applies."""
    total = funnel[funnel["category"] == "all"].iloc[0]
    rows = funnel[funnel["category"] != "all"]
    by_method = rows.groupby("method")["after_dedup"].sum()
    principles = rows.loc[rows["after_dedup"] > 0, "category"].nunique()
    text = (
        f"The models wrote {total['generated']} generations; {total['extracted']} requests were "
        f"extracted from their lists. The harm filter rated {total['scored']} of them "
        f"({total['unscored']} could not be read) and kept {total['kept_by_filter']} rated at "
        f"least {threshold:g}; {total['after_dedup']} remain after deduplication"
    )
    if total["after_dedup"]:
        methods = ", ".join(f"{m} {n}" for m, n in by_method.items())
        text += f" ({methods}), covering {principles} principle(s)."
    else:
        text += ": this run produced no request for 03."
    text += (
        " A rating is only as good as the model that gives it: read the kept requests above "
        "before trusting that they are harmful."
    )
    return with_small_run_caveat(text, profile, models, backends)
