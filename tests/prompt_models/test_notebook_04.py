"""04_prompt_models executed by papermill with the smoke profile (as the suite's chain runs it)."""

import json

import pandas as pd
import pytest
from support import chain_params

pytestmark = pytest.mark.slow


def test_prompt_models_smoke(smoke_results):
    out = smoke_results("04_prompt_models")
    smoke = chain_params("04_prompt_models")  # as the suite's smoke chain runs it
    responses = pd.read_json(out / "responses.jsonl", lines=True)
    n_medical = 9 * 2 * smoke["per_group"]
    assert len(responses) == len(smoke["models"]) * (n_medical + smoke["n_general"])
    medical = responses[responses["harm_set"] == "medsafety_eval"]
    assert medical.groupby(["category", "origin"]).size().eq(smoke["per_group"]).all()
    assert set(responses["harm_set"]) == {"medsafety_eval", "advbench"}
    assert responses["response"].str.len().gt(0).all()
    assert (
        responses["settings"].map(lambda s: s["max_new_tokens"]) == smoke["max_new_tokens"]
    ).all()
    summary = pd.read_csv(out / "tab_responses_summary.csv")
    assert summary["n"].sum() == len(responses)
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["params"]["per_group"] == smoke["per_group"]
    assert manifest["models"] == ["smollm2-135m-instruct"]
    assert "responses.jsonl" in manifest["files"]
