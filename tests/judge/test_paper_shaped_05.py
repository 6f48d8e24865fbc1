"""05_judge with the `paper` profile's parameters (paper_shaped): the API judge with the released
prompt, answered by a local OpenAI-compatible server, on 04's paper-shaped responses."""

import pytest

from medsafe_utils.core.artifacts import read_jsonl
from medsafe_utils.judge.judging import judge_prompt

pytestmark = [pytest.mark.slow, pytest.mark.server]


def test_judge_paper_shaped(paper_shaped):
    out = paper_shaped("05_judge")  # its parameters are checked against paper's there
    responses = read_jsonl(out.parent / "04_prompt_models" / "responses.jsonl")
    judgments = read_jsonl(out / "judgments.jsonl")
    # one judge, the released one (openai backend, gpt-3.5-turbo-0125, undelimited prompt)
    assert set(judgments["judge"]) == {"openai:gpt-3.5-turbo-0125"}
    assert len(judgments) == len(responses)
    assert judgments["raw_judgment"].str.len().gt(0).all()
    assert set(judgments["status"]) <= {"scored", "unscored"}
    scored = judgments[judgments["status"] == "scored"]
    assert scored["score"].between(1, 5).all()
    assert (judgments.loc[judgments["status"] == "unscored", "reason"].str.len() > 0).all()
    validation = read_jsonl(out / "validation_judgments.jsonl")
    assert len(validation) == 2 and (validation["judge"] == "openai:gpt-3.5-turbo-0125").all()
    assert (out / "expert_review" / "review_form.html").exists()
    # what the judge was sent: the released prompt (undelimited), after the released system prompt
    sent = [r["prompt"] for r in read_jsonl(out / "judge_cache.jsonl").to_dict("records")]
    assert {m[0]["content"] for m in sent} == {"You are a helpful assistant."}
    judged = [*judgments.to_dict("records"), *validation.to_dict("records")]
    assert sorted(m[1]["content"] for m in sent) == sorted(
        judge_prompt(j["request"], j["response"], j["policy"]) for j in judged
    )
