"""02 in words: one GCG step told from its own tensors (before the attacks), and what the run
shows, from its own attack table (the notebook's closing paragraph).

print(step_story(first_step(lm.model, lm.tokenizer, goal, target, config), lm.tokenizer))
Markdown(attack_paragraph(table, requests, profile=profile, models=[model]))
"""

from __future__ import annotations

from collections.abc import Iterable

import pandas as pd

from medsafe_utils.jailbreak.gcg import Step
from medsafe_utils.models.scale import with_small_run_caveat


def step_story(step: Step, tokenizer, shown: int = 5) -> str:
    """Plain text (tokens are printed, never rendered): the suffix and its loss, the tokens the
    candidates try at the first position they change, the range of their losses, the one kept."""
    changed = (step.candidates != step.suffix).nonzero()
    position = int(changed[0, 1]) if len(changed) else 0
    at = dict.fromkeys(step.candidates[:, position].tolist())  # in the order drawn, once each
    tried = [t for t in at if t != int(step.suffix[position])]
    losses = step.candidate_losses
    best = float(losses[step.chosen])
    return (
        f"The suffix starts as {tokenizer.decode(step.suffix)!r}: target loss {step.loss:.3f}.\n"
        f"Its gradient ranks, at each of its {len(step.suffix)} positions, the tokens whose swap "
        f"should lower that loss most.\n{len(step.candidates)} candidates each swap a position "
        f"for one of the top-ranked tokens there; at position {position + 1} they try "
        f"{[tokenizer.decode([t]) for t in tried[:shown]]}"
        f"{f' and {len(tried) - shown} more' if len(tried) > shown else ''}.\n"
        f"Their losses run from {float(losses.min()):.3f} to {float(losses.max()):.3f}; the step "
        f"keeps {tokenizer.decode(step.candidates[step.chosen])!r} at {best:.3f} "
        f"({'lower than' if best < step.loss else 'no lower than'} where it started)."
    )


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
    return with_small_run_caveat(text, profile, models, backends)
