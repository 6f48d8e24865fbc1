"""Fine-tuning throughput on CPU: the original recipe's batching against ours.

Both arms train LoRA (r=8 on q/v) on SmolLM2-135M-Instruct with 4-bit NF4 weights and float32
compute, on the same safety demonstrations (the first N of the published 'both' n200 split),
for the same epochs and the same effective batch (demonstrations per optimizer step).

- original: as alpaca-lora ran it: micro-batches of 4 in random order, each padded to its
  longest demonstration (to a multiple of 8), gradient checkpointing on (the default of peft's
  prepare_model_for_int8_training, which the original called).
- ours: length-grouped micro-batches (Trainer's group_by_length: each effective batch is still a
  random draw, only its micro-batches are formed from similar lengths, so little padding), larger
  micro-batches with less accumulation (the same loss: transformers normalizes by the tokens of
  the whole effective batch), no gradient checkpointing (a 135M model has memory to spare).

tokens/s counts only real (non-pad) tokens, over the training loop of each arm (wall clock; the
tokens per CPU-second beside it are steadier when other jobs share the cores).

    python benchmarks/bench_finetune.py            # ~4 minutes on 2 quiet cores
"""

from __future__ import annotations

import argparse
import logging
import os
import tempfile

from medsafe_utils.finetune.alpaca import demonstration_split
from medsafe_utils.finetune.qlora import QLoRAConfig, train

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


def run_arm(name: str, demos, args, root: str) -> tuple[float, float]:
    """Train one arm; returns its non-pad training tokens per second (wall, CPU)."""
    config = QLoRAConfig(
        "smollm2-135m-instruct",
        output_dir=os.path.join(root, name),
        batch_size=args.batch_size,
        num_epochs=args.epochs,
        warmup_steps=0,
        max_steps=-1,
        eval_n=0,
        save_steps=10_000,
        load_in_4bit=True,
        compute_dtype="float32",
        seed=args.seed,
        **ARMS[name],
    )
    result = train(config, demos)
    per_cpu_s = result.train_tokens / result.cpu_s
    print(
        f"{name}: {result.train_tokens} tokens in {result.wall_s:.1f} s = "
        f"{result.tokens_per_s:.1f} tok/s; {per_cpu_s:.1f} tokens per CPU-second "
        f"({result.steps} steps, {ARMS[name]})",
        flush=True,
    )
    return result.tokens_per_s, per_cpu_s


def main() -> None:
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
    parser.add_argument("--breakdown", action="store_true", help="also time length grouping alone")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    demos = demonstration_split("both", 200, take=args.n)
    with tempfile.TemporaryDirectory() as root:
        original = run_arm("original", demos, args, root)
        if args.breakdown:
            grouped = run_arm("grouped", demos, args, root)
            print(
                f"length grouping alone: {grouped[0] / original[0]:.2f}x "
                f"(per CPU-second {grouped[1] / original[1]:.2f}x)",
                flush=True,
            )
        ours = run_arm("ours", demos, args, root)
    print(
        f"tokens per CPU-second: ours {ours[1]:.1f}, original {original[1]:.1f}, "
        f"ratio {ours[1] / original[1]:.2f}"
    )
    print(
        f"RESULT bench_finetune ours_tok_s={ours[0]:.1f} original_tok_s={original[0]:.1f} "
        f"ratio={ours[0] / original[0]:.2f}"
    )


if __name__ == "__main__":
    main()
