"""Local generation: batched equals one-by-one, the cache resumes a killed run exactly."""

import json
import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest

from medsafe_utils.backends import GenerationCache, GenerationConfig, HFBackend, generate
from medsafe_utils.backends.hf import MIN_SHARED_PREFIX, shared_prefix_length
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
    assert len(GenerationCache(cache_path)) == 5
    # A different setting is a different key: nothing is reused for it.
    other = GenerationConfig(max_new_tokens=7, batch_size=2)
    generate(backend, prompts[:1], other, cache_path=cache_path)
    assert len(GenerationCache(cache_path)) == 6


def test_torn_last_line_is_dropped(tmp_path, caplog):
    path = tmp_path / "cache.jsonl"
    good = json.dumps({"key": "a", "output": "x"}) + "\n"
    path.write_text(good + '{"key": "b", "outp')
    cache = GenerationCache(path)
    assert "a" in cache and "b" not in cache and len(cache) == 1
    assert path.read_text() == good and "torn" in caplog.text
    cache.append([{"key": "b", "output": "y"}, {"key": "a", "output": "dup"}])
    lines = path.read_text().splitlines()
    assert [json.loads(line)["key"] for line in lines] == ["a", "b"]


KILL_SCRIPT = textwrap.dedent("""
    import sys, time
    from medsafe_utils.data import load_medsafetybench
    from medsafe_utils.backends import GenerationConfig, HFBackend, generate
    from medsafe_utils.models import load_model
    from medsafe_utils.models.prompting import render_prompt

    class Slow(HFBackend):
        def generate_batch(self, prompts, config):
            time.sleep(0.4)
            return super().generate_batch(prompts, config)

    lm = load_model("tiny-random")
    requests = load_medsafetybench("test")["request"].tolist()[:24]
    prompts = [render_prompt(lm.spec, r, lm.tokenizer) for r in requests]
    config = GenerationConfig(max_new_tokens=6, batch_size=2)
    generate(Slow(lm), prompts, config, cache_path=sys.argv[1])
""")


def test_killed_run_resumes_without_loss_or_duplicates(tiny_lm, tmp_path):
    cache_path = tmp_path / "cache.jsonl"
    script = tmp_path / "run.py"
    script.write_text(KILL_SCRIPT)
    proc = subprocess.Popen(
        [sys.executable, str(script), str(cache_path)],
        env=os.environ.copy(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.time() + 120
    while time.time() < deadline:
        if cache_path.exists() and len(cache_path.read_text().splitlines()) >= 6:
            break
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    killed_at = len(GenerationCache(cache_path))
    assert 6 <= killed_at < 24, "the run was killed mid-way"

    prompts = _prompts(tiny_lm, 24)
    config = GenerationConfig(max_new_tokens=6, batch_size=2)
    resumed = generate(HFBackend(tiny_lm), prompts, config, cache_path=cache_path)
    fresh = generate(HFBackend(tiny_lm), prompts, config)
    assert resumed == fresh
    keys = [json.loads(line)["key"] for line in cache_path.read_text().splitlines()]
    assert len(keys) == len(set(keys)) == 24
