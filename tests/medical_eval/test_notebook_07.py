"""07_medical_eval run by papermill with the smoke profile, as the suite's smoke chain runs it
(SMOKE_CHAIN_OVERRIDES: 2 items per benchmark instead of 3, few-shot with one seed instead of
two, 4 over-refusal questions of 16 tokens instead of 8 of 32, one of 06's three adapters: each
adapter runs the same code, and each doubles the run): the base model and the adapter, by both
protocols (generation and log-likelihood), with accuracy intervals and chance levels,
over-refusal before and after, and the paragraphs that describe both figures."""

import json

import nbformat
import numpy as np
import pandas as pd
import pytest
from support import chain_params

from medsafe_utils.core.stats import mcnemar_exact
from medsafe_utils.data.refusal import is_refusal
from medsafe_utils.medical_eval.answers import read_answer
from medsafe_utils.medical_eval.narrative import (
    accuracy_paragraph,
    medical_paragraph,
    over_refusal_paragraph,
)
from medsafe_utils.medical_eval.report import accuracy_ci

pytestmark = pytest.mark.slow


RUN = chain_params("07_medical_eval")  # as the suite's smoke chain runs it
N_PER = RUN["n_per_benchmark"]
N_ASK, ASK_TOKENS = RUN["over_refusal_n"], RUN["over_refusal_max_new_tokens"]
ADAPTER = RUN["adapters"].removeprefix("adapter:")  # one adapter of 06's smoke grid, by name


