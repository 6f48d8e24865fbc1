"""04_prompt_models with the `paper` profile's parameters on small models (paper_shaped): the
released per-family template for an open model, the API path for a GPT model (a local server)."""

import pytest

from medsafe_utils.core.artifacts import read_jsonl
from medsafe_utils.data import prompt_text
from medsafe_utils.models.prompting import chat_messages

pytestmark = [pytest.mark.slow, pytest.mark.server]


def test_prompt_models_paper_shaped(paper_shaped):
    out = paper_shaped("04_prompt_models")  # its parameters are checked against paper's there
    responses = read_jsonl(out / "responses.jsonl")
    assert responses.groupby("model").size().to_dict() == {
        "smollm2-135m-paper": 18 + 2,
        "gpt-3.5-turbo": 18 + 2,
    }
    assert set(responses["harm_set"]) == {"medsafety_eval", "advbench"}
    local = responses[responses["model"] == "smollm2-135m-paper"]
    assert (local["prompt_format"] == "paper").all()  # the registry's format, as for the paper's
    template = prompt_text("template_medalpaca")
    assert local["prompt"].tolist() == [template.format(question=q) for q in local["request"]]
    api = responses[responses["model"] == "gpt-3.5-turbo"]
    assert api["model_revision"].str.startswith("api:http://127.0.0.1:").all()
    assert api["prompt"].tolist() == [chat_messages(q) for q in api["request"]]
    assert responses["response"].notna().all()
    assert responses["settings"].map(lambda s: s["max_new_tokens"]).eq(16).all()
