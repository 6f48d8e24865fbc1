"""-p NAME VALUE and -f FILE.yaml on the runner's command line: parsed as papermill users expect,
layered over the profile, checked against the parameters cells before anything runs, recorded
in the manifests; a changed override reruns its step, an unchanged one skips it."""

import json

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

from medsafe_utils.core import paths
from medsafe_utils.pipeline import run as pipeline
from medsafe_utils.pipeline.overrides import declared, parse_value, resolve, type_problem

NB04 = paths.NOTEBOOKS_DIR / "04_prompt_models.ipynb"
NB05 = paths.NOTEBOOKS_DIR / "05_judge.ipynb"


def test_values_are_yaml_and_strings_stay_verbatim():
    assert parse_value("-p models", '["org/name"]', "list") == ["org/name"]
    assert parse_value("-p per_group", "3", "int") == 3
    assert parse_value("-p score_only", "true", "bool") is True
    assert parse_value("-p url", "http://127.0.0.1:8000/v1", "str") == "http://127.0.0.1:8000/v1"
    assert parse_value("-p prompt_format", "", "str") == ""  # YAML would say null
    assert parse_value("-p name", "on", "str") == "on"  # YAML 1.1 would say True
    assert parse_value("-p name", "123", "str") == "123"
    with pytest.raises(SystemExit, match=r"-p models: '\[\"org/name\"' is not valid YAML"):
        parse_value("-p models", '["org/name"', "list")


def test_types_follow_the_parameters_cell():
    assert type_problem(3, "float") is None and type_problem(True, "bool") is None
    assert type_problem(True, "int") == "expects int, got bool True"
    assert type_problem("org/name", "list") == "expects list, got str 'org/name'"
    assert type_problem(None, "str | None") is None and type_problem(1, "list[str]")
    assert type_problem(object(), "None") is None  # not annotated: not checked


def test_a_name_applies_to_every_selected_notebook_that_has_it():
    chosen = resolve([NB04, NB05], [], [("models", '["org/name"]'), ("api_key_env", "MY_KEY")])
    assert chosen == {
        "04_prompt_models": {"models": ["org/name"], "api_key_env": "MY_KEY"},
        "05_judge": {"api_key_env": "MY_KEY"},
    }


def test_a_name_prefixed_by_a_notebook_applies_to_that_notebook_only():
    pairs = [("batch_size", "16"), ("05_judge.batch_size", "1"), ("07_medical_eval.seeds", "[0]")]
    chosen = resolve([NB04, NB05], [], pairs)  # 07 is not selected: its entry is unused
    assert chosen == {"04_prompt_models": {"batch_size": 16}, "05_judge": {"batch_size": 1}}
    with pytest.raises(SystemExit, match=r"-p 99_nothing.batch_size: '99_nothing' names no"):
        resolve([NB04], [], [("99_nothing.batch_size", "1")])
    with pytest.raises(SystemExit, match=r"-p 05_judge.modles: no selected notebook \(05_judge"):
        resolve([NB04, NB05], [], [("05_judge.modles", "[]")])


def test_unknown_names_wrong_types_and_the_profile_are_errors():
    with pytest.raises(
        SystemExit,
        match=r"-p model: no selected notebook \(04_prompt_models, "
        r"05_judge\) has a parameter 'model'; did you mean models",
    ):
        resolve([NB04, NB05], [], [("model", '["x"]')])
    with pytest.raises(
        SystemExit,
        match=r"-p judge_models: no selected notebook "
        r"\(04_prompt_models\)",
    ):
        resolve([NB04], [], [("judge_models", '["x"]')])  # 05 has it, but is not selected
    with pytest.raises(
        SystemExit,
        match=r"-p models: 04_prompt_models's parameter 'models' "
        r"expects list, got str 'org/name' \(its parameters cell: models: list",
    ):
        resolve([NB04], [], [("models", "org/name")])
    with pytest.raises(SystemExit, match="the profile is the first argument"):
        resolve([NB04], [], [("profile", "paper")])


def test_files_layer_in_order_then_p_wins(tmp_path):
    first, second = tmp_path / "first.yaml", tmp_path / "second.yaml"
    first.write_text("per_group: 2\nn_general: 5\nbatch_size: 16\n")
    second.write_text("per_group: 3\n05_judge:\n  batch_size: 1\n07_medical_eval:\n  x: 1\n")
    chosen = resolve([NB04, NB05], [str(first), str(second)], [("n_general", "7")])
    assert chosen["04_prompt_models"] == {"per_group": 3, "n_general": 7, "batch_size": 16}
    assert chosen["05_judge"] == {"batch_size": 1}  # 16 from first, then its own section


@pytest.mark.parametrize(
    ("text", "error"),
    [
        ("models: [unclosed\n", r"-f .*bad.yaml: not valid YAML"),
        ("- a list\n", r"-f .*bad.yaml: expected a mapping .* got a list"),
        ("models: org/name\n", r"-f .*bad.yaml: 04_prompt_models's parameter 'models' expects"),
        ("modles: []\n", r"-f .*bad.yaml: no selected notebook .* 'modles'; did you mean models"),
        ("99_nothing:\n  a: 1\n", r"-f .*bad.yaml: '99_nothing' names no notebook"),
    ],
)
def test_bad_files_name_the_file(tmp_path, text, error):
    bad = tmp_path / "bad.yaml"
    bad.write_text(text)
    with pytest.raises(SystemExit, match=error):
        resolve([NB04], [str(bad)], [])


