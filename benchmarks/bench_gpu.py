"""Paper-scale rates on a GPU: this repository's GCG, decoding and QLoRA on a model of a paper
model's shape (default Llama-2-7B: 32 layers, 4,096 wide, 11,008 MLP) with random weights.

Speed does not depend on the weights' values, so no weights are downloaded: the model is built
in the shape, saved once to a temporary folder (bf16) and loaded from there by `load_model`, in
bf16 and in NF4, as the notebooks load a hub model. The tokenizer is SmolLM2's (49,152 tokens;
Llama-2's has 32,000, so the output head here is ~50% larger). What is measured:

- GCG at the paper's settings (width 512, top-k 256, 20-token suffix; the first AMA tutorial
  goal): seconds per step in bf16 and NF4, peak GPU memory; a test generation of up to 800
  tokens (what each `test_interval` costs), twice; and one step's candidate losses with the sliced
  output head against the model's own logits (time, peak memory, largest difference);
- decoding with HFBackend (greedy, shared prefix on): milliseconds per step at batch 1, 8 and
  32, each batch twice (the first run also pays for every new shape the GPU libraries meet, the
  second is the steady rate of a long job), and prefill (prompt scoring) tokens per second: the
  rates `python -m scripts.workload` takes;
- QLoRA with `qlora.train` on the first 128 published 'both' demonstrations (one effective batch
  of 128): the paper's micro-batch 4 with gradient checkpointing, and micro-batch 16 without,
  and their training loss.

Checked (exit 1 otherwise): the sliced output head's candidate losses equal the full logits'
(1e-3 absolute), and the two QLoRA arms' first-step training loss agrees (transformers
normalizes by the tokens of the whole effective batch; relative 1e-2 in bf16, whose 8-bit
mantissa rounds each micro-batch's sums differently, 1e-3 in float32). Both-ways comparisons
(sliced/logits, the QLoRA arms) are warmed up and rotated over --repeats rounds
(benchmarks/harness.py); the decoding and test-generation figures keep their first (cold) run
apart on purpose, as the cost a job pays once.

    python benchmarks/bench_gpu.py [--shape llama2-7b] [--tokenizer DIR] [--parts gcg decode qlora]

`--shape tiny` runs the same code on the CPU in seconds (a check of this script; NF4 parts are
skipped without CUDA, GCG draws 64 candidates a step, QLoRA runs with float32 weights, one epoch
of 8 demonstrations: micro-batches of 4 against one of 8). Random weights never emit an end of
sequence, so every generation runs to its token limit, the upper bound the workload counts.
Last line:
RESULT bench_gpu gcg_s_step=... gcg_nf4_s_step=... test_generation_s=... test_generation_cold_s=...
decode_ms_step_b1=... decode_ms_step_b8=... decode_ms_step_b32=... prefill_tok_s=... qlora_tok_s=...
qlora_fast_tok_s=... qlora_loss=... qlora_fast_loss=... (and the ranges, the checks)
"""

from __future__ import annotations

import argparse
import gc
import logging
import math
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch
from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks.harness import Bench, Measured, compare, figures, fmt, load_note  # noqa: E402
from medsafe_utils.backends import GenerationConfig, HFBackend  # noqa: E402
from medsafe_utils.data import load_adv_ama
from medsafe_utils.finetune.alpaca import demonstration_split
from medsafe_utils.finetune.qlora import QLoRAConfig, train
from medsafe_utils.jailbreak.gcg import (
    GCGConfig,
    generate_from,
    initial_suffix,
    run,
    sample_candidates,
)
from medsafe_utils.jailbreak.loss import TargetLoss
from medsafe_utils.jailbreak.prompt import build_prompt, forbidden_token_ids
from medsafe_utils.models import load_model
from medsafe_utils.models.loading import smollm2_folder
from medsafe_utils.models.registry import get_spec

SHAPES = {
    "llama2-7b": dict(
        hidden_size=4096,
        intermediate_size=11008,
        num_hidden_layers=32,
        num_attention_heads=32,
        num_key_value_heads=32,
    ),
    "tiny": dict(
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=4,
    ),
}
SYSTEM = "You are a helpful assistant. Answer the user's question carefully and completely."


def sync() -> None:
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def peak_gb() -> float:
    return torch.cuda.max_memory_allocated() / 2**30 if torch.cuda.is_available() else 0.0


def reset_peak() -> None:
    if torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()


def build_folder(shape: str, tokenizer_dir: Path, root: Path) -> Path:
    """A model of `shape` with random weights (seeded), saved in bf16 with the tokenizer."""
    tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir)
    config = LlamaConfig(
        **SHAPES[shape],
        vocab_size=len(tokenizer),
        max_position_embeddings=4096,
        tie_word_embeddings=False,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    torch.manual_seed(0)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.bfloat16)  # built in bf16 on the GPU: seconds, not minutes
    try:
        with torch.device(device):
            model = LlamaForCausalLM(config)
    finally:
        torch.set_default_dtype(previous)
    folder = root / f"random-{shape}"
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    del model
    gc.collect()
    return folder


