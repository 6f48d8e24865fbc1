"""Greedy answers of one local model in several dtypes on the same requests: how many differ.

FIDELITY row 21 (docs/deviations.md): the released code answered in float16, ours in float16 on
a GPU too, but in float32 on a CPU, and bfloat16 with `dtype: auto`. This measures what the
precision alone changes: the same model, prompts, batches and greedy decoding, only the weights'
dtype differs. The smoke profile's requests and token budget (04: 18 + 10 requests, 48 tokens):

    python scripts/dtype_agreement.py --dtypes float32 float16 bfloat16

Row 21 of docs/deviations.md reports `--limit 8 --max-new-tokens 24` (8, one batch, a shared CPU).

Prints one JSON line per pair of dtypes (answers that differ, identical, the first differing
character's mean position) and the seconds each dtype took; no answer text (harmful requests).
Half precisions on a CPU can be much slower than float32 (not on every torch build): try
`--limit 2` first.
"""

from __future__ import annotations

import argparse
import json
import time

import torch

from medsafe_utils.backends import GenerationConfig, HFBackend, generate
from medsafe_utils.models import load_model, release
from medsafe_utils.models.prompting import render_prompt
from medsafe_utils.prompt_models.respond import harm_requests


def answers(model: str, dtype: str, prompts: list[str], config: GenerationConfig) -> list[str]:
    """Greedy answers of `model` loaded in `dtype` (a torch dtype: no CPU fallback), no cache."""
    lm = load_model(model, dtype=getattr(torch, dtype))
    try:
        return generate(HFBackend(lm), prompts, config, cache_path=None, desc=f"{model} {dtype}")
    finally:
        release(lm)


def first_difference(a: str, b: str) -> int:
    """Index of the first character where two answers differ (the shorter's length if a prefix)."""
    return next(
        (i for i, (x, y) in enumerate(zip(a, b, strict=False)) if x != y), min(len(a), len(b))
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="smollm2-135m-instruct")
    parser.add_argument("--dtypes", nargs="+", default=["float32", "float16", "bfloat16"])
    parser.add_argument(
        "--per-group", type=int, default=1, help="MedSafety-Eval requests per stratum"
    )
    parser.add_argument("--n-general", type=int, default=10, help="general-harm requests")
    parser.add_argument("--max-new-tokens", type=int, default=48)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--limit", type=int, default=0, help="n requests spread over the list")
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads; 0: torch's")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    requests = harm_requests(
        ["medsafety_eval", "general"], per_group=args.per_group, n_general=args.n_general
    )
    if args.limit:  # spread over both harm sets: every k-th request
        requests = requests.iloc[:: max(1, len(requests) // args.limit)].head(args.limit)
    config = GenerationConfig(max_new_tokens=args.max_new_tokens, batch_size=args.batch_size)
    # the tokenizer does not depend on the dtype: render once with a float32 load
    lm = load_model(args.model, dtype=torch.float32)
    prompts = [render_prompt(lm.spec, r, lm.tokenizer) for r in requests["request"]]
    release(lm)
    device = "cuda" if torch.cuda.is_available() else f"cpu ({torch.get_num_threads()} threads)"
    print(
        json.dumps(
            {
                "model": args.model,
                "requests": len(prompts),
                "device": device,
                "max_new_tokens": args.max_new_tokens,
            }
        ),
        flush=True,
    )
    found: dict[str, list[str]] = {}
    for dtype in args.dtypes:  # each pair reported as soon as both are done
        start = time.perf_counter()
        found[dtype] = answers(args.model, dtype, prompts, config)
        print(json.dumps({"dtype": dtype, "seconds": round(time.perf_counter() - start, 1)}))
        for other in list(found)[:-1]:
            report(other, dtype, found)


def report(a: str, b: str, found: dict[str, list[str]]) -> None:
    """One JSON line: how many answers of dtypes a and b differ, and where they part."""
    differ = [i for i, (x, y) in enumerate(zip(found[a], found[b], strict=True)) if x != y]
    where = [first_difference(found[a][i], found[b][i]) for i in differ]
    print(
        json.dumps(
            {
                "pair": [a, b],
                "differ": len(differ),
                "identical": len(found[a]) - len(differ),
                "mean_first_difference_chars": round(sum(where) / len(where), 1) if where else None,
            }
        ),
        flush=True,
    )


if __name__ == "__main__":
    main()
