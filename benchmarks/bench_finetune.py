"""Fine-tuning throughput on CPU: the original recipe's batching against ours, and their loss.

Both arms train LoRA (r=8 on q/v) on SmolLM2-135M-Instruct with 4-bit NF4 weights and float32
compute, on the same safety demonstrations (the first N of the published 'both' n200 split),
for the same epochs and the same effective batch (demonstrations per optimizer step).

- original: as alpaca-lora ran it: micro-batches of 4 in random order, each padded to its
  longest demonstration (to a multiple of 8), gradient checkpointing on (the default of peft's
  prepare_model_for_int8_training, which the original called).
- ours: length-grouped micro-batches (Trainer's group_by_length: each effective batch is still a
  random draw, only its micro-batches are formed from similar lengths, so little padding), larger
  micro-batches with less accumulation, no gradient checkpointing (a 135M model has memory to
  spare).

The same loss: transformers normalizes the loss by the tokens of the whole effective batch, so
the first optimizer step's training loss, where both arms see the same demonstrations (one
effective batch of all N, hence --n at most --batch-size) with the same starting weights, must
agree up to float rounding: other padding and batch shapes change only the order of float32
sums (~1e-6 relative). The script exits 1 beyond --loss-rtol (1e-3), far above that rounding
and below what a per-micro-batch mean would give (micro-batches of other lengths weigh their
tokens differently). Later steps are not compared: LoRA dropout draws other masks in other
micro-batches, so the weights part slightly after step 1.

tokens/s counts only real (non-pad) tokens, over the training loop of each arm (wall clock;
model loading is not timed; tokens per CPU-second are reported beside it, steadier when other
jobs share the cores). Each arm is warmed up on one small effective batch, then
timed over --repeats runs in a rotated order.

    python benchmarks/bench_finetune.py            # ~15 minutes on 2 quiet cores
"""

from __future__ import annotations

import argparse
import itertools
import logging
import math
import os
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks.harness import (  # noqa: E402
    Bench,
    Measured,
    compare,
    figures,
    fmt,
    load_note,
    paired_ratios,
)
from medsafe_utils.finetune.alpaca import demonstration_split  # noqa: E402
from medsafe_utils.finetune.qlora import QLoRAConfig, QLoRAResult, train  # noqa: E402

ARMS = {
    "original": dict(
        group_by_length=False, micro_batch_size=4, gradient_checkpointing=True, pad_to_multiple_of=8
    ),
    "grouped": dict(
        group_by_length=True, micro_batch_size=4, gradient_checkpointing=True, pad_to_multiple_of=8
    ),  # --breakdown: the length grouping alone
    "ours": dict(
        group_by_length=True, micro_batch_size=8, gradient_checkpointing=False, pad_to_multiple_of=0
    ),
}
_runs = itertools.count()


def run_arm(name: str, demos, args, root: str, batch_size: int) -> Measured:
    """Train one arm into a fresh folder; its training loop's wall time and the result."""
    settings = dict(
        output_dir=os.path.join(root, f"{name}-{next(_runs)}"),
        batch_size=batch_size,
        num_epochs=args.epochs,
        warmup_steps=0,
        max_steps=-1,
        cutoff_len=args.cutoff_len,
        eval_n=0,
        save_steps=10_000,
        load_in_4bit=not args.no_4bit,
        compute_dtype="float32",
        seed=args.seed,
    )
    result = train(QLoRAConfig(args.model, **{**settings, **ARMS[name]}), demos)
    return Measured(result.wall_s, result, result.cpu_s)


def first_loss(result: QLoRAResult) -> float:
    """The training loss of the first optimizer step."""
    return result.loss_curve[0]["loss"] if result.loss_curve else math.nan


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--n",
        type=int,
        default=128,
        help="demonstrations (128: one effective batch, as grouped by Trainer)",
    )
    parser.add_argument("--epochs", type=float, default=1)
    parser.add_argument(
        "--batch-size",
        type=int,
        default=128,
        help="demonstrations per optimizer step (the paper: 128)",
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--repeats", type=int, default=3, help="timed runs per arm, rotated")
    parser.add_argument("--loss-rtol", type=float, default=1e-3, help="first-step loss tolerance")
    parser.add_argument("--cutoff-len", type=int, default=256, help="tokens per demonstration")
    parser.add_argument("--model", default="smollm2-135m-instruct")
    parser.add_argument("--no-4bit", action="store_true", help="float32 weights (tests)")
    parser.add_argument("--breakdown", action="store_true", help="also time length grouping alone")
    args = parser.parse_args(argv)
    if args.n > args.batch_size:  # more steps: the arms' samplers draw other first batches
        parser.error("--n must not exceed --batch-size: the loss check needs one effective batch")
    logging.basicConfig(level=logging.WARNING)
    bench = Bench("bench_finetune")
    demos = demonstration_split("both", 200, take=args.n)
    arms = ["original", "grouped", "ours"] if args.breakdown else ["original", "ours"]
    warm = min(16, args.batch_size)  # one small effective batch per arm: kernels, allocations
    with tempfile.TemporaryDirectory() as root:
        runs = compare(
            {a: lambda a=a: run_arm(a, demos, args, root, args.batch_size) for a in arms},
            args.repeats,
            warmups={a: lambda a=a: run_arm(a, demos.head(warm), args, root, warm) for a in arms},
        )
    results = {a: [r.output for r in runs[a]] for a in arms}
    tok_s = {a: [r.train_tokens / r.wall_s for r in results[a]] for a in arms}
    cpu_tok_s = {a: [r.train_tokens / r.cpu_s for r in results[a]] for a in arms}
    loss = {a: first_loss(results[a][0]) for a in arms}
    for a in arms:
        print(
            f"{a}: {results[a][0].train_tokens} tokens, {results[a][0].steps} steps, first-step "
            f"loss {loss[a]:.6f}; tok/s per repeat {[round(x, 1) for x in tok_s[a]]}; per "
            f"CPU-second {[round(x, 1) for x in cpu_tok_s[a]]} ({ARMS[a]})",
            flush=True,
        )
    if args.breakdown:
        grouping = paired_ratios(tok_s["grouped"], tok_s["original"])
        print(f"length grouping alone: {fmt(sorted(grouping)[len(grouping) // 2])}x", flush=True)
    rel = abs(loss["ours"] - loss["original"]) / abs(loss["original"])
    bench.check(
        "same_loss",
        rel <= args.loss_rtol,  # NaN (no loss logged) fails too
        f"first-step loss ours {loss['ours']:.6f}, original {loss['original']:.6f}, relative "
        f"difference {rel:.1e}, tolerance {args.loss_rtol:.0e}",
    )
    print(load_note())
    bench.finish(
        **figures("ours_tok_s", tok_s["ours"]),
        **figures("original_tok_s", tok_s["original"]),
        **figures("ratio", paired_ratios(tok_s["ours"], tok_s["original"])),
        **figures("ratio_cpu", paired_ratios(cpu_tok_s["ours"], cpu_tok_s["original"])),
        ours_loss=f"{loss['ours']:.6f}",
        original_loss=f"{loss['original']:.6f}",
        loss_rel_diff=f"{rel:.1e}",
        repeats=args.repeats,
    )


if __name__ == "__main__":
    main()
