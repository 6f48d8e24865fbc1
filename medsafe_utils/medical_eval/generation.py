"""The generation protocol: the model completes each instruction prompt greedily, as meditron's
vLLM call does (temperature 0, frequency_penalty 1.0, stop at "###" or the end-of-sequence
token), within a token budget (`budget`); the answer is read from the text (medical_eval.answers,
`answer_reader`), and an unreadable one is scored wrong and flagged.

Budgets. "released" (the paper's): th789/meditron's `tokenizer_param`, called once per batch of
`batch_size` prompts (32 in its inference_pipeline.sh) with the batch's list of golds. Its
inference.py gives every benchmark run here the task type "mcq" (PubMedQA included), for which the
budget is the tokens of the batch's FIRST gold (`target[0]`, no special tokens), + 8 with shots:
so one run (benchmark, shots, seed) is cut, in item order, into batches of `batch_size`, and each
prompt gets its batch's first item's budget. "per_item" (ours): each prompt its own gold's
tokens, + 8 with shots."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd

from medsafe_utils.backends import GenerationConfig, HFBackend
from medsafe_utils.core.store import Store, item_key
from medsafe_utils.medical_eval.answers import answer_index, read_answer
from medsafe_utils.medical_eval.instructed import PROMPT_VERSION, GenRequest
from medsafe_utils.medical_eval.prompts import request_columns

if TYPE_CHECKING:
    from medsafe_utils.medical_eval.evaluate import MedEvalConfig

FREQUENCY_PENALTY = 1.0
STOP = ("###",)
EXTRA_TOKENS_WITH_SHOTS = 8
PROMPT_FORMAT = "meditron-instructions"  # raw text prompts, no chat template


BUDGETS = ("released", "per_item")


def max_new_tokens(tokenizer, request: GenRequest) -> int:
    """Tokens of the request's gold answer text, + 8 with shots (the fork's MCQ budget)."""
    n = len(tokenizer(request.gold, add_special_tokens=False)["input_ids"])
    return n + (EXTRA_TOKENS_WITH_SHOTS if request.num_fewshot else 0)


def fork_batches(requests: Sequence[GenRequest], batch_size: int) -> list[list[int]]:
    """The fork's inference batches: each run (benchmark, shots, seed) in item order, cut into
    consecutive batches of batch_size (its DataLoader, shuffle=False); request indices."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}")
    runs: dict[tuple, list[int]] = {}
    for j, r in enumerate(requests):
        runs.setdefault((r.benchmark, r.num_fewshot, r.seed), []).append(j)
    return [
        members[start : start + batch_size]
        for members in runs.values()
        for start in range(0, len(members), batch_size)
    ]


def token_budgets(
    tokenizer, requests: Sequence[GenRequest], budget: str, batch_size: int
) -> list[int]:
    """max_new_tokens of every request: "released" (its fork batch's first gold) or "per_item"."""
    if budget == "per_item":
        return [max_new_tokens(tokenizer, r) for r in requests]
    if budget != "released":
        raise ValueError(f"budget must be one of {BUDGETS}, got {budget!r}")
    budgets = [0] * len(requests)
    for batch in fork_batches(requests, batch_size):
        first = max_new_tokens(tokenizer, requests[batch[0]])
        for j in batch:
            budgets[j] = first
    return budgets


def generation_settings(config: MedEvalConfig) -> dict:
    """What changes a generation or its reading besides the model and prompt (part of the key)."""
    return {
        "prompt_version": PROMPT_VERSION,
        "frequency_penalty": FREQUENCY_PENALTY,
        "stop": list(STOP),
        "answer_reader": config.answer_reader,
        "dtype": config.dtype,
        "load_in_4bit": config.load_in_4bit,
    }


def generate_answers(
    backend: HFBackend,
    requests: Sequence[GenRequest],
    budgets: Sequence[int],
    batch_size: int,
    on_result,
) -> None:
    """Generate every request, grouped by its token budget; on_result(j, text) for request j."""
    groups: dict[int, list[int]] = {}
    for j, budget in enumerate(budgets):
        groups.setdefault(budget, []).append(j)
    for budget, members in groups.items():
        # greedy with meditron's frequency penalty and stop string; the text kept as generated
        config = GenerationConfig(
            max_new_tokens=budget,
            batch_size=batch_size,
            frequency_penalty=FREQUENCY_PENALTY,
            stop=STOP,
            strip=False,
        )
        backend.run(
            [requests[j].prompt for j in members],
            config,
            lambda i, text, members=members: on_result(members[i], text),
        )


def reading(request: GenRequest, output: str, reader: str = "fork") -> dict:
    """What the output answers: the read answer (None: unreadable), its index, correctness."""
    answer = read_answer(output, request.benchmark, request.num_fewshot > 0, reader)
    return {
        "output": output,
        "parsed": answer,
        "pred": answer_index(answer, request.benchmark),
        "unreadable": answer is None,
        "correct": int(answer is not None and answer == request.gold.lower()),
    }


def generate_predictions(
    lm,
    requests: Sequence[GenRequest],
    config: MedEvalConfig,
    identity: dict,
    path: str | Path | None,
) -> pd.DataFrame:
    """Greedy answers of one loaded model to every request, read and scored, one record each
    (`identity`: model, adapter, revision columns); finished requests come from the store."""
    settings = generation_settings(config)
    budgets = token_budgets(lm.tokenizer, requests, config.budget, config.batch_size)
    keys = [
        item_key(
            lm.model_id,
            lm.revision,
            "mc-generation",
            [r.benchmark, r.item_id, r.num_fewshot, r.seed, r.prompt, n],
            settings,
        )
        for r, n in zip(requests, budgets, strict=True)
    ]
    context = getattr(lm.model.config, "max_position_embeddings", 0) or 0
    with Store(path).resume(keys, f"{lm.model_id} generation") as todo:

        def save(j: int, text: str) -> None:
            i = todo.indices[j]
            r = requests[i]
            n_prompt = len(lm.tokenizer(r.prompt)["input_ids"])
            record = {
                **identity,
                "protocol": "generation",
                **request_columns(r),
                "gold": r.gold,
                "answer": r.answer,
                **reading(r, text, config.answer_reader),
                "max_new_tokens": budgets[i],
                "prompt_tokens": n_prompt,
                "truncated": bool(context) and n_prompt + budgets[i] > context,
                "settings": settings,
            }
            todo.save(i, record)

        if todo:
            backend = HFBackend(lm, prompt_format=PROMPT_FORMAT)
            pending = list(todo)
            generate_answers(
                backend,
                [requests[i] for i in pending],
                [budgets[i] for i in pending],
                config.batch_size,
                save,
            )
    return pd.DataFrame(todo.values())
