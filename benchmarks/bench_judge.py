"""Judge throughput: our async openai judge (concurrency 32, retries, cache) against the original
way (one synchronous request at a time, retried by hand), on one local OpenAI-compatible server.

The server (a separate process on 127.0.0.1, written here with aiohttp) answers each chat
completion after a fixed 100 ms with a well-formed judgment whose score is derived from the item
(so a mixed-up or lost item is caught), and fails 10% of requests with HTTP 429 or 500.

Each side is warmed up on 10 items, then timed over --repeats runs in a rotated order (ours with
a fresh cache each time). Every run must return every item once with its right score: a lost or
duplicated item makes the script exit 1.

    python benchmarks/bench_judge.py [--n 500] [--n-sequential 100] [--concurrency 32]
"""

from __future__ import annotations

import argparse
import itertools
import json
import multiprocessing
import random
import re
import socket
import sys
import tempfile
import time
from pathlib import Path

import openai
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks.harness import Bench, Measured, compare, figures, load_note, paired_ratios, rates  # noqa: E402
from medsafe_utils.judge.judging import JudgeConfig, judge_prompt, judge_responses, parse_judgment  # noqa: E402

DELAY_S, FAIL_RATE = 0.1, 0.10


def expected_score(item: int) -> int:
    """The score the server gives item `item`."""
    return item % 5 + 1


def serve(port: int, seed: int) -> None:
    """The benchmark's OpenAI-compatible server (runs in its own process)."""
    import asyncio

    from aiohttp import web

    rng = random.Random(seed)

    async def chat(request):
        body = await request.json()
        item = int(re.search(r"bench item (\d+)", body["messages"][-1]["content"]).group(1))
        await asyncio.sleep(DELAY_S)
        if rng.random() < FAIL_RATE:
            status = rng.choice([429, 500])
            return web.json_response({"error": {"message": f"scripted {status}"}}, status=status)
        content = (
            f"#reason: (a) ... (d) scripted analysis of item {item}.\n"
            f"#score: {expected_score(item)}"
        )
        return web.json_response(
            {
                "id": f"c{item}",
                "object": "chat.completion",
                "created": 0,
                "model": body["model"],
                "choices": [
                    {
                        "index": 0,
                        "finish_reason": "stop",
                        "message": {"role": "assistant", "content": content},
                    }
                ],
                "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
            }
        )

    async def models(_request):
        return web.json_response({"object": "list", "data": [{"id": "bench-judge"}]})

    app = web.Application()
    app.router.add_post("/v1/chat/completions", chat)
    app.router.add_get("/v1/models", models)
    web.run_app(app, host="127.0.0.1", port=port, print=None, access_log=None)


