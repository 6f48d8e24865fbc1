"""The CPU guard: a notebook whose local models are too big for a CPU stops at its guard cell on
a machine without a GPU (the paper profile's own parameters do), small models run on (the
smoke, teach and paper-shaped parameters), MEDSAFE_ALLOW_CPU=1 goes on; and the caveat of a run
of CPU-sized models."""

import ast
import logging
import math

import nbformat
import papermill as pm
import pytest
import torch
from support import shaped_overrides

from medsafe_utils.core import paths
from medsafe_utils.models import get_spec, registry, scale
from medsafe_utils.models.scale import (
    ALLOW_ENV,
    CPU_MAX_PARAMS_B,
    TooBigForCPU,
    local_sizes,
    small_run_caveat,
    stop_if_too_big_for_cpu,
)
from medsafe_utils.pipeline.execute import notebooks, profile_params

NOTEBOOKS = notebooks()


@pytest.fixture
def cpu_only(monkeypatch):
    """This machine as one without a GPU, and no MEDSAFE_ALLOW_CPU."""
    monkeypatch.setattr(scale, "default_device", lambda: "cpu")
    monkeypatch.delenv(ALLOW_ENV, raising=False)


def test_local_sizes_come_from_the_registry():
    sizes = local_sizes(
        ["llama2-7b-chat", "gpt-4", "smollm2-135m-instruct", "", "org/unknown-model"],
        ["hf", "hf", "hf", "keyword", "hf"],
    )
    assert sizes["llama2-7b-chat"] == get_spec("llama2-7b-chat").params_b
    assert sizes["smollm2-135m-instruct"] == get_spec("smollm2-135m-instruct").params_b
    assert "gpt-4" not in sizes and "" not in sizes  # an API model, the keyword judge
    assert math.isnan(sizes["org/unknown-model"])  # a hub id the registry does not size
    assert local_sizes(["llama2-7b-chat"], "openai") == {}  # served elsewhere


def test_the_guard_stops_a_big_local_model_on_a_cpu(cpu_only):
    with pytest.raises(TooBigForCPU) as stopped:
        stop_if_too_big_for_cpu(["smollm2-135m-instruct", "meditron-70b"], step="07_medical_eval")
    message = str(stopped.value)
    assert "meditron-70b (70 B parameters)" in message and "smollm2" not in message
    assert "./run_all.sh teach" in message and f"{ALLOW_ENV}=1" in message
    assert "params/teach/07_medical_eval.yaml --prepare-only" in message
    assert (paths.PARAMS_DIR / "teach" / "07_medical_eval.yaml").exists()


def test_the_guard_lets_small_models_gpus_and_the_override_through(cpu_only, monkeypatch, caplog):
    stop_if_too_big_for_cpu(["smollm2-135m-instruct", "pythia-70m"], step="04_prompt_models")
    stop_if_too_big_for_cpu(["llama2-70b"], "openai", step="04_prompt_models")  # a server's
    stop_if_too_big_for_cpu(["llama2-70b"], step="04_prompt_models", has_gpu=True)
    monkeypatch.setenv(ALLOW_ENV, "1")
    with caplog.at_level(logging.WARNING, logger=scale.__name__):
        stop_if_too_big_for_cpu(["llama2-70b"], step="04_prompt_models")
    assert "llama2-70b" in caplog.text and ALLOW_ENV in caplog.text


def test_the_threshold_splits_the_registry():
    """Every registry model the paper runs locally is above the line, the small ones below."""
    sized = {key: spec.params_b for key, spec in registry().items()}
    assert sized["smollm2-135m-instruct"] <= CPU_MAX_PARAMS_B < sized["llama2-7b"]
    assert sized["pythia-70m"] <= CPU_MAX_PARAMS_B < sized["pythia-6.9b"]


def _guard_cell(notebook) -> nbformat.NotebookNode:
    """The first code cell after the parameters: the one that calls the guard."""
    code = [c for c in nbformat.read(notebook, as_version=4).cells if c.cell_type == "code"]
    assert "stop_if_too_big_for_cpu(" in code[1].source, notebook.name
    return code[1]


def _defaults(notebook) -> dict:
    found = pm.inspect_notebook(str(notebook))
    return {name: ast.literal_eval(p["default"]) for name, p in found.items()}


def _paper_shaped(notebook) -> dict:
    return profile_params("paper", notebook) | shaped_overrides(notebook.stem)


# Under `paper`, 03 (GPT-4's safe responses) and 05 (the GPT-3.5 judge) run no model locally:
# an API key, not a GPU, is what they need, and a CPU runs them.
API_ONLY_UNDER_PAPER = {"03_safe_responses", "05_judge"}


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=lambda p: p.stem)
def test_the_paper_profile_stops_at_the_guard_cell_on_a_cpu(notebook, cpu_only):
    params = _defaults(notebook) | profile_params("paper", notebook)
    if notebook.stem in API_ONLY_UNDER_PAPER:
        exec(_guard_cell(notebook).source, params)  # noqa: S102 - the notebook's own cell
        return
    with pytest.raises(TooBigForCPU, match=notebook.stem):
        exec(_guard_cell(notebook).source, params)  # noqa: S102 - the notebook's own cell


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=lambda p: p.stem)
@pytest.mark.parametrize("profile", ["smoke", "teach", "paper-shaped"])
def test_small_profiles_pass_the_guard_cell(notebook, profile, cpu_only):
    params = _defaults(notebook) | (
        _paper_shaped(notebook) if profile == "paper-shaped" else profile_params(profile, notebook)
    )
    exec(_guard_cell(notebook).source, params)  # noqa: S102 - the notebook's own cell


@pytest.mark.slow
@pytest.mark.skipif(torch.cuda.is_available(), reason="the guard stops only without a GPU")
def test_a_notebook_run_at_paper_scale_stops_at_its_first_cell(tmp_path, monkeypatch):
    """Executed as a student's Run All would: papermill stops in the guard cell, nothing after it
    runs (not even the imports), and the step writes no results."""
    monkeypatch.delenv(ALLOW_ENV, raising=False)
    monkeypatch.setenv("MEDSAFE_RESULTS", str(tmp_path / "results"))
    notebook = next(nb for nb in NOTEBOOKS if nb.stem == "04_prompt_models")
    out = tmp_path / notebook.name
    with pytest.raises(pm.PapermillExecutionError) as stopped:
        pm.execute_notebook(
            str(notebook), str(out), parameters={"profile": "paper"}, progress_bar=False
        )
    assert stopped.value.ename == "TooBigForCPU" and "./run_all.sh teach" in stopped.value.evalue
    code = [c for c in nbformat.read(out, as_version=4).cells if c.cell_type == "code"]
    ran = [i for i, c in enumerate(code) if c.execution_count is not None]
    assert ran == [0, 1, 2], ran  # parameters, papermill's injected parameters, the guard
    assert not (tmp_path / "results").exists()


def test_the_caveat_follows_the_profile_and_the_models_size():
    smoke = small_run_caveat("smoke", ["llama2-7b"])  # the profile alone decides
    assert "proves that the pipeline runs end to end" in smoke and "no finding" in smoke
    assert "`smoke`" in smoke
    assert small_run_caveat("paper", ["smollm2-135m-paper", "gpt-3.5-turbo"]) != ""
    assert small_run_caveat("paper", ["smollm2-135m-paper", "medalpaca-7b"]) == ""
    assert small_run_caveat("paper", ["gpt-4"], "openai") == ""  # nothing local: size unknown
    assert small_run_caveat("teach", ["org/unknown-model"]) == ""
