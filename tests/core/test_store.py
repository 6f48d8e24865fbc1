"""The resumable store: today's keys, the loop (order, duplicates, in memory), damaged lines cost
only themselves, and a killed run resumes without loss or duplicates."""

import json
import logging
import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest

from medsafe_utils.backends import GenerationConfig, HFBackend, generate
from medsafe_utils.core.store import Store, item_key
from medsafe_utils.data import load_medsafetybench
from medsafe_utils.models.prompting import render_prompt


def _compute(path, keys, calls, batch=2):
    """Square each unfinished key's number in batches; count the items computed."""
    with Store(path).resume(keys, "test") as todo:
        for rows in todo.batches(batch):
            for i in rows:
                calls.append(keys[i])
                todo.save(i, {"value": int(keys[i]) ** 2})
    return todo.values("value")


def test_item_key_is_unchanged():
    # Digests of the formula every existing cache was written with (sha256 over sorted JSON).
    assert item_key("m", "r", "harm-filter-probs", "Ünïcode prompt", {"labels": [" 0", " 1"]}) == (
        "93b840c57b241393757eb78184791bea3e3427bded9d9fe185877f788c122138"
    )
    assert item_key(
        "m", "r", "mc-loglikelihood", ["medqa", "x", 0, 1, "ctx", ["A", "B"]], {"b": 1, "a": 2}
    ) == ("f197daadeba918b4ef81f1946e81958b0994b94a04d570725761df804a422ad1")


def test_loop_returns_values_in_order_with_duplicate_keys(tmp_path):
    path = tmp_path / "store.jsonl"
    Store(path).add({"key": "2", "value": 4})
    keys = ["1", "2", "1", "3", "2"]
    with Store(path).resume(keys, "test") as todo:
        assert todo.indices == [0, 3]  # each unfinished key once, at its first position
        assert (todo.bar.total, todo.bar.n) == (3, 1)  # the bar starts at the finished ones
        for i in todo:
            todo.save(i, {"value": int(keys[i]) ** 2})
        assert todo.bar.n == 3
    assert todo.values("value") == [1, 4, 1, 9, 4]
    assert [r["key"] for r in todo.values()] == keys
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    assert lines == [{"key": "2", "value": 4}, {"key": "1", "value": 1}, {"key": "3", "value": 9}]
    calls = []
    assert _compute(path, keys, calls) == [1, 4, 1, 9, 4] and calls == []


def test_values_of_an_unsaved_item_raise(tmp_path):
    with Store().resume(["1", "2"]) as todo:
        todo.save(0, {"value": 1})
    with pytest.raises(KeyError, match="1 of 2 items were not saved"):
        todo.values()


def test_in_memory_store_writes_nothing(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    store = Store(None)
    calls = []
    with store.resume(["1", "2", "1"]) as todo:
        for i in todo:
            calls.append(i)
            todo.save(i, {"value": i})
    assert todo.values("value") == [0, 1, 0] and calls == [0, 1]
    assert len(store) == 2 and "1" in store and store.get("2") == {"key": "2", "value": 1}
    assert list(tmp_path.iterdir()) == []


def test_duplicate_keys_in_the_file_keep_the_first(tmp_path):
    path = tmp_path / "store.jsonl"
    path.write_text('{"key": "a", "v": 1}\n{"key": "a", "v": 2}\n')
    store = Store(path)
    assert len(store) == 1 and store.get("a")["v"] == 1
    store.add({"key": "a", "v": 3})  # a known key is not written again
    assert path.read_text().count("\n") == 2 and store.get("a")["v"] == 1


@pytest.mark.parametrize(
    "damage", [b'{"key": "3", "val', b"\xff\xfe not utf-8", b'{"no": "key"}', b"[1, 2]", b""]
)
def test_a_damaged_line_in_the_middle_costs_only_that_line(tmp_path, caplog, damage):
    path = tmp_path / "store.jsonl"
    keys = [str(n) for n in range(1, 7)]
    calls = []
    assert _compute(path, keys, calls) == [1, 4, 9, 16, 25, 36] and calls == keys
    lines = path.read_bytes().splitlines(keepends=True)
    path.write_bytes(b"".join([*lines[:2], damage + b"\n", *lines[3:]]))  # line 3 is damaged
    calls.clear()
    with caplog.at_level(logging.WARNING):
        assert _compute(path, keys, calls) == [1, 4, 9, 16, 25, 36]
    assert calls == ["3"]  # later records were read, not computed again
    assert f"{path}:3: dropping a torn or damaged line" in caplog.text
    records = [json.loads(line) for line in path.read_text().splitlines()]  # every line reads
    assert sorted(r["key"] for r in records) == sorted(keys)
    calls.clear()
    assert _compute(path, keys, calls) == [1, 4, 9, 16, 25, 36] and calls == []


def test_torn_last_line_is_dropped(tmp_path, caplog):
    path = tmp_path / "cache.jsonl"
    good = json.dumps({"key": "a", "output": "x"}) + "\n"
    path.write_text(good + '{"key": "b", "outp')
    cache = Store(path)
    assert "a" in cache and "b" not in cache and len(cache) == 1
    assert path.read_text() == good and f"{path}:2" in caplog.text and "torn" in caplog.text
    cache.add({"key": "b", "output": "y"})
    cache.add({"key": "a", "output": "dup"})
    lines = path.read_text().splitlines()
    assert [json.loads(line)["key"] for line in lines] == ["a", "b"]


def test_a_whole_last_line_without_newline_is_kept_and_ended(tmp_path):
    path = tmp_path / "store.jsonl"
    path.write_text('{"key": "a", "v": 1}\n{"key": "b", "v": 2}')
    store = Store(path)
    assert len(store) == 2
    store.add({"key": "c", "v": 3})
    assert [json.loads(line)["key"] for line in path.read_text().splitlines()] == ["a", "b", "c"]


def _prompts(lm, n):
    requests = load_medsafetybench("test")["request"].tolist()[:n]
    return [render_prompt(lm.spec, r, lm.tokenizer) for r in requests]


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
    errors = tmp_path / "stderr.txt"
    with errors.open("w") as stderr:
        proc = subprocess.Popen(
            [sys.executable, str(script), str(cache_path)],
            env=os.environ.copy(),
            stdout=subprocess.DEVNULL,
            stderr=stderr,
        )
    deadline = time.time() + 120
    while time.time() < deadline:
        if cache_path.exists() and len(cache_path.read_text().splitlines()) >= 6:
            break
        # a run that died before its sixth item (an import, a model) says why, at once
        assert proc.poll() is None, f"the run exited first: {errors.read_text()[-2000:]}"
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    killed_at = len(Store(cache_path))
    assert 6 <= killed_at < 24, "the run was killed mid-way"

    prompts = _prompts(tiny_lm, 24)
    config = GenerationConfig(max_new_tokens=6, batch_size=2)
    resumed = generate(HFBackend(tiny_lm), prompts, config, cache_path=cache_path)
    fresh = generate(HFBackend(tiny_lm), prompts, config)
    assert resumed == fresh
    keys = [json.loads(line)["key"] for line in cache_path.read_text().splitlines()]
    assert len(keys) == len(set(keys)) == 24
