"""Items/s of the medical evaluation on SmolLM2-135M-Instruct, zero-shot MMLU medical items.

lm-eval is our engine, so this compares three ways to score the same items on the same model:
  ours   - lm-eval's HFLM through our wrapper (medical_eval.scoring.loglikelihoods: batched,
           one forward pass per context thanks to its logits cache), requests built beforehand
  lmeval - lm-eval's own `evaluate` on our local task configs, the tasks and their data built
           beforehand (writing JSONL, loading it with `datasets`, building tasks is not timed);
           it builds the requests from the task templates, scores them, computes the metrics
  naive  - a plain loop, one unbatched forward pass per choice
and checks that all three pick the same choice for every item (exit 1 otherwise).

ours and lmeval run the same engine on the same requests, so ratio (ours / lm-eval items/s)
measures only what lm-eval's evaluate adds around the scoring (templating, bookkeeping,
metrics): expect about 1, not a speed-up of the model work. ratio_naive is the batching gain.
Each side is warmed up once, then timed over --repeats rounds in a rotated order.

    python benchmarks/bench_medeval.py [--items 50] [--batch-size 8] [--repeats 3]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks.harness import Bench, compare, figures, load_note, paired_ratios, rates  # noqa: E402


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=50)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=3, help="timed rounds, rotated order")
    parser.add_argument("--model", default="smollm2-135m-instruct")
    args = parser.parse_args(argv)
    os.environ.setdefault("HF_DATASETS_OFFLINE", "1")

    import torch

    from benchmarks.reference.lmeval import lmeval_scores, lmeval_tasks
    from benchmarks.reference.naive import naive_loglikelihoods
    from medsafe_utils.medical_eval.evaluate import eval_items
    from medsafe_utils.medical_eval.prompts import build_requests
    from medsafe_utils.medical_eval.scoring import loglikelihoods, make_engine
    from medsafe_utils.models import load_model

    bench = Bench("bench_medeval")
    lm = load_model(args.model, dtype="float32")
    items = eval_items(["mmlu_medical"], args.items, seed=0)
    requests = build_requests(items, [(0, 0)])
    engine = make_engine(lm, batch_size=args.batch_size)
    with tempfile.TemporaryDirectory() as folder:
        tasks = lmeval_tasks(items, folder)  # setup, not timed
        runs = compare(
            {
                "ours": lambda: loglikelihoods(engine, requests),
                "lmeval": lambda: lmeval_scores(engine, tasks),
                "naive": lambda: naive_loglikelihoods(lm, requests),
            },
            args.repeats,
        )

    ours, naive = runs["ours"][0].output, runs["naive"][0].output
    theirs = runs["lmeval"][0].output.set_index("item_id")
    ours_pred = [int(np.argmax(x)) for x in ours]
    naive_pred = [int(np.argmax(x)) for x in naive]
    lmeval_pred = [int(theirs.loc[r.item_id, "pred"]) for r in requests]
    differ = sum(
        not (a == b == c) for a, b, c in zip(ours_pred, naive_pred, lmeval_pred, strict=True)
    )
    same = bench.check(
        "same_choices", differ == 0, f"{differ} of {len(requests)} items differ between sides"
    )
    accuracy = float(np.mean([p == r.answer for p, r in zip(ours_pred, requests, strict=True)]))
    max_diff = float(np.max(np.abs(np.concatenate(ours) - np.concatenate(naive))))
    n = len(requests)
    print(
        f"{n} MMLU medical items, zero-shot, batch {args.batch_size}, threads "
        f"{torch.get_num_threads()}; max |ll ours - naive| {max_diff:.2e}; {load_note()}"
    )
    ours_rates = rates(runs["ours"], n)
    lmeval_rates = rates(runs["lmeval"], n)
    naive_rates = rates(runs["naive"], n)
    bench.finish(
        **figures("ours_items_s", ours_rates),
        **figures("lmeval_items_s", lmeval_rates),
        **figures("naive_items_s", naive_rates),
        **figures("ratio", paired_ratios(ours_rates, lmeval_rates)),
        **figures("ratio_naive", paired_ratios(ours_rates, naive_rates)),
        same_choices=same,
        accuracy=f"{accuracy:.3f}",
        items=n,
        repeats=args.repeats,
    )


if __name__ == "__main__":
    main()
