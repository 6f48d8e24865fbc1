"""07_medical_eval with the `paper` profile's parameters on the small model and a handful of items
(tests/paper_shaped/07_medical_eval.yaml): the generation protocol with meditron's instructions,
seeds and eleven MMLU subjects, bf16 weights without 4-bit, after 06's paper-shaped run."""

import json

import pandas as pd
import pytest
import yaml

from medsafe_utils.core import paths
from medsafe_utils.data import MMLU_MEDITRON, fewshot_pool
from medsafe_utils.medical_eval.instructed import draw_shots

pytestmark = [pytest.mark.slow, pytest.mark.server]  # 06 and 03 before it use the server


def test_medical_eval_paper_shaped(paper_shaped):
    out = paper_shaped("07_medical_eval")
    paper = yaml.safe_load((paths.PARAMS_DIR / "paper" / "07_medical_eval.yaml").read_text())
    shaped = yaml.safe_load(
        (paths.REPO_ROOT / "tests" / "paper_shaped" / "07_medical_eval.yaml").read_text()
    )
    params = json.loads((out / "manifest.json").read_text())["params"]
    # the paper's settings reached the run; only models and sizes were changed
    assert set(shaped) <= {"models", "n_per_benchmark", "max_context_chars"}
    for name, value in paper.items():
        if name != "profile":  # the folder's name, not a recorded parameter
            assert params[name] == shaped.get(name, value), name
    assert params["protocols"] == ["generation"] and params["dtype"] == "bfloat16"
    assert params["load_in_4bit"] is False and params["seeds"] == [1234, 432, 32]
    assert params["mmlu_subjects"] == MMLU_MEDITRON

    preds = pd.read_json(out / "predictions.jsonl", lines=True)
    n = shaped["n_per_benchmark"]
    settings = 1 + len(paper["seeds"]) * len([k for k in paper["num_fewshot"] if k])
    assert set(preds["protocol"]) == {"generation"}
    assert len(preds) == preds["model"].nunique() * 4 * n * settings
    assert set(preds.loc[preds["benchmark"] == "mmlu_medical", "subject"]) <= set(MMLU_MEDITRON)
    assert (preds["settings"].map(lambda s: s["dtype"]) == "bfloat16").all()
    # meditron's few-shot draw: the first 3 of the shuffled pool, the same for every item
    for (benchmark, seed), group in preds[preds["num_fewshot"] == 3].groupby(["benchmark", "seed"]):
        pool = fewshot_pool(benchmark, MMLU_MEDITRON)
        expected = list(draw_shots(pool, 3, seed)["id"])
        assert all(list(ids) == expected for ids in group["shot_ids"]), (benchmark, seed)
    assert not set().union(*preds["shot_ids"].map(set)) & set(preds["item_id"])
    assert ((preds["max_new_tokens"] > 8) == (preds["num_fewshot"] > 0)).all()

    table = pd.read_csv(out / "tab_medical_accuracy.csv")
    assert set(table["protocol"]) == {"generation"}
    assert (table["n_unreadable"] <= table["n_items"] * table["n_seeds"]).all()
    assert table["accuracy"].between(0, 1).all()
