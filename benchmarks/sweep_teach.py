"""The `teach` profile's fine-tuning settings, chosen by measuring: a small sweep on 2 CPU cores.

Each setting trains one LoRA adapter on SmolLM2-135M-Instruct (float32, no 4-bit) with 06's own
`qlora.train`, on the first n published demonstrations of a kind, then the base model and each
adapter answer held-out requests with 06's own `respond` (the chat format, greedy): a stratified
MedSafety-Eval subset (per AMA category and origin) and AdvBench requests. What is measured is
the refusal rate (the refusal-prefix check of the keyword judge) before and after, with the exact
McNemar p-value on the same requests, and the training time. The teach profile takes the cheapest
setting whose change is clear on both sets within its 30-minute budget (BENCHMARKS.md says which).

    python benchmarks/sweep_teach.py                       # the sweep recorded in BENCHMARKS.md
    python benchmarks/sweep_teach.py --settings med:50:1:0.001 --per-group 1 --n-general 4

Checked (exit 1 otherwise): every setting's loss on its fixed eval demonstrations fell.
"""

from __future__ import annotations

import argparse
import logging
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks.harness import Bench, fmt, load_note  # noqa: E402
from medsafe_utils.core.stats import paired_test  # noqa: E402
from medsafe_utils.data.refusal import is_refusal  # noqa: E402
from medsafe_utils.finetune.alpaca import demonstration_split  # noqa: E402
from medsafe_utils.finetune.qlora import QLoRAConfig, train  # noqa: E402
from medsafe_utils.prompt_models.respond import RespondConfig, harm_requests, respond  # noqa: E402

MODEL = "smollm2-135m-instruct"
# kind:n:epochs:learning rate. The measured setting is med:200:2:0.001.
DEFAULT_SETTINGS = [
    "med:50:2:0.001",
    "med:100:1:0.001",
    "med:100:2:0.001",
    "med:200:2:0.001",
    "gen:100:2:0.001",
    "both:100:2:0.001",
]


def parse_setting(text: str) -> tuple[str, int, float, float]:
    kind, n, epochs, lr = text.split(":")
    return kind, int(n), float(epochs), float(lr)


def refusals(frame) -> dict[str, list[int]]:
    """Per harm set, 0/1 refusal per request in item order."""
    frame = frame.sort_values(["harm_set", "item_id"])
    return {
        name: [int(is_refusal(text)) for text in group["response"]]
        for name, group in frame.groupby("harm_set")
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--settings", nargs="+", default=DEFAULT_SETTINGS)
    parser.add_argument("--model", default=MODEL, help="registry key (tests: tiny-random)")
    parser.add_argument("--targets", nargs="+", default=["q_proj", "k_proj", "v_proj", "o_proj"])
    parser.add_argument("--lora-r", type=int, default=8)
    parser.add_argument("--micro-batch-size", type=int, default=8)
    parser.add_argument(
        "--split-n", type=int, default=200, help="each n: the first n of this split"
    )
    parser.add_argument(
        "--per-group", type=int, default=2, help="MedSafety-Eval per category x origin"
    )
    parser.add_argument("--n-general", type=int, default=20, help="AdvBench requests")
    parser.add_argument("--max-new-tokens", type=int, default=40)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)

    bench = Bench("sweep_teach")
    requests = harm_requests(["medsafety_eval", "general"], args.per_group, args.n_general, seed=0)
    answering = RespondConfig(max_new_tokens=args.max_new_tokens, batch_size=8, dtype="float32")
    print(f"{load_note()}; requests: {requests.groupby('harm_set').size().to_dict()}")
    result: dict[str, str] = {}
    with tempfile.TemporaryDirectory() as tmp:
        cache = Path(tmp) / "generation_cache.jsonl"
        base = refusals(respond(args.model, requests, answering, cache))
        for name, values in base.items():
            result[f"base_{name}"] = fmt(sum(values) / len(values), 2)
        print("base refusal rate:", {k: result[f"base_{k}"] for k in base})
        for text in args.settings:
            kind, n, epochs, lr = parse_setting(text)
            tag = f"{kind}_n{n}_e{epochs:g}_lr{lr:g}"
            config = QLoRAConfig(
                base_model=args.model,
                output_dir=str(Path(tmp) / tag),
                lora_r=args.lora_r,
                lora_alpha=2 * args.lora_r,
                target_modules=tuple(args.targets),
                batch_size=args.micro_batch_size,
                micro_batch_size=args.micro_batch_size,
                num_epochs=epochs,
                learning_rate=lr,
                warmup_steps=0,
                load_in_4bit=False,
                compute_dtype="float32",
                gradient_checkpointing=False,
                eval_n=8,
            )
            demos = demonstration_split(kind, args.split_n, take=n)
            trained = train(config, demos)
            bench.check(f"{tag}_loss_fell", trained.loss_fell)
            after = refusals(respond(args.model, requests, answering, cache, trained.adapter_path))
            parts = []
            for name, values in after.items():
                test = paired_test(base[name], values, binary=True)
                parts.append(f"{fmt(sum(values) / len(values), 2)}(p{test.p_value:.1g})")
            result[tag] = "/".join(parts) + f"/{trained.wall_s:.0f}s"
            print(
                f"{tag}: refusal {' '.join(parts)} ({'/'.join(after)}), "
                f"{trained.wall_s:.0f} s train"
            )
    bench.finish(model=args.model, sets="/".join(sorted(base)), **result)


if __name__ == "__main__":
    main()
