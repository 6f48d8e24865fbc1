"""Medical evaluation (07): base models and their safety adapters on MedQA, MedMCQA, PubMedQA and
MMLU-medical, by one or both of two protocols:

- generation (the paper's, from meditron's evaluation): the model completes an instruction
  prompt ending in "The answer is:" and the answer is read from its text (medical_eval.generation);
- loglikelihood: the most likely choice as a continuation of lm-eval's prompt (lm-eval's HFLM).

    from medsafe_utils.medical_eval.evaluate import MedEvalConfig, eval_items, evaluate_all
    items = eval_items(["medqa"], n_per_benchmark=20)
    preds = evaluate_all(["smollm2-135m-instruct"], [], items, MedEvalConfig(), "preds.jsonl")

Predictions are appended as they finish to a JSONL keyed by model, revision (with the adapter's
weights hash), protocol, prompt and settings, so a rerun skips what is finished."""

from __future__ import annotations

import logging
from pathlib import Path

import pandas as pd

from medsafe_utils.core import steps
from medsafe_utils.core.store import Store, item_key
from medsafe_utils.data import (
    load_medical_benchmark,
    load_meditron_instructions,
    scored_items,
)
from medsafe_utils.medical_eval.config import MedEvalConfig
from medsafe_utils.medical_eval.generation import generate_predictions
from medsafe_utils.medical_eval.instructed import GenRequest, build_gen_requests
from medsafe_utils.medical_eval.prompts import (
    McRequest,
    build_requests,
    fewshot_settings,
    request_columns,
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
CHECK_COLUMNS = [
    "model",
    "protocol",
    "n_prompts",
    "ll_max_abs_diff",
    "ll_mean_abs_diff",
    "output_changed",
    "pred_changed",
]


def read_adapter_index(profile: str, which: str = "all") -> list[AdapterRecord]:
    """Adapters listed in results/<profile>/06_finetune/adapters.jsonl ('all'), those of one
    base model ('base:<model>', a fan-out's slice), one adapter by its name ('adapter:<name>'),
    or none ('none').

    'all' without an index (06 not run) warns and returns no adapters: base models only."""
    kind, _, name = which.partition(":")
    if kind not in ("all", "none", "base", "adapter") or bool(name) != (
        kind in ("base", "adapter")
    ):
        raise ValueError(
            f"adapters must be 'all', 'none', 'base:<model>' or 'adapter:<name>', got {which!r}"
        )
    index = steps.step_file(profile, "06_finetune", "adapters")
    if kind == "none":
        return []
    if not index.exists():
        log.warning(
            "no adapter index at %s (06_finetune not run): evaluating base models only", index
        )
        return []
    records = read_adapter_records(index)
    if kind == "all":
        return records
    chosen = [r for r in records if (r.base_model if kind == "base" else r.adapter) == name]
    if kind == "adapter" and not chosen:
        known = ", ".join(r.adapter for r in records)
        raise ValueError(f"{index} lists no adapter {name!r} (it lists: {known})")
    return chosen


def eval_items(
    benchmarks: list[str],
    n_per_benchmark: int = 0,
    seed: int = 0,
    mmlu_subjects: list[str] | None = None,
    hold_out: bool = True,
) -> pd.DataFrame:
    """The scored items, all or a fixed random subset of each benchmark; MMLU of
    `mmlu_subjects` (default: the usual six). hold_out: leave out the items MedQA and MedMCQA
    keep as their few-shot pool (data.scored_items); False scores every test item, as the fork
    does zero-shot (a run without shots needs no pool)."""
    frames = []
    for name in benchmarks:
        items = (
            scored_items(name, mmlu_subjects)
            if hold_out
            else load_medical_benchmark(name, mmlu_subjects)
        )
        if n_per_benchmark and n_per_benchmark < len(items):
            items = items.sample(n_per_benchmark, random_state=seed).sort_index()
        frames.append(items)
    return pd.concat(frames, ignore_index=True)


def _identity(lm, adapter: AdapterRecord | None) -> dict:
    return {
        "model": lm.model_id,
        "base_model": lm.spec.key,
        "adapter": adapter.adapter if adapter else "",
        "adapter_type": adapter.type if adapter else "",
        "adapter_n": adapter.n if adapter else 0,
        "model_revision": lm.revision,
    }


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
        **_identity(lm, adapter),
        "protocol": "loglikelihood",
        **request_columns(req),
        "loglikelihoods": lls,
        "pred": pred,
        "answer": req.answer,
        "correct": int(pred == req.answer),
        "unreadable": False,
        "prompt_tokens": n_tokens,
        "truncated": n_tokens - 1 > max_length,
        "settings": settings,
    }


def _score_loglikelihood(lm, adapter, requests: list[McRequest], config: MedEvalConfig, path):
    """Log-likelihood of every choice of every request; finished requests come from the file."""
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
    with Store(path).resume(keys, f"{lm.model_id} loglikelihood") as todo:
        if todo:  # loading the engine only when there is something to score
            engine = make_engine(lm, batch_size=config.batch_size, max_length=config.max_length)
        for rows in todo.batches(config.save_every):
            chunk = [requests[i] for i in rows]
            scores = loglikelihoods(engine, chunk)
            lengths = prompt_lengths(lm.tokenizer, chunk)
            for i, s, n in zip(rows, scores, lengths, strict=True):
                todo.save(i, _record(lm, adapter, requests[i], s, n, engine.max_length, settings))
    # records cached before the protocol column existed are log-likelihood ones
    return pd.DataFrame(todo.values()).assign(protocol="loglikelihood", unreadable=False)


