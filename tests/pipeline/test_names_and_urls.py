"""A profile is a name, not a path, and a URL parameter carries no credentials: both refused by
run_all and the report command before anything runs; manifests record URLs without secrets."""

import json

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

from medsafe_utils.core import paths
from medsafe_utils.core.artifacts import StepRun
from medsafe_utils.pipeline import report
from medsafe_utils.pipeline import run as pipeline

BODY = """
from medsafe_utils.core.artifacts import start_step
run = start_step(profile, "01_first", globals())
run.finish(endpoint=api_base_url)
"""


@pytest.fixture
def one_step(tmp_path, monkeypatch):
    nbs, params = tmp_path / "notebooks", tmp_path / "params"
    nbs.mkdir()
    (params / "smoke").mkdir(parents=True)
    cell = new_code_cell('profile: str = "paper"  # results folder\napi_base_url: str = ""  # x')
    cell.metadata["tags"] = ["parameters"]
    nb = new_notebook(cells=[new_markdown_cell("# t"), cell, new_code_cell(BODY)])
    kernel = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nb.metadata["kernelspec"] = kernel
    nbformat.write(nb, nbs / "01_first.ipynb")
    monkeypatch.setattr(paths, "NOTEBOOKS_DIR", nbs)
    monkeypatch.setattr(paths, "PARAMS_DIR", params)
    monkeypatch.setenv(paths.RESULTS_ENV, str(tmp_path / "results"))
    return tmp_path


@pytest.mark.parametrize("profile", ["../x", "../params/smoke", "/tmp/x", "a/b", ".hidden", ".."])
def test_a_profile_that_is_a_path_is_refused_before_anything_runs(one_step, profile):
    (one_step / "x").mkdir()  # '../x' from params/ exists: refused all the same
    with pytest.raises(SystemExit, match=r"is not a profile name: .* not a path"):
        pipeline.main([profile])
    with pytest.raises(SystemExit, match=r"is not a profile name"):
        report.main([profile])
    with pytest.raises(ValueError, match=r"is not a profile name"):
        paths.step_dir(profile, "01_first")
    assert not (one_step / "results").exists() and not list((one_step / "x").iterdir())


@pytest.mark.parametrize("name", ["smoke", "teach", "paper", "my-run_2", "v1.2"])
def test_plain_names_are_profiles(name):
    assert paths.check_profile(name) == name


def test_a_base_url_with_credentials_is_refused_before_anything_runs(one_step):
    for url in ("https://alice:s3cret@h.example/v1", "https://h.example/v1?api_key=s3cret"):
        with pytest.raises(SystemExit, match=r"parameter 'api_base_url'.* carries credentials"):
            pipeline.main(["smoke", "-p", "api_base_url", url])
    assert not (one_step / "results").exists()


@pytest.mark.slow
def test_a_clean_base_url_runs_and_is_recorded(one_step):
    assert pipeline.main(["smoke", "-p", "api_base_url", "http://localhost:8000/v1"]) == 0
    manifest = json.loads((one_step / "results/smoke/01_first/manifest.json").read_text())
    assert manifest["params"]["api_base_url"] == "http://localhost:8000/v1"
    assert manifest["overrides"] == {"api_base_url": "http://localhost:8000/v1"}


def test_a_manifest_records_urls_without_secrets(tmp_path, monkeypatch):
    monkeypatch.setenv(paths.RESULTS_ENV, str(tmp_path))
    run = StepRun("smoke", "01_first", {"judge_base_url": "https://u:s3cret@h.example/v1"})
    path = run.finish(revision="api:https://h.example/v1?token=s3cret")
    text = path.read_text()
    assert "s3cret" not in text
    manifest = json.loads(text)
    assert manifest["params"]["judge_base_url"] == "https://h.example/v1"
    assert manifest["revision"] == "api:https://h.example/v1?token=REDACTED"
