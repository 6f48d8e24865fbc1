"""The step graph: the seven steps, which earlier steps each one reads, and the paths of the files
they hand to each other."""

import json

import pytest

from medsafe_utils.core import paths, steps
from medsafe_utils.core.artifacts import StepRun
from medsafe_utils.pipeline.run import notebooks


def test_steps_are_the_notebooks_and_read_only_earlier_steps():
    assert steps.STEPS == tuple(nb.stem for nb in notebooks())
    for step, upstream in steps.DEPENDS.items():
        assert all(u in steps.STEPS and u < step for u in upstream), (step, upstream)
    # every file a step hands on is read by a later step
    readers = {u for upstream in steps.DEPENDS.values() for u in upstream}
    assert set(steps.HANDOFFS) == readers


def test_paths_of_handed_files(tmp_path, monkeypatch):
    monkeypatch.setenv(paths.RESULTS_ENV, str(tmp_path))
    assert steps.step_file("smoke", "04_prompt_models", "responses") == (
        tmp_path / "smoke" / "04_prompt_models" / "responses.jsonl"
    )
    assert steps.step_file("p", "06_finetune", "adapters") == (
        tmp_path / "p" / "06_finetune" / "adapters.jsonl"
    )
    assert steps.split_path("p", "both", 200) == (
        tmp_path / "p" / "03_safe_responses" / "splits" / "ft_safety_both_n200.json"
    )
    with pytest.raises(ValueError, match="05_judge hands on no 'responses'"):
        steps.step_file("p", "05_judge", "responses")
    assert not (tmp_path / "p").exists()  # reading paths creates nothing


def test_split_file_names_round_trip():
    assert steps.split_file("med", 100) == "ft_safety_med_n100.json"
    assert steps.parse_split_file("a/b/ft_safety_gen_n900.json") == ("gen", 900)
    for name in ("ft_safety_x_n1.json", "ft_safety_med_n1.jsonl", "xft_safety_med_n1.json"):
        assert steps.parse_split_file(name) is None


def test_step_run_hands_on_and_reads_upstream(tmp_path, monkeypatch):
    monkeypatch.setenv(paths.RESULTS_ENV, str(tmp_path))
    run = StepRun("smoke", "03_safe_responses", {})
    assert run.handoff("splits") == tmp_path / "smoke" / "03_safe_responses" / "splits"
    assert run.upstream("02_jailbreak", "requests") == (
        tmp_path / "smoke" / "02_jailbreak" / "requests.jsonl"
    )
    with pytest.raises(ValueError, match="does not read 04_prompt_models"):
        run.upstream("04_prompt_models", "responses")


@pytest.mark.parametrize("step", sorted(steps.HANDOFFS))
def test_notebooks_hand_on_their_files_through_the_graph(step):
    """The notebook that writes a handed-on file names it with run.handoff, never by hand."""
    cells = json.loads((paths.NOTEBOOKS_DIR / f"{step}.ipynb").read_text())["cells"]
    code = "".join("".join(c["source"]) for c in cells if c["cell_type"] == "code")
    for what, name in steps.HANDOFFS[step].items():
        assert f'run.handoff("{what}")' in code
        assert f'run.path("{name}")' not in code