def free_port() -> int:
    """An unused TCP port on 127.0.0.1."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_until_up(base_url: str, seconds: float = 30) -> None:
    """Block until the server lists its models."""
    client = openai.OpenAI(base_url=base_url, api_key="EMPTY", max_retries=0, timeout=2)
    deadline = time.time() + seconds
    while True:
        try:
            client.models.list()
            return
        except openai.APIConnectionError:
            if time.time() > deadline:
                raise
            time.sleep(0.2)


def items(n: int) -> pd.DataFrame:
    """n responses to judge, each naming its item number."""
    return pd.DataFrame(
        {
            "model": "bench",
            "harm_set": "medsafety_eval",
            "item_id": range(n),
            "request": "Write a fake prescription.",
            "response": [f"bench item {i}: Sure, here it is." for i in range(n)],
        }
    )


def check(item_ids: list[int], scores: list, n: int) -> tuple[int, int]:
    """(lost, duplicated): items without their right score, and items judged more than once."""
    counts = pd.Series(item_ids).value_counts()
    duplicated = int((counts - 1).clip(lower=0).sum())
    right = {i for i, s in zip(item_ids, scores, strict=True) if s == expected_score(i)}
    return n - len(right & set(range(n))), duplicated


def run_ours(base_url: str, n: int, concurrency: int, cache: Path) -> Measured:
    """judge_responses through the async OpenAI backend; output (lost, duplicated, client CPU
    ms per item)."""
    config = JudgeConfig(
        "openai",
        "bench-judge",
        base_url=base_url,
        api_key_env="NO_KEY_NEEDED",
        concurrency=concurrency,
        backoff_base=0.05,
        max_retries=10,
    )
    began, cpu = time.perf_counter(), time.process_time()
    judged = judge_responses(items(n), config, cache)
    seconds, cpu = time.perf_counter() - began, time.process_time() - cpu
    keys = [json.loads(line)["key"] for line in cache.read_text().splitlines()]
    lost, duplicated = check(judged["item_id"].tolist(), judged["score"].tolist(), n)
    return Measured(seconds, (lost, duplicated + len(keys) - len(set(keys)), 1000 * cpu / n))


def run_sequential(base_url: str, n: int) -> tuple[int, int]:
    """The original way: one synchronous call after another; (lost, duplicated)."""
    client = openai.OpenAI(base_url=base_url, api_key="EMPTY", max_retries=0)
    data, scores = items(n), []
    for question, response in zip(data["request"], data["response"], strict=True):
        messages = [
            {"role": "system", "content": "You are a helpful assistant."},
            {"role": "user", "content": judge_prompt(question, response)},
        ]
        for attempt in range(11):  # its own retry, the same backoff as ours
            try:
                reply = client.chat.completions.create(
                    model="bench-judge", messages=messages, temperature=0, max_tokens=512
                )
                break
            except (openai.RateLimitError, openai.InternalServerError):
                time.sleep(0.05 * 2**attempt * random.uniform(0.5, 1.0))
        else:
            raise RuntimeError("a request failed 11 times")
        scores.append(parse_judgment(reply.choices[0].message.content, response).score)
    return check(data["item_id"].tolist(), scores, n)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=500, help="judgments through our backend")
    parser.add_argument("--n-sequential", type=int, default=100, help="judgments one at a time")
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=3, help="timed runs per side, rotated")
    args = parser.parse_args(argv)
    bench = Bench("bench_judge")
    port = free_port()
    server = multiprocessing.Process(target=serve, args=(port, 0), daemon=True)
    server.start()
    base_url = f"http://127.0.0.1:{port}/v1"
    caches = itertools.count()
    try:
        wait_until_up(base_url)
        with tempfile.TemporaryDirectory() as tmp:

            def ours(n: int) -> Measured:
                cache = Path(tmp) / f"c{next(caches)}.jsonl"
                return run_ours(base_url, n, args.concurrency, cache)

            runs = compare(
                {
                    "ours": lambda: ours(args.n),
                    "sequential": lambda: run_sequential(base_url, args.n_sequential),
                },
                args.repeats,
                warmups={
                    "ours": lambda: ours(10),
                    "sequential": lambda: run_sequential(base_url, 10),
                },
            )
    finally:
        server.terminate()
        server.join(timeout=10)
    lost = sum(r.output[0] for side in runs.values() for r in side)
    duplicated = sum(r.output[1] for side in runs.values() for r in side)
    bench.check("none_lost", lost == 0, f"{lost} item(s) without their right score")
    bench.check("none_duplicated", duplicated == 0, f"{duplicated} item(s) judged twice")
    ours_rates = rates(runs["ours"], args.n)
    seq_rates = rates(runs["sequential"], args.n_sequential)
    cpu_ms = sorted(r.output[2] for r in runs["ours"])[len(runs["ours"]) // 2]
    print(
        f"ours: {args.n} judgments, concurrency {args.concurrency} ({cpu_ms:.1f} ms client CPU "
        f"per item); sequential: {args.n_sequential} judgments one at a time (its items/s "
        f"extrapolates to {args.n}); server: {DELAY_S * 1000:.0f} ms per answer, "
        f"{FAIL_RATE:.0%} of requests fail with 429 or 500; {load_note()}"
    )
    bench.finish(
        **figures("ours_items_s", ours_rates),
        **figures("sequential_items_s", seq_rates),
        **figures("ratio", paired_ratios(ours_rates, seq_rates)),
        lost=lost,
        duplicated=duplicated,
        repeats=args.repeats,
    )


if __name__ == "__main__":
    main()
