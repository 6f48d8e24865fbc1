"""The GCG objective: mean cross-entropy of the target after prompt + suffix, its gradient with
respect to the one-hot suffix, and candidate losses in batches.

Where a step's time goes and what is saved (~95% of a step is the forward pass over candidates):
the KV cache of the fixed prompt before the suffix is computed once; every candidate equals the
current suffix up to its first replaced position, so candidates are sorted by that position and
each batch continues the current suffix's KV from there; only target positions get logits, and
for candidates those are made a vocabulary slice at a time and reduced to the loss on the spot
(never a (rows, vocab) matrix in memory); the last target token is never fed in; the cached
prefix is broadcast, never stored per row; on CPU the batches run one per core
(single-threaded forwards) instead of splitting every op, with oneDNN's GEMM (cpu_linear)."""

from __future__ import annotations

import logging
import math
from concurrent.futures import ThreadPoolExecutor

import torch
import torch.nn.functional as F
from transformers.cache_utils import Cache, DynamicCache, DynamicLayer

from medsafe_utils.jailbreak.cpu_linear import linear, onednn_linears
from medsafe_utils.jailbreak.prompt import PromptParts

log = logging.getLogger(__name__)
VOCAB_SLICE = 2048  # output-head rows per slice in target_cross_entropy: its logits stay in cache


def is_out_of_memory(error: BaseException) -> bool:
    """CUDA or CPU out-of-memory errors (which come as RuntimeError on some paths)."""
    if isinstance(error, torch.OutOfMemoryError):
        return True
    return isinstance(error, RuntimeError) and any(
        s in str(error) for s in ("out of memory", "can't allocate memory")
    )


class PrefixLayer(DynamicLayer):
    """A KV-cache layer holding a fixed prefix (batch 1) that every row of a batch continues.

    Each update returns prefix + new states, broadcast over the batch; only with `keep` are they
    stored (the gradient pass keeps them), so a candidate batch holds one layer's KV at a time."""

    def __init__(self, keys: torch.Tensor, values: torch.Tensor, keep: bool = False):
        super().__init__()
        self.dtype, self.device, self.keep = keys.dtype, keys.device, keep
        self.keys, self.values, self.is_initialized = keys, values, True

    def update(self, key_states: torch.Tensor, value_states: torch.Tensor, *args, **kwargs):
        """Prefix + new states along the sequence (the prefix is copied once per batch row)."""
        batch = key_states.shape[0]
        keys = torch.cat([self.keys.expand(batch, -1, -1, -1), key_states], dim=-2)
        values = torch.cat([self.values.expand(batch, -1, -1, -1), value_states], dim=-2)
        if self.keep:
            self.keys, self.values = keys, values
        return keys, values


