"""Generation throughput: our batched backend against one-prompt-at-a-time transformers pipeline
calls (the original code's way), on the same MedSafety-Eval prompts, SmolLM2, greedy, CPU.

Each side is warmed up on two prompts, then timed over `--repeats` rounds in a rotated order;
the figures are medians with their min..max range. Greedy decoding must give both sides the
same text for every prompt: otherwise the script exits 1.

    python benchmarks/bench_generation.py [--n 32] [--batch-size 16] [--max-new-tokens 64]

On a GPU, `--model llama2-7b-chat` (any registry key, hub id or path) measures the decoding
throughput that `python -m scripts.workload paper --decode-tok-s ...` turns into hours.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch
from transformers import pipeline

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks.harness import Bench, compare, figures, load_note, paired_ratios, rates  # noqa: E402
from medsafe_utils.backends import GenerationConfig, HFBackend, generate  # noqa: E402
from medsafe_utils.data import load_medsafetybench  # noqa: E402
from medsafe_utils.models import load_model  # noqa: E402
from medsafe_utils.models.prompting import render_prompt  # noqa: E402


def count_tokens(tokenizer, texts: list[str]) -> int:
    """Generated tokens, counted by re-encoding the new text (the same rule for both sides)."""
    return sum(len(tokenizer(t, add_special_tokens=False).input_ids) for t in texts)


def baseline_outputs(pipe, prompts: list[str], max_new_tokens: int) -> list[str]:
    """The original way: one prompt at a time through a transformers pipeline."""
    return [
        pipe(p, max_new_tokens=max_new_tokens, do_sample=False, return_full_text=False)[0][
            "generated_text"
        ].strip()
        for p in prompts
    ]


def ours_outputs(lm, prompts: list[str], config: GenerationConfig) -> list[str]:
    """Ours: batched, sorted by length, the shared prompt prefix encoded once."""
    return generate(HFBackend(lm), prompts, config, desc="ours")


def prefill(lm, prompts: list[str]) -> float:
    """One padded forward pass over `prompts`, no generation; returns its prompt tokens."""
    encoded = lm.tokenizer(prompts, return_tensors="pt", padding=True, add_special_tokens=False).to(
        lm.model.device
    )
    with torch.inference_mode():
        lm.model(**encoded, logits_to_keep=1)
    return int(encoded["attention_mask"].sum())


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=32, help="prompts")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--max-new-tokens", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=3, help="timed rounds, rotated order")
    parser.add_argument("--model", default="smollm2-135m-instruct")
    parser.add_argument("--load-in-4bit", action="store_true", help="NF4 weights (GPU)")
    args = parser.parse_args(argv)
    bench = Bench("bench_generation")

    lm = load_model(args.model, load_in_4bit=args.load_in_4bit)
    test = load_medsafetybench("test")
    requests = test.sample(args.n, random_state=0)["request"].tolist()
    prompts = [render_prompt(lm.spec, r, lm.tokenizer) for r in requests]
    pipe = pipeline("text-generation", model=lm.model, tokenizer=lm.tokenizer)
    config = GenerationConfig(max_new_tokens=args.max_new_tokens, batch_size=args.batch_size)
    runs = compare(
        {
            "baseline": lambda: baseline_outputs(pipe, prompts, args.max_new_tokens),
            "ours": lambda: ours_outputs(lm, prompts, config),
        },
        args.repeats,
        warmups={
            "baseline": lambda: baseline_outputs(pipe, prompts[:2], args.max_new_tokens),
            "ours": lambda: ours_outputs(lm, prompts[:2], config),
        },
    )
    # Prefill alone (prompt tokens scored per second): the rate scripts.workload takes for
    # scoring work; one padded batch of the first batch-size prompts.
    batch = prompts[: args.batch_size]
    prefill_runs = compare({"prefill": lambda: prefill(lm, batch)}, args.repeats)["prefill"]

    ours, baseline = runs["ours"][0].output, runs["baseline"][0].output
    same = sum(a == b for a, b in zip(ours, baseline, strict=True)) / len(prompts)
    bench.check(
        "same_outputs", same == 1.0, f"{same:.0%} of {len(prompts)} prompts identical (greedy)"
    )
    bench.check(
        "repeatable", all(r.output == ours for r in runs["ours"]), "ours gives the same text"
    )
    ours_rates = rates(runs["ours"], count_tokens(lm.tokenizer, ours))
    base_rates = rates(runs["baseline"], count_tokens(lm.tokenizer, baseline))
    print(
        f"model={args.model} prompts={args.n} max_new_tokens={args.max_new_tokens} "
        f"batch_size={args.batch_size} threads={torch.get_num_threads()}; {load_note()}"
    )
    bench.finish(
        **figures("ours_tok_s", ours_rates),
        **figures("baseline_tok_s", base_rates),
        **figures("ratio", paired_ratios(ours_rates, base_rates)),
        same_outputs=f"{same:.2f}",
        **figures("prefill_tok_s", rates(prefill_runs, prefill_runs[0].output)),
        repeats=args.repeats,
    )


if __name__ == "__main__":
    main()