def evaluate_model(
    base: str,
    adapter: AdapterRecord | None,
    requests: list[McRequest | GenRequest],
    config: MedEvalConfig,
    predictions_path: str | Path,
) -> pd.DataFrame:
    """Every request with one model (+ adapter), loaded once: McRequests by log-likelihood,
    GenRequests by generation; finished requests come from the predictions file."""
    if not requests:
        raise ValueError("no requests to score: check benchmarks, n_per_benchmark, num_fewshot")
    scored = [r for r in requests if isinstance(r, McRequest)]
    generated = [r for r in requests if isinstance(r, GenRequest)]
    if len(scored) + len(generated) != len(requests):
        raise TypeError("requests must be McRequest (loglikelihood) or GenRequest (generation)")
    lm = load_model(
        base,
        dtype=config.dtype,
        load_in_4bit=config.load_in_4bit,
        adapter_path=adapter.path if adapter else None,
    )
    try:
        if adapter is not None:  # raises when the adapter changes nothing
            first = requests[0]
            check_adapter(lm, [first.context if isinstance(first, McRequest) else first.prompt])
        frames = []
        if scored:
            frames.append(_score_loglikelihood(lm, adapter, scored, config, predictions_path))
        if generated:
            identity = _identity(lm, adapter)
            frames.append(generate_predictions(lm, generated, config, identity, predictions_path))
        return pd.concat(frames, ignore_index=True)
    finally:
        release(lm)


def build_all_requests(items: pd.DataFrame, config: MedEvalConfig) -> list[McRequest | GenRequest]:
    """The requests of every protocol, item and (shots, seed) setting; shots from the disjoint
    few-shot pools (data.fewshot_pool)."""
    settings = fewshot_settings(config.num_fewshot, config.seeds)
    pools = shot_pools(sorted(set(items["benchmark"])), config.mmlu_subjects)
    requests: list[McRequest | GenRequest] = []
    if "generation" in config.protocols:
        instructions = load_meditron_instructions()
        requests += build_gen_requests(
            items, settings, pools, instructions, config.max_context_chars
        )
    if "loglikelihood" in config.protocols:
        requests += build_requests(items, settings, pools, config.max_context_chars)
    return requests


def evaluate_all(
    models: list[str],
    adapters: list[AdapterRecord],
    items: pd.DataFrame,
    config: MedEvalConfig,
    predictions_path: str | Path,
) -> pd.DataFrame:
    """Every base model (those listed and every adapter's base), then every adapter."""
    requests = build_all_requests(items, config)
    bases = list(dict.fromkeys([*models, *(a.base_model for a in adapters)]))
    frames = [evaluate_model(b, None, requests, config, predictions_path) for b in bases]
    frames += [
        evaluate_model(a.base_model, a, requests, config, predictions_path) for a in adapters
    ]
    predictions = pd.concat(frames, ignore_index=True)
    truncated = int(predictions["truncated"].sum())
    if truncated:
        log.warning(
            "%d of %d prompts were longer than the model's context: log-likelihood prompts "
            "lost their start (lm-eval truncates from the left), generated ones ran past it",
            truncated,
            len(predictions),
        )
    unreadable = predictions["unreadable"].astype(bool)
    if unreadable.any():
        log.warning(
            "%d of %d generated answers could not be read (scored as wrong; see the table's "
            "unreadable column)",
            int(unreadable.sum()),
            int((predictions["protocol"] == "generation").sum()),
        )
    return predictions


def engine_versions(protocols: list[str]) -> dict[str, str]:
    """What computed each protocol's answers, with versions (for the manifest)."""
    import lm_eval
    import transformers

    engines = {
        "generation": f"transformers {transformers.__version__} generate (greedy, "
        "frequency_penalty 1.0, stop '###')",
        "loglikelihood": f"lm-eval HFLM {lm_eval.__version__}",
    }
    return {p: engines[p] for p in protocols}


def adapter_differences(predictions: pd.DataFrame) -> pd.DataFrame:
    """Per adapter and protocol: how far its answers are from its base's on the same prompts
    (log-likelihoods where scored, generated texts where generated; evaluate_model's
    check_adapter already refused an adapter whose logits equal its base's)."""
    keys = ["protocol", "benchmark", "item_id", "num_fewshot", "seed"]
    base = predictions[predictions["adapter"] == ""]
    rows = []
    tuned = predictions[predictions["adapter"] != ""]
    for (model, protocol), group in tuned.groupby(["model", "protocol"], sort=False):
        ref = base[base["model"] == group["base_model"].iloc[0]]
        merged = group.merge(ref, on=keys, suffixes=("", "_base"))
        if merged.empty:
            raise ValueError(f"{model}: no base-model predictions on the same prompts")
        row = {
            "model": model,
            "protocol": protocol,
            "n_prompts": len(merged),
            "ll_max_abs_diff": float("nan"),
            "ll_mean_abs_diff": float("nan"),
            "output_changed": float("nan"),
            "pred_changed": float((merged["pred"] != merged["pred_base"]).mean()),
        }
        if protocol == "loglikelihood":
            diffs = [
                abs(a - b)
                for x, y in zip(
                    merged["loglikelihoods"], merged["loglikelihoods_base"], strict=True
                )
                for a, b in zip(x, y, strict=True)
            ]
            row.update(ll_max_abs_diff=max(diffs), ll_mean_abs_diff=sum(diffs) / len(diffs))
        else:
            row["output_changed"] = float((merged["output"] != merged["output_base"]).mean())
        rows.append(row)
    return pd.DataFrame(rows, columns=CHECK_COLUMNS)
