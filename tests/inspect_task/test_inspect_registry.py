"""`inspect eval medsafetybench/medsafetybench` finds the task: the entry point is declared in
pyproject.toml, installed, and Inspect's registry resolves the name through it."""

from __future__ import annotations

import importlib.metadata
import tomllib

import pytest

import medsafe_utils.inspect_task  # noqa: F401 (without inspect_ai: says what to install)
from medsafe_utils.core import paths

NAME = "medsafetybench/medsafetybench"


def declared() -> str:
    project = tomllib.loads((paths.REPO_ROOT / "pyproject.toml").read_text())["project"]
    return project["entry-points"]["inspect_ai"]["medsafetybench"]


def require_installed_entry_point() -> None:
    """Fail, saying what to do, when the installed distribution lacks the declared entry point."""
    installed = {ep.name: ep.value for ep in importlib.metadata.entry_points(group="inspect_ai")}
    if installed.get("medsafetybench") != declared():
        pytest.fail(
            "the installed medsafetybench distribution does not declare the inspect_ai entry "
            f"point of pyproject.toml (installed: {installed}): refresh the install with "
            "`pip install --no-deps -e .` (or `pip install -e .[test]`)"
        )


def test_entry_point_is_declared_and_installed():
    assert declared() == "medsafetybench._registry"
    require_installed_entry_point()


def test_inspect_registry_resolves_the_task():
    from inspect_ai._util.registry import registry_info, registry_lookup

    require_installed_entry_point()
    found = registry_lookup("task", NAME)
    assert found is not None, f"Inspect's registry does not resolve {NAME}"
    assert registry_info(found).name == NAME
    params = registry_info(found).metadata["params"]
    assert {"sets", "per_group", "seed", "prompt_format", "system_prompt"} <= set(params)
