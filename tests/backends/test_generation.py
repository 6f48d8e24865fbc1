"""Local generation: batched equals one-by-one, shared prefixes, the cache skips finished items
(the store itself, and a killed run, are tested in tests/core/test_store.py)."""

import pytest

from medsafe_utils.backends import GenerationConfig, HFBackend, generate
from medsafe_utils.backends.hf import MIN_SHARED_PREFIX, shared_prefix_length
from medsafe_utils.core.store import Store
from medsafe_utils.data import load_medsafetybench
from medsafe_utils.models.prompting import render_prompt


def _prompts(lm, n):
    requests = load_medsafetybench("test")["request"].tolist()[:n]
    return [render_prompt(lm.spec, r, lm.tokenizer) for r in requests]


@pytest.mark.slow
def test_batched_greedy_equals_one_by_one(smollm2):
    prompts = _prompts(smollm2, 6)
    backend = HFBackend(smollm2)
    config = GenerationConfig(max_new_tokens=24, batch_size=6)
    batched = generate(backend, prompts, config)
    single = [backend.generate_batch([p], config)[0] for p in prompts]
    assert batched == single
    assert all(len(text.split()) > 3 for text in batched)
    assert not any("<|im_end|>" in text for text in batched)  # only the new text, no specials


def test_shared_prefix_length():
    assert shared_prefix_length([[1, 2, 3, 4], [1, 2, 5]]) == 2
    assert shared_prefix_length([[1, 2], [1, 2, 3]]) == 1  # each row keeps a token of its own
    assert shared_prefix_length([[7, 1], [8, 1]]) == 0


@pytest.mark.parametrize("model", ["tiny_lm", "smollm2"])
def test_shared_prefix_gives_the_same_text(model, request, monkeypatch):
    lm = request.getfixturevalue(model)
    prompts = _prompts(lm, 5)  # the chat template's system prompt: a long shared prefix
    backend = HFBackend(lm)
    used = []

    def spy(batch):
        inputs, cache = HFBackend._with_shared_prefix(backend, batch)
        used.append((inputs["attention_mask"], cache.get_seq_length()))  # before generate grows it
        return inputs, cache

    monkeypatch.setattr(backend, "_with_shared_prefix", spy)
    config = GenerationConfig(max_new_tokens=12, batch_size=5)
    shared = backend.generate_batch(prompts, config)
    mask, n_prefix = used[0]
    assert n_prefix >= MIN_SHARED_PREFIX and (mask[:, :n_prefix] == 1).all()
    assert (mask[:, n_prefix:] == 0).any()  # prompts of different lengths: padding in between
    config.share_prefix = False
    assert shared == backend.generate_batch(prompts, config)
    assert shared == [backend.generate_batch([p], config)[0] for p in prompts]


def test_tiny_batched_equals_single_and_sampling_is_seeded(tiny_lm):
    prompts = _prompts(tiny_lm, 4)
    backend = HFBackend(tiny_lm)
    greedy = GenerationConfig(max_new_tokens=8, batch_size=4)
    assert generate(backend, prompts, greedy) == [
        backend.generate_batch([p], greedy)[0] for p in prompts
    ]
    sampled = GenerationConfig(max_new_tokens=8, batch_size=4, do_sample=True, seed=3)
    assert generate(backend, prompts, sampled) == generate(backend, prompts, sampled)


def test_cache_skips_finished_items(tiny_lm, tmp_path):
    prompts = _prompts(tiny_lm, 5)
    cache_path = tmp_path / "cache.jsonl"
    config = GenerationConfig(max_new_tokens=6, batch_size=2)
    first = generate(HFBackend(tiny_lm), prompts[:3], config, cache_path=cache_path)

    class Counting(HFBackend):
        seen: list = []

        def run(self, todo, config, on_result):
            self.seen.extend(todo)
            super().run(todo, config, on_result)

    backend = Counting(tiny_lm)
    second = generate(backend, prompts + prompts[:2], config, cache_path=cache_path)
    assert second[:3] == first and second[5:] == first[:2]
    assert backend.seen == prompts[3:]  # only the two new prompts were generated
    assert len(Store(cache_path)) == 5
    # A different setting is a different key: nothing is reused for it.
    other = GenerationConfig(max_new_tokens=7, batch_size=2)
    generate(backend, prompts[:1], other, cache_path=cache_path)
    assert len(Store(cache_path)) == 6
