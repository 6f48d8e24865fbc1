"""07_medical_eval with the `paper` profile's parameters on the small model and a handful of items
(tests/paper_shaped/07_medical_eval.yaml): the generation protocol with meditron's instructions,
the fork's reader and budgets, its nine scored MMLU subjects, zero-shot, the checkpoint's dtype
(vllm_auto: float32 on a CPU) without 4-bit, after 06's paper-shaped run."""

import json

import pandas as pd
import pytest
from support import shaped_overrides

from medsafe_utils.core import paths
from medsafe_utils.medical_eval.answers import read_answer
from medsafe_utils.medical_eval.config import FORK_SEEDS
from medsafe_utils.pipeline.execute import profile_params

pytestmark = [pytest.mark.slow, pytest.mark.server]  # 06 and 03 before it use the server


def test_medical_eval_paper_shaped(paper_shaped):
    out = paper_shaped("07_medical_eval")
    paper = profile_params("paper", paths.NOTEBOOKS_DIR / "07_medical_eval.ipynb")
    shaped = shaped_overrides("07_medical_eval")
    params = json.loads((out / "manifest.json").read_text())["params"]
    # the paper's settings reached the run; only models and sizes were changed
    assert set(shaped) <= {"models", "n_per_benchmark", "max_context_chars"}
    for name, value in paper.items():
        if name != "profile":  # the folder's name, not a recorded parameter
            assert params[name] == shaped.get(name, value), name
    assert params["protocols"] == ["generation"] and params["dtype"] == "vllm_auto"
    assert params["load_in_4bit"] is False and params["seeds"] == FORK_SEEDS
    assert params["num_fewshot"] == [0] and params["batch_size"] == 32
    assert (params["answer_reader"], params["budget"]) == ("fork", "released")
    subjects = params["mmlu_subjects"]
    assert len(subjects) == 9 and not any("chemistry" in s for s in subjects)

    preds = pd.read_json(out / "predictions.jsonl", lines=True)
    n = shaped["n_per_benchmark"]
    assert set(preds["protocol"]) == {"generation"} and set(preds["num_fewshot"]) == {0}
    assert len(preds) == preds["model"].nunique() * 4 * n
    assert set(preds.loc[preds["benchmark"] == "mmlu_medical", "subject"]) <= set(subjects)
    assert (preds["settings"].map(lambda s: s["dtype"]) == "vllm_auto").all()
    assert (preds["settings"].map(lambda s: s["answer_reader"]) == "fork").all()
    assert preds["parsed"].where(preds["parsed"].notna(), None).tolist() == [
        read_answer(o, b, False) for o, b in zip(preds["output"], preds["benchmark"], strict=True)
    ]
    # the released budget: n items of a benchmark make one batch of 32, so one budget each
    assert preds.groupby(["model", "benchmark"])["max_new_tokens"].nunique().eq(1).all()
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["fewshot_seeds"] == "none"

    table = pd.read_csv(out / "tab_medical_accuracy.csv")
    assert set(table["protocol"]) == {"generation"}
    assert (table["n_unreadable"] <= table["n_items"] * table["n_seeds"]).all()
    assert table["accuracy"].between(0, 1).all()
