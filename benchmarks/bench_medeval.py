"""Items/s of the medical evaluation on SmolLM2-135M-Instruct, zero-shot MMLU medical items.

lm-eval is our engine, so this compares three ways to score the same items on the same model:
  ours   - lm-eval's HFLM through our wrapper (medical_eval.scoring.loglikelihoods: batched,
           one forward pass per context thanks to its logits cache)
  lmeval - lm-eval's own task pipeline (simple_evaluate) on our local task configs, end to end
  naive  - a plain loop, one unbatched forward pass per choice
and checks that all three pick the same choice for every item. ratio = ours / lm-eval's items/s.

    python benchmarks/bench_medeval.py [--items 50] [--batch-size 8]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # benchmarks.reference


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=50)
    parser.add_argument("--batch-size", type=int, default=8)
    args = parser.parse_args()
    os.environ.setdefault("HF_DATASETS_OFFLINE", "1")

    from benchmarks.reference.lmeval import lmeval_predictions
    from benchmarks.reference.naive import naive_loglikelihoods
    from medsafe_utils.medical_eval.evaluate import eval_items
    from medsafe_utils.medical_eval.prompts import build_requests
    from medsafe_utils.medical_eval.scoring import loglikelihoods, make_engine
    from medsafe_utils.models import load_model

    lm = load_model("smollm2-135m-instruct", dtype="float32")
    items = eval_items(["mmlu_medical"], args.items, seed=0)
    requests = build_requests(items, [(0, 0)])
    engine = make_engine(lm, batch_size=args.batch_size)

    began = time.perf_counter()
    ours = loglikelihoods(engine, requests)
    ours_s = time.perf_counter() - began
    print(f"ours: {ours_s:.1f} s", flush=True)
    with tempfile.TemporaryDirectory() as folder:
        began = time.perf_counter()
        theirs = lmeval_predictions(engine, items, folder).set_index("item_id")
        lmeval_s = time.perf_counter() - began
    print(f"lm-eval pipeline: {lmeval_s:.1f} s", flush=True)
    began = time.perf_counter()
    naive = naive_loglikelihoods(lm, requests)
    naive_s = time.perf_counter() - began

    ours_pred = [int(np.argmax(x)) for x in ours]
    naive_pred = [int(np.argmax(x)) for x in naive]
    lmeval_pred = [int(theirs.loc[r.item_id, "pred"]) for r in requests]
    same = ours_pred == naive_pred == lmeval_pred
    accuracy = float(np.mean([p == r.answer for p, r in zip(ours_pred, requests, strict=True)]))
    max_diff = float(np.max(np.abs(np.concatenate(ours) - np.concatenate(naive))))
    n = len(requests)
    print(
        f"{n} MMLU medical items, zero-shot, batch {args.batch_size}, "
        f"threads {__import__('torch').get_num_threads()}"
    )
    print(
        f"ours (HFLM via our wrapper): {ours_s:.1f} s; lm-eval simple_evaluate: "
        f"{lmeval_s:.1f} s; naive per-choice loop: {naive_s:.1f} s; accuracy {accuracy:.3f}; "
        f"max |ll ours - naive| {max_diff:.2e}"
    )
    print(
        f"RESULT bench_medeval ours_items_s={n / ours_s:.2f} lmeval_items_s={n / lmeval_s:.2f} "
        f"naive_items_s={n / naive_s:.2f} ratio={lmeval_s / ours_s:.2f} "
        f"same_choices={same} accuracy={accuracy:.3f}"
    )


if __name__ == "__main__":
    main()
