"""Over-refusal (07; ours, off in the `paper` profile): does safety fine-tuning make a model
decline benign medical questions? A log-likelihood accuracy check cannot see this, since it
never lets the model answer in its own words.

A seeded sample of the four benchmarks' scored questions, stratified by benchmark, is asked as
free text (the question only, no options) through 04's `respond`: greedy, each model's own prompt
format (the one 04 and 06 ask harmful requests in), cached per item. A response counts as a
refusal by the refusal-prefix check (data.refusal, the original GCG code's list). Each adapter is
compared with its base model on the same questions: McNemar's exact test on the questions only
one of them declined.

    questions = benign_questions(["medqa", "pubmedqa"], n=20, seed=0)
    responses = ask_benign(["smollm2-135m-instruct"], adapters, questions, config, "cache.jsonl")
    table = over_refusal_table(responses)
"""

from __future__ import annotations

import logging
from pathlib import Path

import pandas as pd

from medsafe_utils.core.stats import paired_test, proportion_ci
from medsafe_utils.data import scored_items
from medsafe_utils.data.refusal import refusal_prefix
from medsafe_utils.models.adapters import AdapterRecord
from medsafe_utils.prompt_models.respond import RespondConfig, respond

log = logging.getLogger(__name__)
# A question that points at options it no longer shows ("which of the following", "all except",
# a blank to fill) invites "you gave no options", which the prefix check reads as a refusal.
NEEDS_OPTIONS = r"\bfollowing\b|\bexcept\b|_{2,}"
IDENTITY = ["model", "base_model", "adapter", "adapter_type", "adapter_n"]
COLUMNS = [
    *IDENTITY,
    "n",
    "refused",
    "rate",
    "ci_low",
    "ci_high",
    "base_rate",
    "delta",
    "n_newly_refused",
    "n_no_longer_refused",
    "p_value",
]


def benign_questions(
    benchmarks: list[str], n: int, seed: int = 0, mmlu_subjects: list[str] | None = None
) -> pd.DataFrame:
    """n scored questions drawn with `seed`, split evenly over the benchmarks (the remainder to
    the first ones), leaving out those that need their options (NEEDS_OPTIONS).

    Columns: benchmark, item_id, subject, request (the question text)."""
    if n <= 0 or not benchmarks:
        raise ValueError(f"need n > 0 questions from some benchmarks, got n={n}, {benchmarks}")
    frames = []
    for i, name in enumerate(benchmarks):
        take = n // len(benchmarks) + (i < n % len(benchmarks))
        items = scored_items(name, mmlu_subjects)
        standalone = items[~items["question"].str.contains(NEEDS_OPTIONS, case=False)]
        if take > len(standalone):
            raise ValueError(f"{name}: {take} questions asked, {len(standalone)} stand alone")
        frames.append(standalone.sample(take, random_state=seed) if take else standalone[:0])
    drawn = pd.concat(frames, ignore_index=True)
    return pd.DataFrame(
        {
            "benchmark": drawn["benchmark"],
            "item_id": drawn["id"],
            "subject": drawn["subject"],
            "request": drawn["question"].str.strip(),
        }
    )


def _with_refusals(frame: pd.DataFrame, adapter: AdapterRecord | None, base: str) -> pd.DataFrame:
    prefixes = frame["response"].map(refusal_prefix)
    return frame.assign(
        base_model=base,
        adapter=adapter.adapter if adapter else "",
        adapter_type=adapter.type if adapter else "",
        adapter_n=adapter.n if adapter else 0,
        refused=prefixes.notna(),
        refusal_prefix=prefixes.fillna(""),
    )


def ask_benign(
    models: list[str],
    adapters: list[AdapterRecord],
    questions: pd.DataFrame,
    config: RespondConfig,
    cache_path: str | Path,
) -> pd.DataFrame:
    """Every base model (those listed and every adapter's base), then every adapter, answers
    every question (respond: cached per item); `refused` and the `refusal_prefix` it matched."""
    bases = list(dict.fromkeys([*models, *(a.base_model for a in adapters)]))
    frames = [_with_refusals(respond(b, questions, config, cache_path), None, b) for b in bases]
    for adapter in adapters:
        frame = respond(adapter.base_model, questions, config, cache_path, adapter.path)
        # the revision carries the adapter's weights hash only when it was loaded with it
        if not frame["model_revision"].str.contains("+adapter-", regex=False).all():
            raise RuntimeError(f"{adapter.adapter}: answered without its adapter")
        frames.append(_with_refusals(frame, adapter, adapter.base_model))
    return pd.concat(frames, ignore_index=True)


def _row(group: pd.DataFrame, base: pd.Series | None) -> dict:
    refused = group.set_index("item_id")["refused"].astype(int)
    low, high = proportion_ci(int(refused.sum()), len(refused))
    row = {k: group[k].iloc[0] for k in IDENTITY}
    row.update(n=len(refused), refused=int(refused.sum()), rate=refused.mean())
    row.update(ci_low=low, ci_high=high)
    if base is not None:
        if set(base.index) != set(refused.index):
            raise ValueError(f"{row['model']}: other questions than its base model's")
        test = paired_test(base.loc[refused.index].to_numpy(), refused.to_numpy(), binary=True)
        row.update(
            base_rate=base.mean(),
            delta=test.delta,
            n_newly_refused=test.n_better,  # declined now, answered before
            n_no_longer_refused=test.n_worse,
            p_value=test.p_value,
        )
    return row


def over_refusal_table(responses: pd.DataFrame) -> pd.DataFrame:
    """Per model: questions, refusals, rate and its Wilson 95% interval; adapters also: the
    base model's rate on the same questions and McNemar's exact p-value of the change."""
    base_refused = {
        model: group.set_index("item_id")["refused"].astype(int)
        for model, group in responses[responses["adapter"] == ""].groupby("model")
    }
    rows = []
    for _, group in responses.groupby("model", sort=False):
        base = None
        if group["adapter"].iloc[0]:
            base = base_refused.get(group["base_model"].iloc[0])
            if base is None:
                raise ValueError(f"{group['model'].iloc[0]}: its base model did not answer")
        rows.append(_row(group, base))
    return pd.DataFrame(rows, columns=COLUMNS).sort_values(
        ["base_model", "adapter"], ignore_index=True
    )


def over_refusal_metrics(table: pd.DataFrame) -> dict:
    """Flat scalars per model: over-refusal rate, its interval, and the change's p-value."""
    metrics: dict = {"over_refusal_n": int(table["n"].max()) if len(table) else 0}
    for _, r in table.iterrows():
        metrics[f"over_refusal/{r['model']}"] = r["rate"]
        metrics[f"over_refusal_ci_low/{r['model']}"] = r["ci_low"]
        metrics[f"over_refusal_ci_high/{r['model']}"] = r["ci_high"]
        if r["adapter"]:
            metrics[f"over_refusal_delta/{r['model']}"] = r["delta"]
            metrics[f"over_refusal_p/{r['model']}"] = r["p_value"]
    return metrics
