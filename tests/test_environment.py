"""environment.yml and pyproject.toml list the same dependencies, and scripts/constraints.txt pins
a version of each that its range allows; the profiles fit the notebooks."""

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


def test_constraints_pin_every_dependency_within_its_range():
    from packaging.requirements import Requirement
    from packaging.utils import canonicalize_name

    project = tomllib.loads((paths.REPO_ROOT / "pyproject.toml").read_text())["project"]
    lines = (paths.REPO_ROOT / "scripts" / "constraints.txt").read_text().splitlines()
    pins = {}
    for line in lines:
        if line.strip() and not line.startswith("#"):
            name, version = line.split("==")
            pins[canonicalize_name(name)] = version
    extras = project["optional-dependencies"]
    wanted = [Requirement(r) for r in [*project["dependencies"], *extras["test"]]]
    ours = canonicalize_name(project["name"])
    for requirement in [r for r in wanted if canonicalize_name(r.name) == ours]:
        wanted += [Requirement(r) for extra in requirement.extras for r in extras[extra]]
    for requirement in wanted:
        name = canonicalize_name(requirement.name)
        if name == ours:  # the test extra names another extra: its requirements are added above
            continue
        if name == "torch":  # its build is setup_env.sh's choice (CPU, CUDA)
            assert name not in pins
            continue
        assert name in pins, f"scripts/constraints.txt pins no version of {requirement.name}"
        assert requirement.specifier.contains(pins[name], prereleases=True), (
            f"scripts/constraints.txt: {requirement.name}=={pins[name]} is outside {requirement}"
        )


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
