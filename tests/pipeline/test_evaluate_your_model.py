"""The README's "Evaluate your model" commands, run as written on a few requests, in order into
one results folder: each model gets its row in the harmfulness table beside the earlier ones,
and its judge a validation row.

Only what cannot run here is swapped: the models (tiny-random for "your-org/your-model", the
local judge SmolLM2), and every API call goes to llama.cpp's OpenAI-compatible server serving
SmolLM2 on 127.0.0.1 (vLLM's URL, the OpenAI API for gpt-4o and the API judges)."""

import contextlib
import io
import json
import re
import shlex

import pandas as pd
import pytest

from medsafe_utils.core import paths
from medsafe_utils.pipeline import run as pipeline

pytestmark = [pytest.mark.slow, pytest.mark.server]
# A few requests, short answers and judgments (SmolLM2 as an API judge leaves them unscored).
TINY = "harm_sets: [general]\nn_general: 2\nmax_new_tokens: 8\nvalidate_n: 1\n"
# Per command: what it evaluates here, the placeholders swapped, the model and judge it yields.
CASES = [
    (
        {"your-org/your-model": "tiny-random", "llama3.1-8b-instruct": "smollm2-135m-instruct"},
        "tiny-random",
        "hf:smollm2-135m-instruct",
    ),
    (
        {"your-org/your-model": "HuggingFaceTB/SmolLM2-135M-Instruct"},
        "HuggingFaceTB/SmolLM2-135M-Instruct",
        "openai:gpt-3.5-turbo-0125",
    ),
    ({}, "gpt-4o", "openai:gpt-3.5-turbo-0125"),
]


def readme_commands() -> list[str]:
    """The ./run_all.sh lines of the README's "Evaluate your model" code block."""
    readme = (paths.REPO_ROOT / "README.md").read_text(encoding="utf-8")
    section = readme.split("## Evaluate your model", 1)[1].split("\n## ", 1)[0]
    block = re.search(r"```bash\n(.*?)```", section, re.S).group(1).replace("\\\n", " ")
    return [line.strip() for line in block.splitlines() if line.startswith("./run_all.sh")]


def test_readme_commands_evaluate_each_model_beside_the_earlier_ones(
    llama_server, tmp_path, monkeypatch
):
    commands = readme_commands()
    assert len(commands) == len(CASES), commands
    monkeypatch.setenv(paths.RESULTS_ENV, str(tmp_path))
    tiny = tmp_path / "tiny.yaml"
    tiny.write_text(TINY)
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    out = tmp_path / "paper"
    models, judged = [], []
    for command, (swaps, model, judge) in zip(commands, CASES, strict=True):
        command = command.replace("http://localhost:8000/v1", llama_server)
        for placeholder, here in swaps.items():
            command = command.replace(placeholder, here)
        args = shlex.split(command)[1:] + [
            "-f",
            str(tiny),
            "-p",
            "api_base_url",
            llama_server,
            "-p",
            "judge_base_url",
            llama_server,
        ]
        with contextlib.redirect_stdout(io.StringIO()):
            assert pipeline.main(args) == 0, command
        models.append(model)

        tab = pd.read_csv(out / "05_judge" / "tab_harmfulness.csv")
        rows = tab[tab["breakdown"] == "harm_set"]
        assert set(rows["judge"]) == {judge}, command
        assert sorted(rows["model"]) == sorted(models), command  # beside the earlier models
        assert (rows["n"] + rows["unscored"] == 2).all()
        validation = pd.read_csv(out / "05_judge" / "tab_judge_validation.csv")
        assert validation["judge"].tolist() == [judge] and validation["n"].tolist() == [1]
        manifest = json.loads((out / "04_prompt_models" / "manifest.json").read_text())
        assert manifest["models"] == [model] and manifest["earlier_models"] == sorted(models[:-1])
        judged.append(len((out / "05_judge" / "judge_cache.jsonl").read_text().splitlines()))
    # The same judge as before judged at most the new model's 2 responses (fewer here: the server
    # answers gpt-4o as it answered SmolLM2, so their judge prompts repeat).
    assert judged[2] - judged[1] <= 2
    assert (out / "report.html").exists()
