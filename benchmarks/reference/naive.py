"""A plain reference scorer for multiple-choice log-likelihoods: one unbatched forward pass per
choice, lm-eval's tokenization convention. It checks the engine of 07 (tests) and is the slow
side of benchmarks/bench_medeval.py; nothing in the package uses it."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from medsafe_utils.medical_eval.prompts import McRequest
from medsafe_utils.models import LoadedModel


def encode_pair(tokenizer, context: str, continuation: str) -> tuple[list[int], list[int]]:
    """lm-eval's causal convention: encode context+continuation, split at the context's length."""
    n_spaces = len(context) - len(context.rstrip())
    if n_spaces:
        context, continuation = context[:-n_spaces], context[-n_spaces:] + continuation
    whole = tokenizer.encode(context + continuation)
    context_ids = tokenizer.encode(context)
    return whole[: len(context_ids)], whole[len(context_ids) :]


@torch.no_grad()
def naive_loglikelihoods(
    lm: LoadedModel, requests: Sequence[McRequest], max_length: int = 0
) -> list[list[float]]:
    """Reference scorer: one unbatched forward pass per choice, left-truncated like lm-eval."""
    max_length = max_length or lm.model.config.max_position_embeddings
    device = lm.model.device
    out = []
    for r in requests:
        row = []
        for continuation in r.continuations:
            context_ids, cont_ids = encode_pair(lm.tokenizer, r.context, continuation)
            ids = (context_ids + cont_ids)[-(max_length + 1) :][:-1]
            logits = lm.model(torch.tensor([ids], device=device)).logits[0].float()
            logprobs = torch.log_softmax(logits[-len(cont_ids) :], dim=-1)  # (n_cont, vocab)
            row.append(
                logprobs.gather(1, torch.tensor(cont_ids, device=device)[:, None]).sum().item()
            )
        out.append(row)
    return out
