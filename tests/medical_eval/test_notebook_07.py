"""07_medical_eval run by papermill with the smoke profile (5 items per benchmark instead of
10): the base model and 06's adapters."""

import json

import numpy as np
import pandas as pd
import pytest
import yaml

from medsafe_utils.core import paths

pytestmark = pytest.mark.slow


N_PER = 5  # items per benchmark: half the smoke profile's 10, to keep the suite's time


def test_medical_eval_smoke(smoke_results):
    out = smoke_results(
        "07_medical_eval", needs=("06_finetune",), overrides={"n_per_benchmark": N_PER}
    )
    smoke = yaml.safe_load((paths.PARAMS_DIR / "smoke" / "07_medical_eval.yaml").read_text())
    n_items, n_per = 4 * N_PER, N_PER
    n_settings = 1 + len(smoke["seeds"]) * len([k for k in smoke["num_fewshot"] if k])
    preds = pd.read_json(out / "predictions.jsonl", lines=True)
    models = sorted(preds["model"].unique())
    assert "smollm2-135m-instruct" in models
    assert len(preds) == len(models) * n_items * n_settings
    assert preds.groupby(["model", "benchmark"])["item_id"].nunique().eq(n_per).all()

    # Per-item records: the argmax choice, its correctness, the right number of choices.
    lls = preds["loglikelihoods"]
    assert (lls.map(len) == np.where(preds["benchmark"] == "pubmedqa", 3, 4)).all()
    assert (preds["pred"] == lls.map(np.argmax)).all()
    assert (preds["correct"] == (preds["pred"] == preds["answer"]).astype(int)).all()
    shots = preds[preds["num_fewshot"] > 0]
    assert (shots["shot_ids"].map(len) == shots["num_fewshot"]).all()
    pairs = zip(shots["item_id"], shots["shot_ids"], strict=True)
    assert not any(item in ids for item, ids in pairs)
    mmlu = shots[shots["benchmark"] == "mmlu_medical"]
    assert all(
        s.startswith(f"mmlu-{subj}-dev-")
        for subj, ids in zip(mmlu["subject"], mmlu["shot_ids"], strict=True)
        for s in ids
    )

    # The table agrees with the predictions it was computed from.
    table = pd.read_csv(out / "tab_medical_accuracy.csv")
    assert len(table) == len(models) * 4 * len(smoke["num_fewshot"])
    for _, row in table.iterrows():
        cell = preds[
            (preds["model"] == row["model"])
            & (preds["benchmark"] == row["benchmark"])
            & (preds["num_fewshot"] == row["num_fewshot"])
        ]
        per_item = cell.groupby("item_id")["correct"].mean()
        assert row["accuracy"] == pytest.approx(per_item.mean())
        assert row["se"] == pytest.approx(per_item.std(ddof=1) / np.sqrt(n_per))
    tuned = table[table["adapter"].notna()]
    assert tuned["test"].isin(["mcnemar_exact", "paired_t"]).all()

    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["n_items/medqa"] == n_per and metrics["n_models"] == len(models)
    adapters = pd.read_json(out.parent / "06_finetune" / "adapters.jsonl", lines=True)
    assert metrics["n_adapters"] == len(adapters) == len(models) - 1 > 0
    first = table.iloc[0]
    key = f"acc/{first['model']}/{first['benchmark']}/k{first['num_fewshot']}"
    assert metrics[key] == pytest.approx(first["accuracy"])
    assert (out / "fig_medical_before_after.png").stat().st_size > 10_000
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["params"]["n_per_benchmark"] == n_per
    assert manifest["engine"].startswith("lm-eval HFLM 0.4")
    assert {"predictions.jsonl", "tab_medical_accuracy.csv", "metrics.json"} <= set(
        manifest["files"]
    )
