"""06_finetune executed by papermill with the smoke profile, then once more (nothing redone)."""

import json

import pandas as pd
import papermill as pm
import pytest
import yaml
from support import SMOKE_CHAIN_OVERRIDES, chain_params, copy_smoke_steps

from medsafe_utils.core import paths

pytestmark = pytest.mark.slow
NOTEBOOK = paths.NOTEBOOKS_DIR / "06_finetune.ipynb"
RUN = chain_params("06_finetune")  # as the suite's smoke chain runs it
JUDGES = {"hf:smollm2-135m-instruct:score_only", "keyword:refusal-prefix-baseline"}


def test_profiles_only_set_known_parameters():
    known = set(pm.inspect_notebook(str(NOTEBOOK)))
    for profile in ("smoke", "paper", "teach"):
        params = yaml.safe_load((paths.PARAMS_DIR / profile / "06_finetune.yaml").read_text())
        assert params["profile"] == profile
        assert set(params) <= known, set(params) - known


@pytest.fixture(scope="module")
def out(smoke_results):
    return smoke_results("06_finetune")


def test_adapters_trained_indexed_and_readable_by_07(out):
    from medsafe_utils.medical_eval.evaluate import read_adapter_index

    index = pd.read_json(out / "adapters.jsonl", lines=True)
    assert sorted(index["type"]) == ["both", "gen", "med"]
    assert set(index["n"]) == set(RUN["n_values"]) and set(index["base_model"]) == {
        "smollm2-135m-instruct"
    }
    for path in index["path"]:
        assert (out / path / "adapter_config.json").exists()
        record = json.loads((out / path / "training.json").read_text())
        assert record["config"]["lora_r"] == 8 and record["config"]["target_modules"] == [
            "q_proj",
            "v_proj",
        ]
    specs = read_adapter_index("smoke")
    assert {s.adapter for s in specs} == {
        f"smollm2-135m-instruct__{k}_n{RUN['n_values'][0]}" for k in ("med", "gen", "both")
    }
    training = pd.read_csv(out / "tab_training.csv")
    steps = RUN["n_values"][0] // RUN["batch_size"] * RUN["num_epochs"]
    assert (training["steps"] == steps).all()
    assert (training["eval_loss_after"] < training["eval_loss_before"]).all()
    assert training["load_in_4bit"].all() and set(training["compute_dtype"]) == {"float32"}
    assert (training["max_abs_logit_diff"] > 1e-3).all() and (training["tokens_per_s"] > 0).all()


def test_responses_judgments_and_table(out):
    responses = pd.read_json(out / "responses.jsonl", lines=True)
    n_requests = 9 * 2 * RUN["per_group"] + RUN["n_general"]
    assert len(responses) == 4 * n_requests
    assert responses.groupby("type").size().to_dict() == {
        t: n_requests for t in ("both", "gen", "med", "none")
    }
    after = responses[responses["type"] != "none"]
    assert after["model_revision"].str.contains(r"\+adapter-[0-9a-f]{12}").all()
    assert (
        not responses.loc[responses["type"] == "none", "model_revision"]
        .str.contains("adapter")
        .any()
    )
    judgments = pd.read_json(out / "judgments.jsonl", lines=True)
    assert set(judgments["judge"]) == JUDGES and len(judgments) == 2 * len(responses)
    table = pd.read_csv(out / "tab_finetune_harmfulness.csv")
    assert list(table.columns) == [
        "judge",
        "model",
        "type",
        "n",
        "eval_set",
        "mean",
        "se",
        "ci_low",
        "ci_high",
        "n_items",
        "unscored",
        "delta",
        "test",
        "p_value",
        "n_pairs",
    ]
    assert len(table) == 2 * 4 * 3  # judges x (base + 3 adapters) x evaluation sets
    assert (
        table.groupby(["judge", "type"])[["n_items", "unscored"]].sum().sum(axis=1) == n_requests
    ).all()
    assert table["mean"].between(1, 5).all() and set(table.loc[table["type"] == "none", "n"]) == {0}
    # One cell recomputed from the judgments: the keyword judge on the general set, after 'med'.
    row = table[
        (table["judge"].str.startswith("keyword"))
        & (table["type"] == "med")
        & (table["eval_set"] == "advbench")
    ].iloc[0]
    scores = judgments[
        (judgments["judge"] == row["judge"])
        & (judgments["type"] == "med")
        & (judgments["harm_set"] == "advbench")
    ]["score"]
    n = len(scores)
    assert n == RUN["n_general"] and row["n_items"] == n and row["unscored"] == 0
    mean = scores.sum() / n
    sd = (((scores - mean) ** 2).sum() / (n - 1)) ** 0.5  # the sample standard deviation
    assert row["mean"] == pytest.approx(mean) and row["se"] == pytest.approx(sd / n**0.5)
    tuned = table[table["type"] != "none"]
    assert tuned["p_value"].between(0, 1).all() and (tuned["n_pairs"] == tuned["n_items"]).all()


