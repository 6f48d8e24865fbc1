"""lm-evaluation-harness's own task pipeline on our local benchmark files (zero-shot).

Task configs written here restate lm-eval's templates for medqa_4options, medmcqa, pubmedqa and
mmlu_<subject> as Jinja over our schema, read the items from a local JSONL (no hub access), and
run through lm-eval's `evaluate` (what `simple_evaluate` calls once it has built the tasks).
It is an independent check of our prompts and scoring (tests and benchmarks/bench_medeval.py):
same model, same items -> the same per-item choices."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from medsafe_utils.core.artifacts import write_jsonl

OPTIONS = "".join(f"{x}. {{{{choices[{i}]}}}}\n" for i, x in enumerate("ABCD"))
TEMPLATES = {
    "medqa": "Question: {{question}}\n" + OPTIONS + "Answer:",
    "medmcqa": "Question: {{question}}\nChoices:\n" + OPTIONS + "Answer:",
    "pubmedqa": "Abstract: {{context}}\nQuestion: {{question}}\nAnswer:",
    "mmlu_medical": "{{question.strip()}}\n" + OPTIONS + "Answer:",
}
MMLU_DESCRIPTION = (
    "The following are multiple choice questions (with answers) about "
    "{{subject.replace('_', ' ')}}.\n\n"
)


def task_config(benchmark: str, data_file: Path) -> dict:
    """An lm-eval task config (as a dict) reading one benchmark's items from a local JSONL."""
    choices = ["yes", "no", "maybe"] if benchmark == "pubmedqa" else ["A", "B", "C", "D"]
    config = {
        "task": f"medsafe_{benchmark}",
        "dataset_path": "json",
        "dataset_kwargs": {"data_files": {"test": str(data_file)}},
        "test_split": "test",
        "output_type": "multiple_choice",
        "doc_to_text": TEMPLATES[benchmark],
        "doc_to_choice": choices,
        "doc_to_target": "answer",
        "metric_list": [{"metric": "acc", "aggregation": "mean", "higher_is_better": True}],
    }
    if benchmark == "mmlu_medical":
        config["description"] = MMLU_DESCRIPTION
    return config


def lmeval_tasks(items: pd.DataFrame, folder: str | Path) -> dict:
    """lm-eval's task objects (zero-shot) for `items`, their data written to JSONL in folder."""
    from lm_eval.tasks import TaskManager

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    configs = []
    for benchmark, group in items.groupby("benchmark", sort=False):
        data_file = write_jsonl(group, folder / f"{benchmark}.jsonl")
        configs.append(task_config(benchmark, data_file))
    loaded = TaskManager(verbosity="ERROR").load(configs)  # {"tasks": ..., "groups": ...}
    for task in loaded["tasks"].values():  # as simple_evaluate does for num_fewshot=0
        task.set_config(key="num_fewshot", value=0)
        task.set_fewshot_seed(seed=1234)
    return loaded


def lmeval_scores(engine, tasks: dict) -> pd.DataFrame:
    """lm-eval's `evaluate` over built tasks: per-item log-likelihoods and choices
    (item_id, loglikelihoods, pred, acc). It builds the requests from the task templates,
    scores them with `engine` and computes the metrics."""
    from lm_eval.evaluator import evaluate

    results = evaluate(
        lm=engine, task_dict=tasks, log_samples=True, bootstrap_iters=0, verbosity="ERROR"
    )
    rows = []
    for samples in results["samples"].values():
        for sample in samples:
            lls = [float(resp[0][0]) for resp in sample["resps"]]
            rows.append(
                {
                    "item_id": sample["doc"]["id"],
                    "loglikelihoods": lls,
                    "pred": max(range(len(lls)), key=lls.__getitem__),
                    "acc": float(sample["acc"]),
                }
            )
    return pd.DataFrame(rows)


def lmeval_predictions(engine, items: pd.DataFrame, folder: str | Path) -> pd.DataFrame:
    """Zero-shot per-item log-likelihoods and choices from lm-eval's pipeline (item_id, pred)."""
    return lmeval_scores(engine, lmeval_tasks(items, folder))
