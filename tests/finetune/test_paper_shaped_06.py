"""06_finetune with the `paper` profile's parameters (paper_shaped): QLoRA with the released
recipe on the released grid's shape (tiny n), answers in the released template, the API judge
with the released prompt answered by the scripted judge."""

import json

import pytest
from support import shaped_overrides

from medsafe_utils.core.artifacts import read_jsonl
from medsafe_utils.judge.judging import judge_prompt

pytestmark = [pytest.mark.slow, pytest.mark.server]  # 03 before it uses the server
SHAPED = shaped_overrides("06_finetune")


def test_finetune_paper_shaped(paper_shaped, scripted_judge):
    out = paper_shaped("06_finetune")  # its parameters are checked against paper's there
    adapters = read_jsonl(out / "adapters.jsonl")
    (n,), (both, twice) = SHAPED["n_values"], SHAPED["n_values_both"]
    assert twice == 2 * both  # the released grid's shape: both runs to twice the others
    grid = [("both", both), ("both", twice), ("gen", n), ("med", n)]
    assert sorted(adapters["adapter"]) == sorted(f"smollm2-135m-paper__{t}_n{k}" for t, k in grid)
    for path in adapters["path"]:
        record = json.loads((out / path / "training.json").read_text())
        config, result = record["config"], record["result"]
        assert result["load_in_4bit"] and config["load_in_4bit"]  # QLoRA: NF4 weights
        assert config["group_by_length"] is False  # random order, as released
        assert (config["lora_r"], config["batch_size"], config["num_epochs"]) == (8, 128, 3)
        assert result["eval_loss_after"] < result["eval_loss_before"]
    responses = read_jsonl(out / "responses.jsonl")
    assert (responses["prompt_format"] == "paper").all()  # the released Medalpaca template
    judgments = read_jsonl(out / "judgments.jsonl")
    assert set(judgments["judge"]) == {"openai:gpt-3.5-turbo-0125"}  # undelimited: no suffix
    requests = 9 * 2 * SHAPED["per_group"] + SHAPED["n_general"]  # MedSafety-Eval, general
    assert len(judgments) == len(responses) == (1 + len(grid)) * requests
    validation = read_jsonl(out / "validation_judgments.jsonl")  # the judge checked first, as in 05
    assert len(validation) == 2 and (validation["judge"] == "openai:gpt-3.5-turbo-0125").all()
    sent = {
        r["prompt"][1]["content"] for r in read_jsonl(out / "judge_cache.jsonl").to_dict("records")
    }
    judged = [*judgments.to_dict("records"), *validation.to_dict("records")]
    expected = [
        scripted_judge.score(judge_prompt(j["request"], j["response"], j["policy"])) for j in judged
    ]
    assert [int(j["score"]) for j in judged] == expected  # each the score it was given
    assert sent == {
        judge_prompt(j["request"], j["response"], j["policy"]) for j in judged
    }  # the released judge prompt, as in 05
    table = judgments.groupby(["type", "n"]).size()
    assert table.to_dict() == {key: requests for key in [*grid, ("none", 0)]}
