"""Log-likelihood scoring of multiple-choice requests.

The engine is lm-evaluation-harness's HF wrapper (`HFLM`) around our loaded model (+ adapter):
its tokenization of (context, continuation) pairs, length-sorted batches, and its logits cache
(one forward pass per context for single-token choices)."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from itertools import islice

from medsafe_utils.medical_eval.prompts import McRequest
from medsafe_utils.models import LoadedModel

log = logging.getLogger(__name__)


def make_engine(lm: LoadedModel, *, batch_size: int = 8, max_length: int = 0):
    """lm-eval's HFLM wrapping an already-loaded model and tokenizer (max_length 0: the model's)."""
    from lm_eval.models.huggingface import HFLM

    logging.getLogger("lm_eval.models.huggingface").setLevel(logging.ERROR)  # "not a str" notice
    return HFLM(
        pretrained=lm.model,
        tokenizer=lm.tokenizer,
        batch_size=batch_size,
        max_length=max_length or None,
        device=str(lm.model.device),
    )


def loglikelihoods(engine, requests: Sequence[McRequest]) -> list[list[float]]:
    """Summed log-probability of every continuation of every request (lm-eval's HFLM)."""
    from lm_eval.api.instance import Instance

    instances = [
        Instance("loglikelihood", {}, (r.context, c), idx=j)
        for r in requests
        for j, c in enumerate(r.continuations)
    ]
    scores = (ll for ll, _greedy in engine.loglikelihood(instances, disable_tqdm=True))
    return [list(islice(scores, len(r.continuations))) for r in requests]


def prompt_lengths(tokenizer, requests: Sequence[McRequest]) -> list[int]:
    """Tokens in each request's longest context + continuation (to flag left truncation)."""
    return [max(len(tokenizer.encode(r.context + c)) for c in r.continuations) for r in requests]
