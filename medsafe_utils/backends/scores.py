"""Scores read from next-token probabilities: the probability of each of a fixed set of label
continuations (a judge's '1'..'5', a harm rating's ' 0'..' 10') after each of many contexts.

Exact for labels of several tokens (' 10' may be ' 1' + '0'): one forward pass per proper prefix
of a label's tokens, the probabilities multiplied along the label. The token prefix that all
contexts share (a template, a policy) is encoded once and its KV cache copied for each batch.

    from medsafe_utils.backends.scores import label_probs, label_tokens
    labels = label_tokens(lm.tokenizer, contexts[0], [" 0", " 1", " 2"])
    probs = list(label_probs(lm, contexts, labels, batch_size=8))  # one list per context
"""

from __future__ import annotations

import copy
from collections.abc import Iterator

import torch

from medsafe_utils.backends.hf import (
    adds_bos,
    padded_after_prefix,
    prefix_cache,
    shared_prefix_length,
)
from medsafe_utils.models.loading import LoadedModel


def label_tokens(tokenizer, context: str, labels: list[str]) -> list[list[int]]:
    """Token ids of each label after `context`, as the tokenizer writes them there."""
    base = tokenizer(context, add_special_tokens=False).input_ids
    out = []
    for label in labels:
        ids = tokenizer(context + label, add_special_tokens=False).input_ids
        if ids[: len(base)] != base:
            raise ValueError(f"tokenizer merges {label!r} into the context's last token")
        out.append(ids[len(base) :])
    return out


def _next_probs(model, ids: torch.Tensor, cache, mask, positions) -> torch.Tensor:
    """P(next token) after `ids` (batch, new) on top of `cache` (extended): (batch, vocab)."""
    out = model(
        input_ids=ids,
        attention_mask=mask,
        position_ids=positions,
        past_key_values=cache,
        use_cache=True,
        logits_to_keep=1,
    )
    return out.logits[:, -1].float().softmax(-1)


def _batch_probs(model, rows: list[list[int]], n: int, prefix, nodes: list[tuple], pad_id: int):
    """{label prefix: P(next token) after it} for rows that share their first n tokens, whose KV
    cache is `prefix`; () is each row's own end."""
    cache = copy.deepcopy(prefix)
    if len(rows) > 1:
        cache.batch_repeat_interleave(len(rows))
    ids, mask = padded_after_prefix(rows, n, pad_id)
    device = model.device
    ids = torch.tensor(ids, device=device)[:, n:]  # (batch, own tokens)
    mask = torch.tensor(mask, device=device)  # (batch, prefix + own tokens)
    padded = not bool(mask.all())
    # Padding sits between prefix and own tokens: positions must skip it (as generate does).
    positions = (mask.cumsum(-1) - 1).clamp(min=0)[:, n:] if padded else None
    probs = {(): _next_probs(model, ids, cache, mask if padded else None, positions)}
    for node in nodes:
        extra = torch.tensor([list(node)] * len(rows), device=device)  # (batch, depth)
        node_mask = torch.cat([mask, torch.ones_like(extra)], dim=1) if padded else None
        node_positions = (
            positions[:, -1:] + 1 + torch.arange(len(node), device=device) if padded else None
        )
        probs[node] = _next_probs(model, extra, copy.deepcopy(cache), node_mask, node_positions)
    return probs


@torch.inference_mode()
def label_probs(
    lm: LoadedModel,
    contexts: list[str],
    labels: list[list[int]],
    *,
    batch_size: int = 1,
    continuing: list[int] | None = None,
) -> Iterator[list[float]]:
    """P(label) for each label's token ids after each context, one list per context in order.

    A label that begins another (' 1' of ' 10') counts only when none of the `continuing` token
    ids (e.g. every token that starts with a digit) follows it."""
    if not contexts:
        return
    nodes = sorted({tuple(lab[:j]) for lab in labels for j in range(1, len(lab))}, key=len)
    prefixes = [lab for lab in labels if tuple(lab) in nodes]
    if prefixes and continuing is None:
        raise ValueError(f"labels {prefixes} begin other labels: give the continuing token ids")
    model, tok = lm.model, lm.tokenizer
    rows = [tok(c, add_special_tokens=adds_bos(tok, [c])).input_ids for c in contexts]
    n = shared_prefix_length(rows)
    prefix = prefix_cache(model, rows[0][:n])
    for start in range(0, len(rows), batch_size):
        probs = _batch_probs(
            model, rows[start : start + batch_size], n, prefix, nodes, tok.pad_token_id
        )
        out = []
        for lab in labels:
            p = probs[()][:, lab[0]]  # (batch,)
            for j in range(1, len(lab)):
                p = p * probs[tuple(lab[:j])][:, lab[j]]
            if tuple(lab) in probs:  # the label must end here, not run on into a longer one
                p = p * (1 - probs[tuple(lab)][:, continuing].sum(-1)).clamp(min=0)
            out.append(p)
        yield from torch.stack(out, dim=1).tolist()  # (batch, labels)