def gcg_rates(lm, steps: int, test_tokens: int, repeats: int, width: int = 512) -> dict:
    """Seconds per GCG step at the paper's settings (width 512, top-k 256; `width` candidates
    and at most as many top-k tokens), sliced vs full-logits losses, a test."""
    pair = load_adv_ama("tutorial").iloc[0]
    model, tok = lm.model, lm.tokenizer
    config = GCGConfig(
        num_steps=steps,
        search_width=width,
        topk=min(256, width),
        suffix_length=20,
        seed=0,
        early_stop=False,
        max_new_tokens=0,
        progress=False,
    )
    reset_peak()
    result = run(model, tok, pair.goal, pair.target, config)
    out = {
        "s_step": statistics.median(result.step_times),
        "peak_gb": peak_gb(),
        "loss_first": result.losses[0],
        "loss_last": result.losses[-1],
    }
    parts = build_prompt(tok, pair.goal, pair.target)
    objective = TargetLoss(model, parts, True, 128 if torch.cuda.is_available() else 16)
    suffix = initial_suffix(tok, config)
    grad = objective.gradient(suffix)[0]
    candidates = sample_candidates(
        suffix,
        grad,
        forbidden_token_ids(tok, grad.shape[1]),
        config,
        torch.Generator().manual_seed(0),
        tok,
    )
    head = objective.head

    def candidate_losses(use) -> Measured:
        objective.head = use
        reset_peak()
        sync()
        began = time.perf_counter()
        losses = objective.losses(candidates)[0].float().cpu()
        sync()
        return Measured(time.perf_counter() - began, (losses, peak_gb()))

    runs = compare(
        {"sliced": lambda: candidate_losses(head), "logits": lambda: candidate_losses(None)},
        repeats,
    )
    for name, side in runs.items():
        out[f"{name}_s"] = statistics.median(r.seconds for r in side)
        out[f"{name}_peak_gb"] = max(r.output[1] for r in side)
    diff = (runs["sliced"][0].output[0] - runs["logits"][0].output[0]).abs().max()
    out["max_abs_diff"] = float(diff)
    out["separable_head"] = head is not None
    for run_name in ("test_cold", "test") if test_tokens else ():  # the same prompt twice
        sync()
        began = time.perf_counter()
        text = generate_from(model, tok, parts, suffix, test_tokens)
        sync()
        out[f"{run_name}_s"] = time.perf_counter() - began
        out["test_tokens"] = len(tok(text, add_special_tokens=False).input_ids)
    return out


def decode_rates(lm, new_tokens: int) -> dict:
    """Milliseconds per decoding step with HFBackend at batch 1, 8, 32; prefill tokens/s."""
    tok, backend = lm.tokenizer, HFBackend(lm)
    goals = list(load_adv_ama("tutorial").goal) + list(load_adv_ama("prompts").goal)

    def chat(i: int) -> str:
        return tok.apply_chat_template(
            [
                {"role": "system", "content": SYSTEM},
                {"role": "user", "content": f"{goals[i % len(goals)]} (case {i})"},
            ],
            tokenize=False,
            add_generation_prompt=True,
        )

    out = {}
    for batch in (1, 8, 32):
        prompts = [chat(i) for i in range(batch)]
        for run_name in ("cold_ms_step", "ms_step"):  # first sight of these shapes, then again
            sync()
            began = time.perf_counter()
            backend.generate_batch(
                prompts, GenerationConfig(max_new_tokens=new_tokens, batch_size=batch)
            )
            sync()
            out[f"{run_name}_b{batch}"] = 1000 * (time.perf_counter() - began) / new_tokens
    rows = torch.randint(0, len(tok), (16, 512), device=lm.model.device)
    with torch.no_grad():
        lm.model(input_ids=rows, logits_to_keep=1)
        sync()
        began = time.perf_counter()
        for _ in range(3):
            lm.model(input_ids=rows, logits_to_keep=1)
        sync()
    out["prefill_tok_s"] = 3 * rows.numel() / (time.perf_counter() - began)
    return out


def qlora_rates(
    folder: Path, root: Path, n: int, repeats: int, cuda: bool, epochs: int = 2
) -> dict:
    """Training tokens/s and first-step loss of qlora.train: the paper's micro-batch 4 with
    checkpointing, and 16 without (effective batches of n demonstrations, `epochs` epochs), each
    warmed up on one small effective batch (the first run of a process also loads kernels and
    meets every shape for the first time), then rotated over `repeats` rounds."""
    demos = demonstration_split("both", 200, take=n)
    arms = {"paper": (4, True), "fast": (16, False)}
    count = iter(range(10_000))

    def arm(name: str, take: int, epochs: float) -> Measured:
        micro, checkpointing = arms[name]
        config = QLoRAConfig(
            str(folder),
            output_dir=str(root / f"qlora-{name}-{next(count)}"),
            batch_size=take,
            micro_batch_size=min(micro, take),
            gradient_checkpointing=checkpointing,
            num_epochs=epochs,
            warmup_steps=0,
            eval_n=0,
            save_steps=10_000,
            load_in_4bit=cuda,
        )
        reset_peak()
        result = train(config, demos.head(take))
        peak = peak_gb()
        gc.collect()
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
        first = result.loss_curve[0]["loss"] if result.loss_curve else math.nan
        return Measured(result.wall_s, (result.train_tokens, first, peak))

    runs = compare(
        {name: lambda name=name: arm(name, n, epochs) for name in arms},
        repeats,
        warmups={name: lambda name=name: arm(name, 16, 1) for name in arms},
    )
    out = {}
    for name, side in runs.items():
        out[f"{name}_tok_s_runs"] = [r.output[0] / r.seconds for r in side]
        out[f"{name}_loss"] = side[0].output[1]
        out[f"{name}_peak_gb"] = max(r.output[2] for r in side)
    return out


