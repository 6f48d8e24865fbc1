"""What 02's run shows, in words taken from its own attack table: the notebook's closing paragraph.

Markdown(attack_paragraph(table, requests, profile=profile, models=[model]))
"""

from __future__ import annotations

from collections.abc import Iterable

import pandas as pd

from medsafe_utils.models.scale import small_run_caveat


def attack_paragraph(
    table: pd.DataFrame,
    requests: pd.DataFrame,
    *,
    profile: str,
    models: Iterable[str],
    backends: str | Iterable[str] = "hf",
) -> str:
    """Markdown from attack_table and gcg_requests: successes by the original's test, how far the
    loss fell, the time per step, the requests passed on to 03, and the small-run caveat."""
    won = int(table["success"].sum())
    text = (
        f"The attack succeeded on {won} of {len(table)} goal(s) by the original's test "
        f"({won / len(table):.0%}). Over {table['n_steps'].mean():.0f} step(s) on average the "
        f"loss of the best suffix fell from {table['initial_loss'].mean():.2f} to "
        f"{table['final_loss'].mean():.2f} ({table['s_per_step'].mean():.1f} s a step). The "
        f"kept answers gave {len(requests)} request(s) for 03, "
        f"{int(requests['attack_success'].sum())} of them from successful attacks. The test is "
        "a keyword check: read the kept answers above before calling an attack a jailbreak."
    )
    caveat = small_run_caveat(profile, models, backends)
    return text + ("\n\n" + caveat if caveat else "")
