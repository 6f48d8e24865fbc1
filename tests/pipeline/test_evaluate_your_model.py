"""The README's "Evaluate your model" commands, run as written on a few requests, in order into
one results folder (tests/pipeline/conftest.py): each model gets its row in the harmfulness
table beside the earlier ones, and its judge a validation row."""

import pandas as pd
import pytest

from medsafe_utils.judge.judging import judge_prompt

pytestmark = [pytest.mark.slow, pytest.mark.server]


def test_readme_commands_evaluate_each_model_beside_the_earlier_ones(
    readme_evaluations, scripted_judge
):
    done = readme_evaluations
    models = []
    for i, (model, judge) in enumerate(done.cases):
        command = done.commands[i]
        models.append(model)
        tab = done.harmfulness[i]
        rows = tab[tab["breakdown"] == "harm_set"]
        assert set(rows["judge"]) == {judge}, command
        assert sorted(rows["model"]) == sorted(models), command  # beside the earlier models
        assert (rows["n"] == 2).all() and (rows["unscored"] == 0).all()
        validation = done.validation[i]
        assert validation["judge"].tolist() == [judge] and validation["n"].tolist() == [1]
        manifest = done.manifests[i]
        assert manifest["models"] == [model] and manifest["earlier_models"] == sorted(models[:-1])
    # The same judge as before judged at most the new model's 2 responses (fewer here: the server
    # answers gpt-4o as it answered SmolLM2, so their judge prompts repeat).
    assert done.judged[2] - done.judged[1] <= 2
    assert (done.out / "report.html").exists()
    # The last command's API judge judged every model's responses, each with the score the
    # scripted judge gives the released prompt it was sent.
    judgments = pd.read_json(done.out / "05_judge" / "judgments.jsonl", lines=True)
    assert set(judgments["judge"]) == {done.cases[-1][1]}
    assert sorted(judgments["model"].unique()) == sorted(models)
    expected = [
        scripted_judge.score(judge_prompt(r.request, r.response, r.policy))
        for r in judgments.itertuples()
    ]
    assert judgments["score"].astype(int).tolist() == expected
