"""What 07's two generation choices change on a finished run (docs/deviations.md, rows 16 and 17):

- the answer reader: every generated output of the run read again by the fork's reader and by
  the upstream one; how many readings, unreadable answers and correct answers differ;
- the budget: the run's requests rebuilt from its manifest's parameters, and how many get another
  max_new_tokens from the released rule (per batch, at the run's batch size and at the fork's 32)
  than from the per-item one.

    MEDSAFE_RESULTS=/tmp/r python -m medsafe_utils.pipeline smoke --only 07
    MEDSAFE_RESULTS=/tmp/r python benchmarks/fidelity_07.py smoke
"""

from __future__ import annotations

import argparse
import json

import pandas as pd

from medsafe_utils.core import paths
from medsafe_utils.medical_eval.answers import read_answer
from medsafe_utils.medical_eval.evaluate import MedEvalConfig, build_all_requests, eval_items
from medsafe_utils.medical_eval.generation import token_budgets
from medsafe_utils.models import load_tokenizer

FORK_BATCH = 32  # inference_pipeline.sh's BATCH_SIZE (pinned by tests/medical_eval)


def reader_changes(generated: pd.DataFrame) -> dict:
    """Readings of the run's outputs by both readers, and how many differ."""
    read = {
        reader: [
            read_answer(o, b, k > 0, reader)
            for o, b, k in zip(
                generated["output"], generated["benchmark"], generated["num_fewshot"], strict=True
            )
        ]
        for reader in ("fork", "upstream")
    }
    gold = generated["gold"].str.lower().tolist()
    right = {r: [a == g for a, g in zip(v, gold, strict=True)] for r, v in read.items()}
    return {
        "outputs": len(generated),
        "reading_changed": sum(a != b for a, b in zip(read["fork"], read["upstream"], strict=True)),
        "unreadable_fork": sum(a is None for a in read["fork"]),
        "unreadable_upstream": sum(a is None for a in read["upstream"]),
        "correct_fork": sum(right["fork"]),
        "correct_upstream": sum(right["upstream"]),
        "by_benchmark": {
            b: sum(
                x != y
                for x, y, bb in zip(
                    read["fork"], read["upstream"], generated["benchmark"], strict=True
                )
                if bb == b
            )
            for b in sorted(set(generated["benchmark"]))
        },
    }


def budget_changes(params: dict, model: str) -> dict:
    """Requests of the run whose released budget differs from the per-item one."""
    config = MedEvalConfig(
        benchmarks=params["benchmarks"],
        protocols=["generation"],
        mmlu_subjects=params["mmlu_subjects"],
        num_fewshot=params["num_fewshot"],
        seeds=params["seeds"],
        max_context_chars=params["max_context_chars"],
    )
    items = eval_items(
        params["benchmarks"],
        params["n_per_benchmark"],
        seed=params["subset_seed"],
        mmlu_subjects=params["mmlu_subjects"],
        hold_out=any(k > 0 for k in params["num_fewshot"]),  # as the notebook
    )
    requests = build_all_requests(items, config)
    tokenizer = load_tokenizer(model)
    per_item = token_budgets(tokenizer, requests, "per_item", params["batch_size"])
    out = {"requests": len(requests)}
    for size in sorted({params["batch_size"], FORK_BATCH}):
        released = token_budgets(tokenizer, requests, "released", size)
        out[f"differ_at_batch_{size}"] = sum(
            a != b for a, b in zip(released, per_item, strict=True)
        )
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("profile", help="the results' profile, e.g. smoke")
    args = parser.parse_args()
    folder = paths.step_dir(args.profile, "07_medical_eval")
    manifest = json.loads((folder / "manifest.json").read_text())
    preds = pd.read_json(folder / "predictions.jsonl", lines=True)
    generated = preds[preds["protocol"] == "generation"]
    report = {"readers": reader_changes(generated)}
    for model in manifest["params"]["models"]:
        report[f"budgets/{model}"] = budget_changes(manifest["params"], model)
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