def _notebook(path, step: str) -> None:
    params = new_code_cell(
        'profile: str = "paper"  # results folder\n'
        'value: int = 1  # a number\nnames: list = ["a"]  # some names'
    )
    params.metadata["tags"] = ["parameters"]
    body = (
        f"from medsafe_utils.core.artifacts import start_step\n"
        f"run = start_step(profile, {step!r}, globals())\n"
        f'run.path("tab_x.csv").write_text(f"value,names\\n{{value}},{{len(names)}}\\n")\n'
        f"run.finish()"
    )
    nb = new_notebook(cells=[new_markdown_cell("# t"), params, new_code_cell(body)])
    nb.metadata["kernelspec"] = {
        "name": "python3",
        "display_name": "Python 3",
        "language": "python",
    }
    nbformat.write(nb, path)


@pytest.fixture
def two_steps(tmp_path, monkeypatch):
    nbs, params = tmp_path / "notebooks", tmp_path / "params"
    nbs.mkdir()
    (params / "smoke").mkdir(parents=True)
    for step in ("01_first", "02_second"):
        _notebook(nbs / f"{step}.ipynb", step)
    (params / "smoke" / "01_first.yaml").write_text("profile: smoke\nvalue: 7\n")
    monkeypatch.setattr(paths, "NOTEBOOKS_DIR", nbs)
    monkeypatch.setattr(paths, "PARAMS_DIR", params)
    monkeypatch.setenv(paths.RESULTS_ENV, str(tmp_path / "results"))
    return tmp_path / "results" / "smoke"


def test_overrides_are_recorded_and_rerun_only_what_changed(two_steps, capsys):
    assert pipeline.main(["smoke", "-p", "value", "9", "--only", "01", "02"]) == 0
    for step in ("01_first", "02_second"):
        assert (two_steps / step / "tab_x.csv").read_text() == "value,names\n9,1\n"
        manifest = json.loads((two_steps / step / "manifest.json").read_text())
        assert manifest["overrides"] == {"value": 9} and manifest["params"]["value"] == 9
        assert manifest["wall_s"] > manifest["duration_s"] >= 0  # wall_s: with the kernel
    assert "report.html" in capsys.readouterr().out

    assert pipeline.main(["smoke", "-p", "value", "9"]) == 0
    assert capsys.readouterr().out.count("up to date, skipped") == 2
    names = two_steps.parent.parent / "names.yaml"
    names.write_text("names: [a, b, c]\n")
    assert pipeline.main(["smoke", "-p", "value", "9", "-f", str(names), "--only", "02"]) == 0
    assert "up to date" not in capsys.readouterr().out
    assert (two_steps / "02_second" / "tab_x.csv").read_text() == "value,names\n9,3\n"
    manifest = json.loads((two_steps / "02_second" / "manifest.json").read_text())
    assert manifest["overrides"] == {"names": ["a", "b", "c"], "value": 9}

    assert pipeline.main(["smoke"]) == 0  # back to the profile: both rerun
    assert "up to date" not in capsys.readouterr().out
    assert (two_steps / "01_first" / "tab_x.csv").read_text() == "value,names\n7,1\n"
    assert json.loads((two_steps / "01_first" / "manifest.json").read_text())["overrides"] == {}


def test_errors_come_before_anything_runs(two_steps):
    with pytest.raises(SystemExit, match=r"-p names: 01_first's parameter 'names' expects list"):
        pipeline.main(["smoke", "-p", "names", "a"])
    (paths.PARAMS_DIR / "smoke" / "02_second.yaml").write_text("profile: smoke\nvalue: seven\n")
    with pytest.raises(
        SystemExit,
        match=r"02_second.ipynb \(params/smoke/02_second.yaml \+ "
        r"overrides\): parameter 'value' expects int, got str 'seven'",
    ):
        pipeline.main(["smoke"])
    assert not two_steps.exists()  # 01 did not run either


def test_every_profile_fits_its_parameters_cells():
    for profile in sorted(p.name for p in paths.PARAMS_DIR.iterdir() if p.is_dir()):
        for notebook in pipeline.notebooks():
            pipeline.check_params(notebook, pipeline.profile_params(profile, notebook), profile)


def test_a_step_records_the_names_papermill_finds_in_its_parameters_cell(tmp_path):
    """start_step reads the parameters cell without papermill: the same names, every notebook."""
    from medsafe_utils.core.artifacts import parameter_names

    for notebook in pipeline.notebooks():
        names = parameter_names(notebook)
        assert names == list(declared(notebook)) and "profile" in names, notebook.name
    cell = new_code_cell('a: int = 1  # help\nb = [1,\n     2]\nc: str\nd = "x"  # last')
    cell.metadata["tags"] = ["parameters"]
    nb = new_notebook(cells=[new_code_cell("z = 0"), cell, new_code_cell("y = 1")])
    nbformat.write(nb, tmp_path / "n.ipynb")
    assert parameter_names(tmp_path / "n.ipynb") == ["a", "b", "d"]
    nbformat.write(new_notebook(cells=[new_markdown_cell("no parameters")]), tmp_path / "m.ipynb")
    assert parameter_names(tmp_path / "m.ipynb") == []
