"""The runner: order, --only/--from, skipping up-to-date steps, --force, the failing cell named,
unknown profile parameters refused, INDEX.md written."""

import json

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

from medsafe_utils.core import paths
from medsafe_utils.pipeline import execute
from medsafe_utils.pipeline import run as pipeline


def _notebook(path, body: str):
    params = new_code_cell('profile: str = "paper"  # results folder\nvalue: int = 1  # a number')
    params.metadata["tags"] = ["parameters"]
    nb = new_notebook(cells=[new_markdown_cell("# t"), params, new_code_cell(body)])
    nb.metadata["kernelspec"] = {
        "name": "python3",
        "display_name": "Python 3",
        "language": "python",
    }
    nbformat.write(nb, path)


WRITE = """
from medsafe_utils.core.artifacts import start_step
run = start_step(profile, "{step}", {{"value": value}})
run.path("tab_x.csv").write_text(f"value\\n{{value}}\\n")
run.finish()
"""


@pytest.fixture
def mini_project(tmp_path, monkeypatch):
    nbs, params = tmp_path / "notebooks", tmp_path / "params"
    nbs.mkdir()
    (params / "smoke").mkdir(parents=True)
    _notebook(nbs / "01_first.ipynb", WRITE.format(step="01_first"))
    _notebook(nbs / "02_second.ipynb", WRITE.format(step="02_second"))
    (params / "smoke" / "01_first.yaml").write_text("profile: smoke\nvalue: 7\n")
    monkeypatch.setattr(paths, "NOTEBOOKS_DIR", nbs)
    monkeypatch.setattr(paths, "PARAMS_DIR", params)
    monkeypatch.setenv(paths.RESULTS_ENV, str(tmp_path / "results"))
    return tmp_path


def test_runs_in_order_then_skips_until_something_changes(mini_project, capsys):
    results = mini_project / "results" / "smoke"
    assert pipeline.main(["smoke"]) == 0
    assert (results / "01_first" / "tab_x.csv").read_text() == "value\n7\n"
    assert (results / "02_second" / "tab_x.csv").read_text() == "value\n1\n"
    assert (results / "executed" / "01_first.ipynb").exists()
    manifest = json.loads((results / "01_first" / "manifest.json").read_text())
    assert manifest["params"] == {"value": 7} and len(manifest[execute.HASH_KEY]) == 64
    assert "tab_x.csv" in (results / "INDEX.md").read_text()

    capsys.readouterr()
    assert pipeline.main(["smoke"]) == 0
    assert capsys.readouterr().out.count("up to date, skipped") == 2
    (mini_project / "params" / "smoke" / "01_first.yaml").write_text("profile: smoke\nvalue: 8\n")
    assert pipeline.main(["smoke"]) == 0
    out = capsys.readouterr().out
    assert "01_first.ipynb [smoke]: up to date" not in out
    assert "02_second.ipynb [smoke]: up to date" in out
    assert (results / "01_first" / "tab_x.csv").read_text() == "value\n8\n"
    assert pipeline.main(["smoke", "--only", "02", "--force"]) == 0
    assert "02_second.ipynb [smoke]\n" in capsys.readouterr().out


def test_the_kernel_prints_nothing_to_the_terminal(mini_project, capfd):
    """The kernel is a subprocess on the terminal's stderr: only the runner's lines show."""
    assert pipeline.main(["smoke", "--only", "01"]) == 0
    err = capfd.readouterr().err
    assert "Kernel is running over TCP" not in err and "WARNING" not in err, err


def test_from_and_only_select_notebooks(mini_project):
    names = [nb.stem for nb in pipeline.notebooks()]
    assert names == ["01_first", "02_second"]
    assert [nb.stem for nb in pipeline.select(pipeline.notebooks(), [], "02")] == ["02_second"]
    with pytest.raises(SystemExit, match="no notebook numbered"):
        pipeline.select(pipeline.notebooks(), ["09"], None)


def test_failure_names_notebook_and_cell(mini_project, capsys):
    _notebook(mini_project / "notebooks" / "01_first.ipynb", "assert value == 0, 'boom'")
    assert pipeline.main(["smoke"]) == 1
    err = capsys.readouterr().err
    assert "FAILED: 01_first.ipynb, cell" in err and "AssertionError: boom" in err
    assert not (mini_project / "results" / "smoke" / "02_second").exists()  # stopped there


def test_unknown_parameter_is_an_error(mini_project):
    (mini_project / "params" / "smoke" / "01_first.yaml").write_text("profile: smoke\nvalu: 7\n")
    with pytest.raises(SystemExit, match=r"\['valu'\] are not in its parameters cell"):
        pipeline.main(["smoke"])


def test_readme_maps_every_artifact_to_the_paper():
    from medsafe_utils.pipeline.index import PAPER_MAP

    readme = (paths.REPO_ROOT / "README.md").read_text(encoding="utf-8")
    missing = [stem for stem in PAPER_MAP if f"`{stem}`" not in readme]
    assert not missing, f"README's map lacks {missing}"


def test_readme_images_exist():
    import re

    readme = (paths.REPO_ROOT / "README.md").read_text(encoding="utf-8")
    images = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", readme)
    assert images and all((paths.REPO_ROOT / image).is_file() for image in images), images
