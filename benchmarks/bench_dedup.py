"""Near-duplicate detection on the Llama-3 requests: MiniLM embedding throughput on this CPU,
the greedy near-duplicate pass, and the time the full 74,374 would take (extrapolated linearly
for embeddings; the pass is measured on the sample and scales with n x kept).

    python benchmarks/bench_dedup.py [--n 2000] [--batch-size 128]
"""

from __future__ import annotations

import argparse
import time

import torch

from medsafe_utils.data import load_llama3_requests
from medsafe_utils.generate.dedup import (
    DedupConfig,
    deduplicate,
    embed,
    embedding_model,
    exact_duplicates,
)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=2000, help="requests embedded")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--threshold", type=float, default=0.9)
    args = parser.parse_args()

    requests = load_llama3_requests()
    texts = requests.sample(args.n, random_state=0)["request"].tolist()
    began = time.perf_counter()
    embedding_model()
    load_s = time.perf_counter() - began

    began = time.perf_counter()
    vectors = embed(texts, args.batch_size, progress=False)
    embed_s = time.perf_counter() - began

    began = time.perf_counter()
    result = deduplicate(texts, DedupConfig(threshold=args.threshold), vectors=vectors)
    near_s = time.perf_counter() - began

    began = time.perf_counter()
    exact_all = int(exact_duplicates(requests["request"].tolist())[0].sum())
    exact_all_s = time.perf_counter() - began

    rate = args.n / embed_s
    full_embed_s = len(requests) / rate
    print(
        f"n={args.n} threads={torch.get_num_threads()} load_s={load_s:.1f} "
        f"embed_s={embed_s:.1f} near_pass_s={near_s:.2f} near_dups={int(result.near.sum())} "
        f"exact_dups_all={exact_all} exact_pass_all_s={exact_all_s:.2f}"
    )
    print(
        f"RESULT bench_dedup n={args.n} sentences_per_s={rate:.1f} "
        f"est_full_74374_embed_min={full_embed_s / 60:.1f} near_pass_s={near_s:.2f} "
        f"near_dup_rate={result.near.mean():.3f} exact_dups_all={exact_all}"
    )


if __name__ == "__main__":
    main()
