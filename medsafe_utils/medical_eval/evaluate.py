"""Medical evaluation (07): base models and their safety adapters on MedQA, MedMCQA, PubMedQA and
the six MMLU medical subjects, by log-likelihood of each choice (lm-eval's HFLM as engine).

    from medsafe_utils.medical_eval.evaluate import MedEvalConfig, eval_items, evaluate_model
    items = eval_items(["medqa"], n_per_benchmark=20)
    preds = evaluate_model("smollm2-135m-instruct", None, items, MedEvalConfig(), "preds.jsonl")

Predictions are appended per batch to a JSONL keyed by model, revision (with the adapter's
weights hash), prompt and settings, so a rerun skips what is finished."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from medsafe_utils.core import steps
from medsafe_utils.core.store import Store, item_key
from medsafe_utils.data import BENCHMARKS, load_medical_benchmark
from medsafe_utils.medical_eval.prompts import (
    PROMPT_VERSION,
    McRequest,
    build_requests,
    fewshot_settings,
    shot_pools,
)
from medsafe_utils.medical_eval.scoring import (
    loglikelihoods,
    make_engine,
    prompt_lengths,
)
from medsafe_utils.models import load_model, release
from medsafe_utils.models.adapters import AdapterRecord, check_adapter, read_adapter_records

log = logging.getLogger(__name__)


@dataclass
class MedEvalConfig:
    """What is evaluated and how (defaults: full sets, zero-shot and 3-shot over 3 seeds)."""

    benchmarks: list[str] = field(default_factory=lambda: list(BENCHMARKS))
    num_fewshot: list[int] = field(default_factory=lambda: [0, 3])
    seeds: list[int] = field(default_factory=lambda: [0, 1, 2])  # few-shot draws, averaged
    batch_size: int = 8  # contexts per forward pass (HFLM)
    max_length: int = 0  # tokens; 0: the model's; longer prompts lose their start (flagged)
    max_context_chars: int = 0  # PubMedQA abstracts cut to this many characters; 0 keeps all
    save_every: int = 64  # requests scored between appends to the predictions file
    dtype: str = "auto"
    load_in_4bit: bool = False

    def settings(self) -> dict:
        """What changes log-likelihoods besides the model and the prompt (part of the key)."""
        return {
            "prompt_version": PROMPT_VERSION,
            "max_length": self.max_length,
            "dtype": self.dtype,
            "load_in_4bit": self.load_in_4bit,
        }


def read_adapter_index(profile: str, which: str = "all") -> list[AdapterRecord]:
    """Adapters listed in results/<profile>/06_finetune/adapters.jsonl ('all'), or none ('none').

    'all' without an index (06 not run) warns and returns no adapters: base models only."""
    if which not in ("all", "none"):
        raise ValueError(f"adapters must be 'all' or 'none', got {which!r}")
    index = steps.step_file(profile, "06_finetune", "adapters")
    if which == "none":
        return []
    if not index.exists():
        log.warning(
            "no adapter index at %s (06_finetune not run): evaluating base models only", index
        )
        return []
    return read_adapter_records(index)


def eval_items(benchmarks: list[str], n_per_benchmark: int = 0, seed: int = 0) -> pd.DataFrame:
    """The evaluation items: every benchmark in full, or a fixed random subset of each."""
    frames = []
    for name in benchmarks:
        items = load_medical_benchmark(name)
        if n_per_benchmark and n_per_benchmark < len(items):
            items = items.sample(n_per_benchmark, random_state=seed).sort_index()
        frames.append(items)
    return pd.concat(frames, ignore_index=True)


def _record(
    lm,
    adapter: AdapterRecord | None,
    req: McRequest,
    lls: list[float],
    n_tokens: int,
    max_length: int,
    settings: dict,
) -> dict:
    pred = max(range(len(lls)), key=lls.__getitem__)
    return {
        "model": lm.model_id,
        "base_model": lm.spec.key,
        "adapter": adapter.adapter if adapter else "",
        "adapter_type": adapter.type if adapter else "",
        "adapter_n": adapter.n if adapter else 0,
        "model_revision": lm.revision,
        "benchmark": req.benchmark,
        "subject": req.subject,
        "item_id": req.item_id,
        "num_fewshot": req.num_fewshot,
        "seed": req.seed,
        "shot_ids": list(req.shot_ids),
        "loglikelihoods": lls,
        "pred": pred,
        "answer": req.answer,
        "correct": int(pred == req.answer),
        "prompt_tokens": n_tokens,
        "truncated": n_tokens - 1 > max_length,
        "settings": settings,
    }


def evaluate_model(
    base: str,
    adapter: AdapterRecord | None,
    requests: list[McRequest],
    config: MedEvalConfig,
    predictions_path: str | Path,
) -> pd.DataFrame:
    """Score every request with one model (+ adapter); finished requests come from the file."""
    if not requests:
        raise ValueError("no requests to score: check benchmarks, n_per_benchmark, num_fewshot")
    lm = load_model(
        base,
        dtype=config.dtype,
        load_in_4bit=config.load_in_4bit,
        adapter_path=adapter.path if adapter else None,
    )
    try:
        if adapter is not None:
            check_adapter(lm, [requests[0].context])  # raises when the adapter changes nothing
        settings = config.settings()
        # Seeds can draw the same shots: the key names the run as well as the prompt.
        keys = [
            item_key(
                lm.model_id,
                lm.revision,
                "mc-loglikelihood",
                [r.benchmark, r.item_id, r.num_fewshot, r.seed, r.context, list(r.continuations)],
                settings,
            )
            for r in requests
        ]
        with Store(predictions_path).resume(keys, lm.model_id) as todo:
            if todo:  # loading the engine only when there is something to score
                engine = make_engine(lm, batch_size=config.batch_size, max_length=config.max_length)
            for rows in todo.batches(config.save_every):
                chunk = [requests[i] for i in rows]
                scores = loglikelihoods(engine, chunk)
                lengths = prompt_lengths(lm.tokenizer, chunk)
                for i, s, n in zip(rows, scores, lengths, strict=True):
                    todo.save(
                        i, _record(lm, adapter, requests[i], s, n, engine.max_length, settings)
                    )
        return pd.DataFrame(todo.values())
    finally:
        release(lm)


def evaluate_all(
    models: list[str],
    adapters: list[AdapterRecord],
    items: pd.DataFrame,
    config: MedEvalConfig,
    predictions_path: str | Path,
) -> pd.DataFrame:
    """Every base model (those listed and every adapter's base), then every adapter."""
    settings = fewshot_settings(config.num_fewshot, config.seeds)
    requests = build_requests(
        items, settings, shot_pools(sorted(set(items["benchmark"]))), config.max_context_chars
    )
    bases = list(dict.fromkeys([*models, *(a.base_model for a in adapters)]))
    frames = [evaluate_model(b, None, requests, config, predictions_path) for b in bases]
    frames += [
        evaluate_model(a.base_model, a, requests, config, predictions_path) for a in adapters
    ]
    predictions = pd.concat(frames, ignore_index=True)
    truncated = int(predictions["truncated"].sum())
    if truncated:
        log.warning(
            "%d of %d prompts were longer than the model's max length and lost their "
            "start (lm-eval truncates from the left)",
            truncated,
            len(predictions),
        )
    return predictions


def adapter_differences(predictions: pd.DataFrame) -> pd.DataFrame:
    """Per adapter: how far its log-likelihoods and predictions are from its base's on the same
    prompts (evaluate_model's check_adapter already refused an adapter that changes nothing)."""
    keys = ["benchmark", "item_id", "num_fewshot", "seed"]
    base = predictions[predictions["adapter"] == ""]
    rows = []
    for model, group in predictions[predictions["adapter"] != ""].groupby("model", sort=False):
        ref = base[base["model"] == group["base_model"].iloc[0]]
        merged = group.merge(ref, on=keys, suffixes=("", "_base"))
        if merged.empty:
            raise ValueError(f"{model}: no base-model predictions on the same prompts")
        diffs = [
            abs(a - b)
            for x, y in zip(merged["loglikelihoods"], merged["loglikelihoods_base"], strict=True)
            for a, b in zip(x, y, strict=True)
        ]
        rows.append(
            {
                "model": model,
                "n_prompts": len(merged),
                "ll_max_abs_diff": max(diffs),
                "ll_mean_abs_diff": sum(diffs) / len(diffs),
                "pred_changed": float((merged["pred"] != merged["pred_base"]).mean()),
            }
        )
    return pd.DataFrame(
        rows, columns=["model", "n_prompts", "ll_max_abs_diff", "ll_mean_abs_diff", "pred_changed"]
    )