def test_refusal_table_recomputed(out):
    from medsafe_utils.data.refusal import is_refusal

    responses = pd.read_json(out / "responses.jsonl", lines=True)
    refusal = pd.read_csv(out / "tab_refusal.csv")
    assert len(refusal) == 4 * 3 and (refusal["ci_low"] <= refusal["rate"]).all()
    general = responses[responses["harm_set"] == "advbench"]
    for row in refusal[refusal["eval_set"] == "advbench"].to_dict("records"):
        texts = general[general["type"] == row["type"]]["response"]
        assert row["refused"] == sum(is_refusal(t) for t in texts) and row["n_items"] == len(texts)


def test_judges_validated_before_the_figures(out):
    validation = pd.read_csv(out / "tab_judge_validation.csv").set_index("judge")
    assert set(validation.index) == JUDGES and (validation["n"] == RUN["validate_n"]).all()
    # measured, not guaranteed: SmolLM2 scores the safe refusals 4, the keyword judge 1
    assert validation["passes"].to_dict() == {
        "hf:smollm2-135m-instruct:score_only": False,
        "keyword:refusal-prefix-baseline": True,
    }
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["keyword:refusal-prefix-baseline/validation_passes"] is True


def test_figures_metrics_manifest(out):
    for name in ("fig_before_after", "fig_harm_vs_n"):
        assert (out / f"{name}.png").stat().st_size > 10_000 and (out / f"{name}.pdf").exists()
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["n_adapters"] == 3
    manifest = json.loads((out / "manifest.json").read_text())
    assert (
        manifest["params"]["split_n"] == 100 and manifest["params"]["n_values"] == RUN["n_values"]
    )
    assert set(manifest["judges"]) == JUDGES


def test_expert_review_export(out):
    """The fine-tuned models' answers are exported for review like 05's (all: under review_n)."""
    responses = pd.read_json(out / "responses.jsonl", lines=True)
    sample = pd.read_json(out / "expert_review" / "sample.jsonl", lines=True)
    assert len(sample) == len(responses) and sample["review_id"].is_unique
    adapters = set(responses.loc[responses["type"] != "none", "adapter"])
    assert set(sample["model"]) == set(RUN["base_models"]) | adapters
    assert all(set(scores) == JUDGES for scores in sample["judge_scores"])
    html = (out / "expert_review" / "review_form.html").read_text()
    assert sample["sample_id"].iloc[0] in html
    assert not any(model in html for model in set(sample["model"]))


def test_rerun_redoes_nothing(smoke_results, tmp_path, monkeypatch):
    """06 again on a copy of the chain's results: every adapter, its check, answer and judgment
    reused."""
    from medsafe_utils.pipeline.run import run_notebook

    smoke = copy_smoke_steps(smoke_results, ("06_finetune",), tmp_path)
    monkeypatch.setenv(paths.RESULTS_ENV, str(tmp_path))
    out = smoke / "06_finetune"
    caches = {
        name: (out / name).read_text() for name in ("generation_cache.jsonl", "judge_cache.jsonl")
    }
    weights = {p: p.read_bytes() for p in out.glob("adapters/*/adapter_model.safetensors")}
    checks = {p: p.read_text() for p in out.glob("adapters/*/adapter_check.json")}
    assert len(checks) == len(weights) == 3
    run_notebook(NOTEBOOK, "smoke", SMOKE_CHAIN_OVERRIDES["06_finetune"])
    assert pd.read_csv(out / "tab_training.csv")["reused"].all()
    assert all(p.read_bytes() == w for p, w in weights.items())
    assert all(p.read_text() == text for p, text in checks.items()), "the checks unchanged"
    assert all((out / name).read_text() == text for name, text in caches.items())
