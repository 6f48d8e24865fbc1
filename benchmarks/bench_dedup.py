"""Near-duplicate detection on the Llama-3 requests: MiniLM embedding throughput on this CPU,
the greedy near-duplicate pass, and the time the full 74,374 would take (extrapolated linearly
for embeddings; the pass is measured on the sample and scales with n x kept).

One side, no peer: embedding and the pass are each warmed up, then timed over --repeats runs
(median, min..max). Checked (exit 1 otherwise): every repeat embeds to the same vectors (1e-5)
and the pass flags the same requests, so a resumed 01 run would dedupe the same way.

    python benchmarks/bench_dedup.py [--n 2000] [--batch-size 128] [--repeats 3]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks.harness import Bench, compare, figures, load_note, rates  # noqa: E402
from medsafe_utils.data import load_llama3_requests  # noqa: E402
from medsafe_utils.generate.dedup import (  # noqa: E402
    DedupConfig,
    deduplicate,
    embed,
    embedding_model,
    exact_duplicates,
)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=2000, help="requests embedded")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--threshold", type=float, default=0.9)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)
    bench = Bench("bench_dedup")

    requests = load_llama3_requests()
    texts = requests.sample(args.n, random_state=0)["request"].tolist()
    began = time.perf_counter()
    embedding_model()
    load_s = time.perf_counter() - began

    embeds = compare(
        {"embed": lambda: embed(texts, args.batch_size, False)},
        args.repeats,
        warmups={"embed": lambda: embed(texts[: args.batch_size], args.batch_size, False)},
    )["embed"]
    vectors = embeds[0].output
    config = DedupConfig(threshold=args.threshold)
    passes = compare({"near": lambda: deduplicate(texts, config, vectors=vectors)}, args.repeats)
    passes = passes["near"]
    bench.check(
        "same_vectors",
        all(np.allclose(r.output, vectors, atol=1e-5) for r in embeds),
        "every repeat embeds to the same vectors",
    )
    near = passes[0].output.near
    bench.check(
        "same_near_duplicates",
        all(np.array_equal(r.output.near, near) for r in passes),
        "every repeat flags the same requests",
    )

    began = time.perf_counter()
    exact_all = int(exact_duplicates(requests["request"].tolist())[0].sum())
    exact_all_s = time.perf_counter() - began

    per_s = rates(embeds, args.n)
    full_min = [len(requests) / r / 60 for r in per_s]
    print(
        f"n={args.n} threads={torch.get_num_threads()} load_s={load_s:.1f} "
        f"near_dups={int(near.sum())} exact_dups_all={exact_all} "
        f"exact_pass_all_s={exact_all_s:.2f}; {load_note()}"
    )
    bench.finish(
        n=args.n,
        **figures("sentences_per_s", per_s),
        **figures(f"est_full_{len(requests)}_embed_min", full_min, 2),
        **figures("near_pass_s", [r.seconds for r in passes], 2),
        near_dup_rate=f"{near.mean():.3f}",
        exact_dups_all=exact_all,
        repeats=args.repeats,
    )


if __name__ == "__main__":
    main()