def release(lm) -> None:
    del lm.model
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shape", choices=sorted(SHAPES), default="llama2-7b")
    parser.add_argument("--tokenizer", type=Path, help="tokenizer folder (default: SmolLM2's)")
    parser.add_argument("--gcg-steps", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=3, help="rounds of the both-ways timings")
    parser.add_argument(
        "--parts",
        nargs="+",
        choices=["gcg", "decode", "qlora"],
        default=["gcg", "decode", "qlora"],
        help="what to measure",
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    bench = Bench("bench_gpu")
    cuda = torch.cuda.is_available()
    if not cuda and args.shape != "tiny":
        raise SystemExit("no GPU visible: --shape tiny checks this script on the CPU")
    tiny = args.shape == "tiny"
    tokenizer_dir = args.tokenizer or smollm2_folder(get_spec("smollm2-135m-instruct"))
    name = torch.cuda.get_device_name() if cuda else "cpu"
    print(f"device {name}, torch {torch.__version__}, shape {args.shape}", flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        folder = build_folder(args.shape, tokenizer_dir, root)
        dtype = "bfloat16" if cuda else "float32"
        gcg, decode, nf4, qlora = {}, {}, {}, {}
        if {"gcg", "decode"} & set(args.parts):
            lm = load_model(str(folder), dtype=dtype)
            params_b = sum(p.numel() for p in lm.model.parameters()) / 1e9
            print(f"{params_b:.2f}B parameters ({dtype})", flush=True)
            if "gcg" in args.parts:
                steps, test_tokens = (2, 16) if tiny else (args.gcg_steps, 800)
                gcg = gcg_rates(lm, steps, test_tokens, args.repeats, 64 if tiny else 512)
                print(f"GCG {dtype}: {gcg}", flush=True)
            if "decode" in args.parts:
                decode = decode_rates(lm, 8 if tiny else 64)
                print(f"decoding: {decode}", flush=True)
            release(lm)
        if cuda and "gcg" in args.parts:
            lm = load_model(str(folder), dtype=dtype, load_in_4bit=True)
            nf4 = gcg_rates(lm, args.gcg_steps // 2, 0, args.repeats)
            print(f"GCG NF4: {nf4}", flush=True)
            release(lm)
        if "qlora" in args.parts:
            n, epochs = (8, 1) if tiny else (128, 2)
            qlora = qlora_rates(folder, root, n, args.repeats, cuda, epochs)
            print(f"QLoRA {'NF4' if cuda else 'float32 weights'}: {qlora}", flush=True)
    for label, part in (("bf16" if cuda else "float32", gcg), ("nf4", nf4)):
        if part:
            bench.check(
                f"sliced_head_{label}",
                part["max_abs_diff"] <= 1e-3,
                f"largest |sliced - logits| candidate loss {part['max_abs_diff']:.1e}",
            )
    if qlora:
        rtol = 1e-2 if cuda else 1e-3
        rel = abs(qlora["fast_loss"] - qlora["paper_loss"]) / abs(qlora["paper_loss"])
        bench.check(
            "qlora_same_loss",
            rel <= rtol,  # NaN fails too
            f"first-step loss micro-batch 16 {qlora['fast_loss']:.5f}, 4 "
            f"{qlora['paper_loss']:.5f}, relative difference {rel:.1e}, tolerance {rtol:.0e}",
        )
    print(load_note())
    nan = float("nan")
    runs = {k: qlora.get(f"{k}_tok_s_runs", [nan]) for k in ("paper", "fast")}
    result = {
        "gcg_s_step": gcg.get("s_step", nan),
        "gcg_nf4_s_step": nf4.get("s_step", nan),
        "test_generation_s": gcg.get("test_s", nan),
        "test_generation_cold_s": gcg.get("test_cold_s", nan),
        **{f"decode_ms_step_b{b}": decode.get(f"ms_step_b{b}", nan) for b in (1, 8, 32)},
        "prefill_tok_s": decode.get("prefill_tok_s", nan),
    }
    bench.finish(
        **{k: fmt(v, 4) for k, v in result.items()},
        **figures("qlora_tok_s", runs["paper"], 4),
        **figures("qlora_fast_tok_s", runs["fast"], 4),
        qlora_loss=fmt(qlora.get("paper_loss", nan), 5),
        qlora_fast_loss=fmt(qlora.get("fast_loss", nan), 5),
        repeats=args.repeats,
    )


if __name__ == "__main__":
    main()
