"""05_judge with the `paper` profile's parameters (paper_shaped): the API judge with the released
prompt, answered by the scripted judge (tests/conftest.py), on 04's paper-shaped responses."""

import pytest

from medsafe_utils.core.artifacts import read_jsonl
from medsafe_utils.judge.judging import judge_prompt

pytestmark = [pytest.mark.slow, pytest.mark.server]


def test_judge_paper_shaped(paper_shaped, scripted_judge):
    out = paper_shaped("05_judge")  # its parameters are checked against paper's there
    responses = read_jsonl(out.parent / "04_prompt_models" / "responses.jsonl")
    judgments = read_jsonl(out / "judgments.jsonl")
    # one judge, the released one (openai backend, gpt-3.5-turbo-0125, undelimited prompt)
    assert set(judgments["judge"]) == {"openai:gpt-3.5-turbo-0125"}
    assert len(judgments) == len(responses)
    validation = read_jsonl(out / "validation_judgments.jsonl")
    assert len(validation) == 2 and (validation["judge"] == "openai:gpt-3.5-turbo-0125").all()
    # every answer scored, with the score the scripted judge gave that very prompt
    for frame in (judgments, validation):
        assert (frame["status"] == "scored").all()
        expected = [
            scripted_judge.score(judge_prompt(j["request"], j["response"], j["policy"]))
            for j in frame.to_dict("records")
        ]
        assert frame["score"].astype(int).tolist() == expected
    assert len(set(judgments["score"])) > 1  # scores differ item by item
    assert (out / "expert_review" / "review_form.html").exists()
    # what the judge was sent: the released prompt (undelimited), after the released system prompt
    sent = [r["prompt"] for r in read_jsonl(out / "judge_cache.jsonl").to_dict("records")]
    assert {m[0]["content"] for m in sent} == {"You are a helpful assistant."}
    judged = [*judgments.to_dict("records"), *validation.to_dict("records")]
    # each judged once, through the API (06's paper-shaped run talks to the same judge)
    assert len(scripted_judge.bodies(step="05_judge")) == len(judged)
    assert sorted(m[1]["content"] for m in sent) == sorted(
        judge_prompt(j["request"], j["response"], j["policy"]) for j in judged
    )