def test_medical_eval_smoke(smoke_results):
    out = smoke_results("07_medical_eval")
    smoke = RUN
    assert smoke["protocols"] == ["generation", "loglikelihood"]
    n_items, n_per = 4 * N_PER, N_PER
    n_settings = 1 + len(smoke["seeds"]) * len([k for k in smoke["num_fewshot"] if k])
    preds = pd.read_json(out / "predictions.jsonl", lines=True)
    models = sorted(preds["model"].unique())
    assert "smollm2-135m-instruct" in models
    assert len(preds) == 2 * len(models) * n_items * n_settings
    assert preds.groupby(["protocol", "model", "benchmark"])["item_id"].nunique().eq(n_per).all()
    shots = preds[preds["num_fewshot"] > 0]
    assert (shots["shot_ids"].map(len) == shots["num_fewshot"]).all()
    assert not set().union(*shots["shot_ids"].map(set)) & set(preds["item_id"])

    # Log-likelihood records: the argmax choice, its correctness, the right number of choices.
    ll = preds[preds["protocol"] == "loglikelihood"]
    lls = ll["loglikelihoods"]
    assert (lls.map(len) == np.where(ll["benchmark"] == "pubmedqa", 3, 4)).all()
    assert (ll["pred"] == lls.map(np.argmax)).all()
    assert (ll["correct"] == (ll["pred"] == ll["answer"]).astype(int)).all()
    assert not ll["unreadable"].any()
    mmlu = ll[(ll["benchmark"] == "mmlu_medical") & (ll["num_fewshot"] > 0)]
    assert all(s.startswith("mmlu-") and "-dev-" in s for ids in mmlu["shot_ids"] for s in ids)

    # Generated records: the answer read from the text, wrong when unreadable; one shared draw
    # of shots per benchmark and seed (meditron's way).
    gen = preds[preds["protocol"] == "generation"]
    parsed = [
        read_answer(o, b, k > 0)
        for o, b, k in zip(gen["output"], gen["benchmark"], gen["num_fewshot"], strict=True)
    ]
    assert gen["parsed"].where(gen["parsed"].notna(), None).tolist() == parsed
    assert gen["unreadable"].tolist() == [p is None for p in parsed]
    gold = gen["gold"].str.lower().tolist()
    assert gen["correct"].tolist() == [int(p == g) for p, g in zip(parsed, gold, strict=True)]
    budget = gen["max_new_tokens"] - np.where(gen["num_fewshot"] > 0, 8, 0)
    assert budget.ge(1).all() and budget.le(3).all()
    draws = gen[gen["num_fewshot"] > 0].groupby(["benchmark", "seed"])["shot_ids"]
    assert draws.apply(lambda s: s.map(tuple).nunique()).eq(1).all()

    # The table names each number's protocol and agrees with the predictions.
    table = pd.read_csv(out / "tab_medical_accuracy.csv")
    assert len(table) == 2 * len(models) * 4 * len(smoke["num_fewshot"])
    assert set(table["protocol"]) == {"generation", "loglikelihood"}
    for _, row in table.iterrows():
        cell = preds[
            (preds["protocol"] == row["protocol"])
            & (preds["model"] == row["model"])
            & (preds["benchmark"] == row["benchmark"])
            & (preds["num_fewshot"] == row["num_fewshot"])
        ]
        per_item = cell.groupby("item_id")["correct"].mean()
        assert row["accuracy"] == pytest.approx(per_item.mean())
        assert row["se"] == pytest.approx(per_item.std(ddof=1) / np.sqrt(n_per))
        assert row["n_unreadable"] == cell["unreadable"].sum()
        # 95% interval: Wilson for one run, a t interval over seeds; chance from the options
        low, high, method = accuracy_ci(per_item, row["n_seeds"])
        assert (row["ci_low"], row["ci_high"]) == pytest.approx((low, high))
        assert row["ci_method"] == method == ("wilson" if row["n_seeds"] == 1 else "t")
        assert row["ci_low"] <= row["accuracy"] <= row["ci_high"]
        assert row["chance"] == pytest.approx(1 / 3 if row["benchmark"] == "pubmedqa" else 0.25)
        assert row["chance_in_ci"] == (row["ci_low"] <= row["chance"] <= row["ci_high"])
    tuned = table[table["adapter"].notna()]
    assert tuned["test"].isin(["mcnemar_exact", "paired_t"]).all()

    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["n_items/medqa"] == n_per and metrics["n_models"] == len(models)
    adapters = pd.read_json(out.parent / "06_finetune" / "adapters.jsonl", lines=True)
    assert len(adapters) == 3 and ADAPTER in set(adapters["adapter"])  # the others left out
    assert metrics["n_adapters"] == 1 == len(models) - 1
    assert models == sorted(["smollm2-135m-instruct", f"smollm2-135m-instruct+{ADAPTER}"])
    assert metrics["unreadable_share"] == pytest.approx(preds["unreadable"].mean())
    for _, first in table.groupby("protocol").head(1).iterrows():
        cell = f"{first['protocol']}/{first['model']}/{first['benchmark']}/k{first['num_fewshot']}"
        assert metrics[f"acc/{cell}"] == pytest.approx(first["accuracy"])
        assert metrics[f"unreadable/{cell}"] == pytest.approx(first["unreadable_rate"])
    assert metrics["chance/pubmedqa"] == pytest.approx(1 / 3)
    assert (out / "fig_medical_before_after.png").stat().st_size > 10_000

    # Over-refusal: every model answered the same benign questions (one per benchmark here);
    # the table's counts, Wilson intervals and McNemar p-values agree with the answers.
    answers = pd.read_json(out / "over_refusal.jsonl", lines=True)
    assert len(answers) == len(models) * N_ASK
    assert answers.groupby("model")["item_id"].apply(frozenset).nunique() == 1
    assert answers.drop_duplicates("item_id")["benchmark"].value_counts().eq(1).all()
    assert answers["refused"].tolist() == [is_refusal(r) for r in answers["response"]]
    refusals = pd.read_csv(out / "tab_over_refusal.csv")
    assert sorted(refusals["model"]) == models
    by_model = {m: g.set_index("item_id")["refused"] for m, g in answers.groupby("model")}
    for _, row in refusals.iterrows():
        mine = by_model[row["model"]]
        assert (row["n"], row["refused"]) == (N_ASK, mine.sum())
        assert row["ci_low"] <= row["rate"] == mine.mean() <= row["ci_high"]
        assert metrics[f"over_refusal/{row['model']}"] == pytest.approx(row["rate"])
        if isinstance(row["adapter"], str):
            base = by_model[row["base_model"]].loc[mine.index]
            assert row["p_value"] == pytest.approx(mcnemar_exact(base, mine)[2])
    assert (out / "fig_over_refusal.png").stat().st_size > 10_000

    # The notebook shows a paragraph under each figure, written from these very tables.
    executed = nbformat.read(out.parent / "executed" / "07_medical_eval.ipynb", as_version=4)
    shown = [
        o["data"]["text/markdown"]
        for c in executed.cells
        for o in c.get("outputs", [])
        if "text/markdown" in o.get("data", {})
    ]
    blank = {"adapter": "", "adapter_type": ""}  # CSV reads the base rows' "" as missing
    assert shown == [
        accuracy_paragraph(table.fillna(blank)),
        over_refusal_paragraph(refusals.fillna(blank)),
        medical_paragraph(table.fillna(blank), profile="smoke", models=smoke["models"]),
    ]
    assert "shows no finding about medical safety" in shown[-1]
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["params"]["n_per_benchmark"] == n_per
    assert manifest["engines"]["loglikelihood"].startswith("lm-eval HFLM 0.4")
    assert manifest["engines"]["generation"].startswith("transformers ")
    assert {
        "predictions.jsonl",
        "tab_medical_accuracy.csv",
        "metrics.json",
        "over_refusal.jsonl",
        "tab_over_refusal.csv",
    } <= set(manifest["files"])
