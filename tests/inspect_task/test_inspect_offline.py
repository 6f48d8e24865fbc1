"""The Inspect task's samples and the log import's checks, offline with Inspect's mock model."""

from __future__ import annotations

import pytest
from inspect_ai import eval as inspect_eval
from inspect_ai.log import EvalError, write_eval_log
from inspect_ai.model import ModelOutput, ModelUsage, get_model

from medsafe_utils.core import paths
from medsafe_utils.core.errors import DataError
from medsafe_utils.inspect_task.dataset import medsafety_samples
from medsafe_utils.inspect_task.log_import import import_log, log_responses
from medsafe_utils.inspect_task.task import medsafetybench
from medsafe_utils.models.prompting import render_paper, system_prompt
from medsafe_utils.models.registry import get_spec
from medsafe_utils.prompt_models.respond import harm_requests


def test_samples_are_04s_requests_with_their_groups():
    samples = medsafety_samples(["llama2", "general"], per_group=2, n_general=3, seed=7)
    requests = harm_requests(["medsafety_eval", "general"], per_group=2, n_general=3, seed=7)
    wanted = requests[(requests["origin"] != "gpt4")]
    assert [s.id for s in samples] == wanted["item_id"].tolist()
    assert {s.metadata["origin"] for s in samples} == {"llama2", "advbench"}
    first = samples[0]
    assert first.metadata["category"] in range(10)
    assert [m.role for m in first.input] == ["system", "user"]
    assert first.input[0].text == system_prompt()
    assert first.input[1].text == first.metadata["request"]


def test_prompt_formats_and_system_prompt():
    paper = medsafety_samples(["gpt4"], 1, prompt_format="paper", paper_model="medalpaca-7b")
    assert paper[0].input == render_paper(get_spec("medalpaca-7b"), paper[0].metadata["request"])
    bare = medsafety_samples(["gpt4"], 1, system_prompt="")
    assert [m.role for m in bare[0].input] == ["user"]
    own = medsafety_samples(["gpt4"], 1, system_prompt="Be careful.")
    assert own[0].input[0].text == "Be careful."
    with pytest.raises(ValueError, match="paper_model"):
        medsafety_samples(["gpt4"], 1, prompt_format="paper")
    with pytest.raises(ValueError, match="own system prompt"):
        medsafety_samples(
            ["gpt4"], 1, prompt_format="paper", paper_model="medalpaca-7b", system_prompt="x"
        )
    with pytest.raises(ValueError, match="choose among"):
        medsafety_samples(["gpt5"], 1)


@pytest.fixture(scope="module")
def mock_log(tmp_path_factory):
    """The task on 9 MedSafety-Eval requests answered by Inspect's mock model, keyword-scored."""
    answers = ["I cannot help with that.", "  Sure, here is how.  "] * 5
    outputs = [ModelOutput.from_content("mockllm/model", a) for a in answers]
    for output in outputs:  # with usage given, the mock counts no tokens (tiktoken downloads)
        output.usage = ModelUsage(input_tokens=1, output_tokens=1, total_tokens=2)
    model = get_model("mockllm/model", custom_outputs=outputs)
    task = medsafetybench(sets="gpt4", per_group=1, scorers="keyword", max_tokens=16)
    folder = tmp_path_factory.mktemp("logs")
    return inspect_eval(task, model=model, log_dir=str(folder), display="none")[0]


def test_keyword_scorer_and_import_of_a_mock_run(mock_log, tmp_path, monkeypatch):
    assert mock_log.status == "success"
    scores = {s.id: s.scores["refusal_keyword"].value["harmfulness"] for s in mock_log.samples}
    texts = {s.id: s.output.completion for s in mock_log.samples}
    assert scores == {i: 1 if t.startswith("I cannot") else 5 for i, t in texts.items()}
    monkeypatch.setenv(paths.RESULTS_ENV, str(tmp_path))
    target = import_log(mock_log.location, "smoke", "smollm2-135m-instruct")
    rows = log_responses(mock_log.location, "smollm2-135m-instruct")
    assert target.exists() and len(rows) == 9
    assert rows["aligned"].all() and (rows["group"] == "general").all()  # from the registry
    assert set(rows["response"]) == {"I cannot help with that.", "Sure, here is how."}
    assert rows["settings"].iloc[0]["max_new_tokens"] == 16
    assert rows["settings"].iloc[0]["do_sample"] is False
    assert rows["prompt"].iloc[0][0] == {"role": "system", "content": system_prompt()}


def _broken(log, tmp_path, change) -> str:
    bad = log.model_copy(deep=True)
    change(bad)
    path = tmp_path / "bad.eval"
    write_eval_log(bad, str(path))
    return str(path)


def test_import_refuses_what_is_not_this_tasks_answers(mock_log, tmp_path):
    def rename(log):
        log.eval.task = "other_task"

    def cancel(log):
        log.status = "cancelled"

    def fail_one(log):
        log.samples[2].error = EvalError(message="boom", traceback="", traceback_ansi="")

    def unknown_id(log):
        log.samples[1].id = "test-gpt4-c1-999"

    def other_request(log):
        log.samples[3].metadata["request"] = "something else"

    cases = [
        (rename, "task 'other_task'"),
        (cancel, "status 'cancelled'"),
        (fail_one, "ended in an error"),
        (unknown_id, "no known item"),
        (other_request, "another request"),
    ]
    for change, message in cases:
        with pytest.raises(DataError, match=message):
            log_responses(_broken(mock_log, tmp_path, change), "smollm2-135m-instruct")
    with pytest.raises(ValueError, match="not in the model registry"):
        log_responses(mock_log.location, "my-own-model")
    with pytest.raises(DataError, match="no such file"):
        log_responses(tmp_path / "missing.eval", "smollm2-135m-instruct")
