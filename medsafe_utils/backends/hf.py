"""Local transformers generation: batched, left-padded, batches sorted by prompt length, and the
prompt prefix that a batch shares (the system prompt, a judge's template) encoded once."""

from __future__ import annotations

import os
from collections.abc import Callable

import torch
from transformers import DynamicCache, LogitsProcessor, LogitsProcessorList

from medsafe_utils.backends.config import GenerationConfig, cut_at_stop
from medsafe_utils.models.loading import LoadedModel
from medsafe_utils.models.registry import ModelSpec

MIN_SHARED_PREFIX = 16  # tokens: below this, encoding the prefix once saves less than it costs


def shared_prefix_length(rows: list[list[int]]) -> int:
    """Tokens that every row starts with, leaving at least one token of each row after it."""
    # os.path.commonprefix compares any sequences item by item, token id lists too
    limit = min(len(r) for r in rows) - 1
    return max(0, min(len(os.path.commonprefix(rows)), limit))


def prefix_cache(model, prefix: list[int]) -> DynamicCache:
    """The KV cache of one token prefix (batch 1; empty for no prefix)."""
    cache = DynamicCache(config=model.config)
    if prefix:
        model(
            input_ids=torch.tensor([prefix], device=model.device),
            past_key_values=cache,
            use_cache=True,
            logits_to_keep=1,
        )
    return cache


def padded_after_prefix(rows: list[list[int]], n: int, pad_id: int) -> tuple[list, list]:
    """(token ids, attention mask) per row laid out as the n shared prefix tokens + left padding
    + the row's own tokens, so that every row ends in the last column."""
    width = max(len(r) for r in rows) - n
    ids = [r[:n] + [pad_id] * (width - len(r) + n) + r[n:] for r in rows]
    mask = [[1] * n + [0] * (width - len(r) + n) + [1] * (len(r) - n) for r in rows]
    return ids, mask


def adds_bos(tokenizer, texts: list[str]) -> bool:
    """Whether to add special tokens: not when a chat template already wrote the BOS token."""
    return not (bool(tokenizer.bos_token) and all(t.startswith(tokenizer.bos_token) for t in texts))


class FrequencyPenalty(LogitsProcessor):
    """vLLM's frequency_penalty: subtract penalty x (times each token occurs in the output so
    far) from its logit. Only tokens after `prompt_width` (the padded prompt) are counted."""

    def __init__(self, penalty: float, prompt_width: int):
        self.penalty = penalty
        self.prompt_width = prompt_width

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        """input_ids: (batch, prompt_width + generated); scores: (batch, vocab)."""
        generated = input_ids[:, self.prompt_width :]
        if generated.shape[1] == 0:
            return scores
        counts = torch.zeros_like(scores).scatter_add_(
            1, generated, torch.ones_like(generated, dtype=scores.dtype)
        )
        return scores - self.penalty * counts


class HFBackend:
    """Generates with a loaded model; returns only the new text."""

    is_api = False

    def __init__(self, lm: LoadedModel, prompt_format: str | None = None):
        self.lm = lm
        self.model_id = lm.model_id
        self.revision = lm.revision
        self.prompt_format = prompt_format or lm.spec.format  # recorded in cache keys
        self.spec: ModelSpec = lm.spec  # the registry entry (or hub id / path entry)
        self.tokenizer = lm.tokenizer  # left padding, a pad token

    def generation_defaults(self) -> dict:
        """How the model decodes by its own generation config (what model_defaults uses)."""
        config = self.lm.model.generation_config
        keys = ("do_sample", "temperature", "top_p", "top_k")
        return {k: getattr(config, k, None) for k in keys}

    def _with_shared_prefix(self, encoded):
        """The encoded batch laid out as shared prefix + left padding + each prompt's own tokens,
        and the prefix's KV cache (computed once, repeated over the batch); None if there is no
        prefix worth sharing. The model sees the same tokens at the same positions as without."""
        ids = [
            r[m.bool()].tolist()
            for r, m in zip(encoded.input_ids, encoded.attention_mask, strict=True)
        ]
        n = shared_prefix_length(ids) if len(ids) > 1 else 0
        if n < MIN_SHARED_PREFIX:
            return None
        model = self.lm.model
        cache = prefix_cache(model, ids[0][:n])
        cache.batch_repeat_interleave(len(ids))
        input_ids, mask = padded_after_prefix(ids, n, self.lm.tokenizer.pad_token_id)
        inputs = {
            "input_ids": torch.tensor(input_ids, device=model.device),
            "attention_mask": torch.tensor(mask, device=model.device),
        }
        return inputs, cache

    @staticmethod
    def _decoding(config: GenerationConfig) -> dict:
        """Sampling arguments of model.generate; none with model_defaults (its config decides)."""
        if config.model_defaults:
            return {}
        return {
            "do_sample": config.do_sample,
            "temperature": config.temperature if config.do_sample else None,
            "top_p": config.top_p if config.do_sample else None,
            "top_k": None,
        }

    @torch.inference_mode()
    def generate_batch(self, prompts: list[str], config: GenerationConfig) -> list[str]:
        """One padded batch through model.generate."""
        tok, model = self.lm.tokenizer, self.lm.model
        encoded = tok(
            prompts, return_tensors="pt", padding=True, add_special_tokens=adds_bos(tok, prompts)
        )
        shared = self._with_shared_prefix(encoded) if config.share_prefix else None
        inputs, cache = shared or (encoded.to(model.device), None)
        if config.do_sample or config.model_defaults:
            torch.manual_seed(config.seed)
        width = inputs["input_ids"].shape[1]
        extra = {}
        if config.frequency_penalty:
            extra["logits_processor"] = LogitsProcessorList(
                [FrequencyPenalty(config.frequency_penalty, width)]
            )
        if config.stop:
            extra |= {"stop_strings": list(config.stop), "tokenizer": tok}
        out = model.generate(
            **inputs,
            max_new_tokens=config.max_new_tokens,
            pad_token_id=tok.pad_token_id,
            past_key_values=cache,
            **extra,
            **self._decoding(config),
        )
        new_tokens = out[:, width:]  # (batch, new) after left padding
        decoded = tok.batch_decode(new_tokens, skip_special_tokens=True)
        texts = [cut_at_stop(t, config.stop) for t in decoded]
        return [t.strip() for t in texts] if config.strip else texts

    def run(
        self, prompts: list[str], config: GenerationConfig, on_result: Callable[[int, str], None]
    ) -> None:
        """Generate all prompts, longest first in batches; report each result by its index."""
        if not all(isinstance(p, str) for p in prompts):
            raise TypeError("the local backend takes rendered text prompts, not messages")
        lengths = [len(self.lm.tokenizer(p).input_ids) for p in prompts]
        order = sorted(range(len(prompts)), key=lambda i: -lengths[i])
        for start in range(0, len(order), config.batch_size):
            batch = order[start : start + config.batch_size]
            outputs = self.generate_batch([prompts[i] for i in batch], config)
            for i, text in zip(batch, outputs, strict=True):
                on_result(i, text)