def target_cross_entropy(
    states: torch.Tensor, head: torch.nn.Linear, target: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean cross-entropy of `target` (n_target,) per row and whether it is the greedy choice
    at every position, from hidden states (batch, n_target, dim) before the output head.

    The head's logits are made VOCAB_SLICE rows of the vocabulary at a time, and an online
    logsumexp (running max and rescaled sum) folds each slice in while it is still in cache:
    the whole (batch * n_target, vocab) matrix never reaches memory. The target logit is
    taken from the same slice, so "greedy choice" is the exact test target logit == max."""
    rows = states.reshape(-1, states.shape[-1])
    labels = target.repeat(states.shape[0])
    top = torch.full(labels.shape, -math.inf, device=rows.device)
    total = torch.zeros(labels.shape, device=rows.device)
    picked = torch.zeros(labels.shape, device=rows.device)
    for start in range(0, head.weight.shape[0], VOCAB_SLICE):
        stop = start + VOCAB_SLICE
        bias = None if head.bias is None else head.bias[start:stop]
        logits = linear(rows, head.weight[start:stop], bias).float()
        inside = (labels >= start) & (labels < stop)
        index = (labels - start).clamp(0, logits.shape[1] - 1)[:, None]
        picked = torch.where(inside, logits.gather(1, index)[:, 0], picked)
        new_top = torch.maximum(top, logits.amax(1))
        total = total * torch.exp(top - new_top) + logits.sub_(new_top[:, None]).exp_().sum(1)
        top = new_top
    ce = (top + total.log() - picked).view(states.shape[0], -1)
    greedy = (picked >= top).view(states.shape[0], -1)
    return ce.mean(1), greedy.all(1)


def separable_head(model, prompt_ids: torch.Tensor) -> torch.nn.Linear | None:
    """The output head when the model's logits are exactly head(base model's last hidden state)
    (true of Llama-like models; not of heads with soft-capping or a logit scale), else None.
    Checked on the prompt, so any model is safe: others get their logits from the model."""
    head = model.get_output_embeddings()
    if type(head) is not torch.nn.Linear or model.base_model is model:
        return None
    with torch.no_grad():
        logits = model(input_ids=prompt_ids, logits_to_keep=1).logits[:, -1].float()
        states = getattr(model.base_model(input_ids=prompt_ids), "last_hidden_state", None)
        if states is None:  # a wrapper (e.g. PEFT's) whose base model is itself a causal LM
            return None
        mine = head(states[:, -1:])[:, -1].float()
    return head if torch.allclose(mine, logits, rtol=1e-3, atol=1e-3) else None


class TargetLoss:
    """The GCG loss of suffixes for one prompt and target, with the prefix KV cache.

    `gradient(suffix)` also keeps the KV of prompt + that suffix, which `losses(candidates)`
    reuses up to each batch's first replaced position."""

    def __init__(
        self, model, parts: PromptParts, use_prefix_cache: bool = True, batch_size: int = 512
    ):
        self.model, self.batch_size = model, batch_size
        self.embed = model.get_input_embeddings()
        device = self.embed.weight.device
        self.before = parts.before_ids.to(device)[None]  # (1, n_before)
        self.target = parts.target_ids.to(device)  # (n_target,)
        # After the suffix: the rest of the prompt and all target tokens but the last.
        tail_ids = torch.cat([parts.after_ids.to(device), self.target[:-1]])[None]
        with torch.no_grad():
            self.tail_embeds = self.embed(tail_ids)  # (1, n_after + n_target - 1, dim)
            self.before_embeds = self.embed(self.before)  # (1, n_before, dim)
            self.prefix_kv = self._prefix_kv() if use_prefix_cache else None
        self.head = separable_head(model, self.before)  # None: losses from the model's logits
        self.base_ids: torch.Tensor | None = None  # the suffix whose KV is in base_kv
        self.base_kv: list[tuple[torch.Tensor, torch.Tensor]] | None = None
        self.n_oom = 0

    def _prefix_kv(self) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """KV of the fixed prompt before the suffix, one (key, value) per layer, batch 1."""
        cache = DynamicCache()
        self.model(inputs_embeds=self.before_embeds, past_key_values=cache, use_cache=True)
        return [(layer.keys, layer.values) for layer in cache.layers]  # (1, heads, n_before, dim)

    def _forward(
        self, embeds: torch.Tensor, kv, kv_len: int, keep: bool = False
    ) -> tuple[torch.Tensor, Cache | None]:
        """The target positions' hidden states (batch, n_target, dim) where the head is applied
        here (self.head), else their logits (batch, n_target, vocab) in float32; and the cache."""
        cache = None
        if kv is not None:
            cache = Cache(
                layers=[PrefixLayer(k[:, :, :kv_len], v[:, :, :kv_len], keep) for k, v in kv]
            )
        n = len(self.target)
        if self.head is not None:
            out = self.model.base_model(
                inputs_embeds=embeds, past_key_values=cache, use_cache=cache is not None
            )
            return out.last_hidden_state[:, -n:], cache
        out = self.model(
            inputs_embeds=embeds,
            past_key_values=cache,
            use_cache=cache is not None,
            logits_to_keep=n,
        )
        return out.logits[:, -n:].float(), cache

    def _candidate_loss(self, outputs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Loss and target match per row from `_forward`'s outputs (no gradient needed)."""
        if self.head is not None:
            return target_cross_entropy(outputs, self.head, self.target)
        return self._loss(outputs)

    def _loss(self, logits: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Mean cross-entropy per row (batch,) and whether argmax equals the target (batch,)."""
        labels = self.target.expand(logits.shape[0], -1)
        # Cross-entropy as logsumexp - target logit: no (batch, n_target, vocab) log-softmax.
        ce = logits.logsumexp(-1) - logits.gather(-1, labels[..., None])[..., 0]
        return ce.mean(1), (logits.argmax(-1) == labels).all(1)

    def gradient(self, suffix_ids: torch.Tensor) -> tuple[torch.Tensor, float]:
        """Gradient of the loss w.r.t. the one-hot suffix (suffix_len, vocab), and the loss."""
        weight = self.embed.weight
        onehot = F.one_hot(suffix_ids.to(weight.device), weight.shape[0]).to(weight.dtype)
        onehot.requires_grad_(True)
        suffix_embeds = (onehot @ weight)[None]  # (1, suffix_len, dim)
        if self.prefix_kv is not None:
            embeds = torch.cat([suffix_embeds, self.tail_embeds], dim=1)
            outputs, cache = self._forward(embeds, self.prefix_kv, self.before.shape[1], keep=True)
        else:
            embeds = torch.cat([self.before_embeds, suffix_embeds, self.tail_embeds], dim=1)
            outputs, cache = self._forward(embeds, None, 0)
        logits = outputs if self.head is None else self.head(outputs).float()
        loss = self._loss(logits)[0][0]
        (grad,) = torch.autograd.grad(loss, onehot)
        if cache is not None:
            keep = self.before.shape[1] + len(suffix_ids)
            self.base_kv = [
                (layer.keys[:, :, :keep].detach(), layer.values[:, :, :keep].detach())
                for layer in cache.layers
            ]
            self.base_ids = suffix_ids.detach().clone()
        return grad, loss.item()

    def _batch(self, candidates: torch.Tensor, start: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Loss and target match of candidates that all equal the base suffix before `start`."""
        batch = candidates.shape[0]
        tail = self.tail_embeds.expand(batch, -1, -1)
        if self.prefix_kv is None:
            embeds = torch.cat(
                [self.before_embeds.expand(batch, -1, -1), self.embed(candidates), tail], dim=1
            )
            return self._candidate_loss(self._forward(embeds, None, 0)[0])
        kv = self.base_kv if start > 0 else self.prefix_kv
        embeds = torch.cat([self.embed(candidates[:, start:]), tail], dim=1)
        return self._candidate_loss(self._forward(embeds, kv, self.before.shape[1] + start)[0])

    def _chunks(self, candidates: torch.Tensor, first: torch.Tensor, chunks: list[torch.Tensor]):
        """Loss and match of each chunk of rows, in order; on CPU in parallel threads."""

        def work(rows: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            with torch.no_grad():  # grad mode is per thread
                return self._batch(candidates[rows], int(first[rows[0]]))

        workers = torch.get_num_threads()
        if candidates.device.type != "cpu":
            yield from map(work, chunks)
            return
        with onednn_linears():  # oneDNN's float32 GEMM: faster than MKL's here (cpu_linear)
            if workers == 1 or len(chunks) == 1:
                yield from map(work, chunks)
                return
            # One single-threaded forward per core beats splitting every small op over cores.
            torch.set_num_threads(1)
            try:
                with ThreadPoolExecutor(workers) as pool:
                    yield from pool.map(work, chunks)
            finally:
                torch.set_num_threads(workers)

    def losses(self, candidates: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Loss (n,) and greedy-target match (n,) of candidate suffixes (n, suffix_len).

        Rows are sorted by first replaced position and evaluated in batches of `batch_size`;
        on out-of-memory the batch is halved (and stays halved) and the rest is evaluated."""
        candidates = candidates.to(self.embed.weight.device)
        n = candidates.shape[0]
        first = torch.zeros(n, dtype=torch.long, device=candidates.device)
        if self.prefix_kv is not None and self.base_ids is not None:
            differs = candidates != self.base_ids.to(candidates.device)
            first = torch.where(differs.any(1), differs.int().argmax(1), 0)
        order = torch.argsort(first, stable=True)
        losses = torch.empty(n, device=candidates.device)
        matches = torch.zeros(n, dtype=torch.bool, device=candidates.device)
        done = torch.zeros(n, dtype=torch.bool, device=candidates.device)
        while not done.all():
            chunks = list(order[~done[order]].split(self.batch_size))
            try:
                for rows, (loss, match) in zip(
                    chunks, self._chunks(candidates, first, chunks), strict=False
                ):
                    losses[rows], matches[rows], done[rows] = loss, match, True
            except Exception as error:  # noqa: BLE001 - only out-of-memory is handled
                if not is_out_of_memory(error) or self.batch_size == 1:
                    raise
                self.batch_size //= 2
                self.n_oom += 1
                log.warning("out of memory: candidate batch halved to %d", self.batch_size)
                if torch.cuda.is_available():
                    torch.cuda.empty_cache()
        return losses, matches


def default_batch_size(search_width: int, device: torch.device) -> int:
    """Candidates per forward pass when batch_size is 0. CPU: small batches, one per core at a
    time, which also reuse more of the current suffix; GPU: up to 128 (halved on OOM)."""
    if device.type == "cpu":
        return max(1, min(16, math.ceil(search_width / (2 * torch.get_num_threads()))))
    return min(search_width, 128)
