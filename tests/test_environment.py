"""environment.yml and pyproject.toml list the same dependencies; the profiles fit the notebooks."""

import tomllib

import papermill as pm
import pytest
import yaml

from medsafe_utils.core import paths
from medsafe_utils.pipeline.run import notebooks, profile_params


def test_environment_yml_matches_pyproject():
    project = tomllib.loads((paths.REPO_ROOT / "pyproject.toml").read_text())["project"]
    env = yaml.safe_load((paths.REPO_ROOT / "environment.yml").read_text())
    pip_deps = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict))
    assert sorted(pip_deps) == sorted(project["dependencies"])
    python = next(d for d in env["dependencies"] if isinstance(d, str) and d.startswith("python="))
    assert project["requires-python"] == ">=" + python.split("=")[1]


@pytest.mark.parametrize("profile", sorted(p.name for p in paths.PARAMS_DIR.iterdir()))
def test_every_profile_key_exists_in_its_notebook(profile):
    for notebook in notebooks():
        known = set(pm.inspect_notebook(str(notebook)))
        unknown = set(profile_params(profile, notebook)) - known
        assert not unknown, f"{profile}/{notebook.stem}: {sorted(unknown)} not in the notebook"


def test_profile_files_name_existing_notebooks():
    stems = {nb.stem for nb in notebooks()}
    for path in paths.PARAMS_DIR.glob("*/*.yaml"):
        assert path.stem in stems, f"{path} names no notebook"
        assert yaml.safe_load(path.read_text())["profile"] == path.parent.name, path
