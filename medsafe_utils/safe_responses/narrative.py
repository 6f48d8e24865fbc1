"""What 03's run shows, in words taken from its own metrics: the notebook's closing paragraph.

Markdown(safe_response_paragraph(metrics, profile=profile, models=[generator]))
"""

from __future__ import annotations

from collections.abc import Iterable

from medsafe_utils.models.scale import with_small_run_caveat


def safe_response_paragraph(
    metrics: dict,
    *,
    profile: str,
    models: Iterable[str],
    backends: str | Iterable[str] = "hf",
) -> str:
    """Markdown from safe_response_metrics: responses written, how many pass the refusal keyword
    check, the demonstrations and split files that 06 can use, and the small-run caveat."""
    n = metrics["safe_responses"]
    text = (
        f"Safe responses were written for {n} of the {metrics['requests']} requests; "
        f"{metrics['refusal_rate']:.0%} pass the refusal keyword check and {metrics['flagged']} "
        f"are flagged. {metrics['med_available']} medical demonstration(s) were available to "
        f"the fine-tuning splits, and {metrics['split_files']} split file(s) were written for 06. "
        "The keyword check only looks for refusal phrases: read the responses above before "
        "calling them safe."
    )
    return with_small_run_caveat(text, profile, models, backends)
