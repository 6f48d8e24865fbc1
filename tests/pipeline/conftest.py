"""The README's "Evaluate your model" commands, run once for the session into one results folder:
test_evaluate_your_model checks each command's tables, test_report the report on the folder and
that the models accumulate without recomputing.

Only what cannot run here is swapped: the models (tiny-random for "your-org/your-model", the
local judge SmolLM2), the models' API calls go to llama.cpp's OpenAI-compatible server serving
SmolLM2 on 127.0.0.1 (vLLM's URL, the OpenAI API for gpt-4o), and the API judge's to the
scripted judge (tests/conftest.py), whose every score the tests recompute."""

from __future__ import annotations

import contextlib
import io
import json
import re
import shlex
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
import pytest

from medsafe_utils.core import paths
from medsafe_utils.pipeline import run as pipeline

# A few requests, short answers, one safe response to validate each judge.
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


def _records(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


@dataclass
class Evaluations:
    """The folder the commands ran into (results/paper) and what each run left."""

    out: Path
    cases: list[tuple[str, str]] = field(default_factory=list)  # (model, judge) per command
    commands: list[str] = field(default_factory=list)
    logs: list[str] = field(default_factory=list)  # each run's printed output
    harmfulness: list[pd.DataFrame] = field(default_factory=list)  # 05's table after each
    validation: list[pd.DataFrame] = field(default_factory=list)  # 05's judge validation
    manifests: list[dict] = field(default_factory=list)  # 04's manifest after each
    judged: list[int] = field(default_factory=list)  # judge cache lines after each
    first: dict = field(default_factory=dict)  # 04's responses and cache after the first


@pytest.fixture(scope="session")
def readme_evaluations(llama_server, scripted_judge, tmp_path_factory) -> Evaluations:
    """The three commands as written (placeholders swapped, the tiny parameter file added), then
    the last one again: it must find both steps up to date."""
    root = tmp_path_factory.mktemp("evaluate-your-model")
    tiny = root / "tiny.yaml"
    tiny.write_text(TINY)
    done = Evaluations(root / "paper", [(model, judge) for _, model, judge in CASES])
    commands = readme_commands()
    assert len(commands) == len(CASES), commands
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv(paths.RESULTS_ENV, str(root))
        patch.delenv("OPENAI_API_KEY", raising=False)
        for command, (swaps, _, _) in zip(
            [*commands, commands[-1]], [*CASES, CASES[-1]], strict=True
        ):
            command = command.replace("http://localhost:8000/v1", llama_server)
            for placeholder, here in swaps.items():
                command = command.replace(placeholder, here)
            args = shlex.split(command)[1:] + ["-f", str(tiny)]
            args += ["-p", "api_base_url", llama_server]
            args += ["-p", "judge_base_url", scripted_judge.base_url]
            printed = io.StringIO()
            with contextlib.redirect_stdout(printed):
                assert pipeline.main(args) == 0, command
            done.commands.append(command)
            done.logs.append(printed.getvalue())
            step04, step05 = done.out / "04_prompt_models", done.out / "05_judge"
            done.harmfulness.append(pd.read_csv(step05 / "tab_harmfulness.csv"))
            done.validation.append(pd.read_csv(step05 / "tab_judge_validation.csv"))
            done.manifests.append(json.loads((step04 / "manifest.json").read_text()))
            done.judged.append(len((step05 / "judge_cache.jsonl").read_text().splitlines()))
            if not done.first:
                done.first = {
                    "responses": _records(step04 / "responses.jsonl"),
                    "cache": _records(step04 / "generation_cache.jsonl"),
                }
    return done
