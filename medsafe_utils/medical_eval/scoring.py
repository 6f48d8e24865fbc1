"""Log-likelihood scoring of multiple-choice requests.

The engine is lm-evaluation-harness's HF wrapper (`HFLM`) around our loaded model (+ adapter):
its tokenization of (context, continuation) pairs, length-sorted batches, and its logits cache
(one forward pass per context for single-token choices).
`adapter_effect` guards against an adapter that is loaded but silently has no effect."""

from __future__ import annotations

import logging
from collections.abc import Sequence

import torch

from medsafe_utils.medical_eval.prompts import McRequest
from medsafe_utils.models import LoadedModel

log = logging.getLogger(__name__)


class AdapterIgnoredError(RuntimeError):
    """An adapter whose log-likelihoods equal the base model's: evaluating it evaluates the base."""


def make_engine(lm: LoadedModel, *, batch_size: int = 8, max_length: int = 0):
    """lm-eval's HFLM wrapping an already-loaded model and tokenizer (max_length 0: the model's)."""
    from lm_eval.models.huggingface import HFLM

    logging.getLogger("lm_eval.models.huggingface").setLevel(logging.ERROR)  # "not a str" notice
    return HFLM(pretrained=lm.model, tokenizer=lm.tokenizer, batch_size=batch_size,
                max_length=max_length or None, device=str(lm.model.device))


def loglikelihoods(engine, requests: Sequence[McRequest]) -> list[list[float]]:
    """Summed log-probability of every continuation of every request (lm-eval's HFLM)."""
    from lm_eval.api.instance import Instance

    instances = [Instance("loglikelihood", {}, (r.context, c), idx=j)
                 for r in requests for j, c in enumerate(r.continuations)]
    scores = [ll for ll, _greedy in engine.loglikelihood(instances, disable_tqdm=True)]
    out, start = [], 0
    for r in requests:
        out.append(scores[start:start + len(r.continuations)])
        start += len(r.continuations)
    return out


def prompt_lengths(tokenizer, requests: Sequence[McRequest]) -> list[int]:
    """Tokens in each request's longest context + continuation (to flag left truncation)."""
    return [max(len(tokenizer.encode(r.context + c)) for c in r.continuations) for r in requests]


@torch.no_grad()
def adapter_effect(lm: LoadedModel, probe: str) -> float:
    """Max |log-prob difference| over a probe text between the model with and without its adapter.

    Raises AdapterIgnoredError when it is exactly zero (an adapter that changes nothing)."""
    if not hasattr(lm.model, "disable_adapter"):
        raise TypeError(f"{lm.model_id} has no adapter (not a peft model)")
    ids = torch.tensor([lm.tokenizer.encode(probe)[-512:]], device=lm.model.device)
    with_adapter = torch.log_softmax(lm.model(ids).logits.float(), dim=-1)
    with lm.model.disable_adapter():
        without = torch.log_softmax(lm.model(ids).logits.float(), dim=-1)
    effect = (with_adapter - without).abs().max().item()
    if effect == 0.0:
        raise AdapterIgnoredError(f"{lm.model_id}: log-likelihoods with the adapter equal the base "
                                  f"model's exactly; the adapter has no effect (zero LoRA B "
                                  f"weights, wrong target modules, or it was not applied)")
    log.info("%s: adapter changes log-probs by up to %.3g on the probe", lm.model_id, effect)
    return effect
