"""Generation throughput: our batched backend against one-prompt-at-a-time transformers pipeline
calls (the original code's way), on the same MedSafety-Eval prompts, SmolLM2, greedy, CPU.

    python benchmarks/bench_generation.py [--n 32] [--batch-size 16] [--max-new-tokens 64]

On a GPU, `--model llama2-7b-chat` (any registry key, hub id or path) measures the decoding
throughput that `python -m scripts.workload paper --decode-tok-s ...` turns into hours.
"""

from __future__ import annotations

import argparse
import time

import torch
from transformers import pipeline

from medsafe_utils.backends import GenerationConfig, HFBackend, generate
from medsafe_utils.data import load_medsafetybench
from medsafe_utils.models import load_model
from medsafe_utils.models.prompting import render_prompt


def count_tokens(tokenizer, texts: list[str]) -> int:
    """Generated tokens, counted by re-encoding the new text (the same rule for both sides)."""
    return sum(len(tokenizer(t, add_special_tokens=False).input_ids) for t in texts)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=32, help="prompts")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--max-new-tokens", type=int, default=64)
    parser.add_argument("--model", default="smollm2-135m-instruct")
    parser.add_argument("--load-in-4bit", action="store_true", help="NF4 weights (GPU)")
    args = parser.parse_args()
    torch.set_num_threads(torch.get_num_threads())

    lm = load_model(args.model, load_in_4bit=args.load_in_4bit)
    test = load_medsafetybench("test")
    requests = test.sample(args.n, random_state=0)["request"].tolist()
    prompts = [render_prompt(lm.spec, r, lm.tokenizer) for r in requests]

    # Baseline: one prompt at a time through a transformers pipeline, as the original code did.
    pipe = pipeline("text-generation", model=lm.model, tokenizer=lm.tokenizer)
    began = time.perf_counter()
    baseline = [
        pipe(p, max_new_tokens=args.max_new_tokens, do_sample=False, return_full_text=False)[0][
            "generated_text"
        ].strip()
        for p in prompts
    ]
    baseline_s = time.perf_counter() - began

    config = GenerationConfig(max_new_tokens=args.max_new_tokens, batch_size=args.batch_size)
    began = time.perf_counter()
    ours = generate(HFBackend(lm), prompts, config, desc="ours")
    ours_s = time.perf_counter() - began

    # Prefill alone (prompt tokens scored per second, no generation): the rate that
    # scripts.workload uses for scoring work; one padded batch of the longest prompts.
    encoded = lm.tokenizer(
        prompts[: args.batch_size], return_tensors="pt", padding=True, add_special_tokens=False
    ).to(lm.model.device)
    with torch.inference_mode():
        began = time.perf_counter()
        lm.model(**encoded, logits_to_keep=1)
        prefill_tok_s = int(encoded["attention_mask"].sum()) / (time.perf_counter() - began)

    baseline_tok_s = count_tokens(lm.tokenizer, baseline) / baseline_s
    ours_tok_s = count_tokens(lm.tokenizer, ours) / ours_s
    same = sum(a == b for a, b in zip(ours, baseline, strict=True)) / len(prompts)
    print(
        f"model={args.model} prompts={args.n} max_new_tokens={args.max_new_tokens} "
        f"batch_size={args.batch_size} threads={torch.get_num_threads()}"
    )
    print(f"baseline (pipeline, one at a time):  {baseline_s:.1f} s, {baseline_tok_s:.1f} tok/s")
    print(f"ours (batched, shared prefix once): {ours_s:.1f} s, {ours_tok_s:.1f} tok/s")
    print(f"identical outputs: {same:.0%}; prefill alone: {prefill_tok_s:.0f} prompt tok/s")
    print(
        f"RESULT bench_generation ours_tok_s={ours_tok_s:.1f} baseline_tok_s={baseline_tok_s:.1f} "
        f"ratio={ours_tok_s / baseline_tok_s:.2f} same_outputs={same:.2f} "
        f"prefill_tok_s={prefill_tok_s:.0f}"
    )


if __name__ == "__main__":
    main()
