"""Helpers that test modules import by name (`from support import ...`): a module of its own,
because `from conftest import` finds whichever conftest.py comes first on sys.path."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
import yaml

from medsafe_utils.core import paths

ALLOW_SKIP = "MEDSAFE_ALLOW_SKIP"  # =1: a local run may skip tests whose tools are not installed


def not_installed(what: str, install: str) -> None:
    """Fail the test: what it needs is not installed, which in CI is a broken install. Outside CI
    (CI unset), MEDSAFE_ALLOW_SKIP=1 turns this into a skip for a partial local setup."""
    message = f"{what} is not installed ({install})"
    if os.environ.get(ALLOW_SKIP) == "1" and os.environ.get("CI", "").lower() not in ("1", "true"):
        pytest.skip(message)
    pytest.fail(f"{message}; outside CI, {ALLOW_SKIP}=1 skips such tests instead", pytrace=False)


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# llama_cpp.server with llama.cpp's extra buffer types off (use_extra_bufts): on CPUs with AMX
# their repacked q4_1 weights crash llama-cpp-python 0.3.36 on any prompt of two or more tokens.
SERVER_WITHOUT_EXTRA_BUFFERS = """
import runpy, llama_cpp.llama_cpp as low
default = low.llama_model_default_params
def without_extra_buffers():
    params = default()
    params.use_extra_bufts = False
    return params
low.llama_model_default_params = without_extra_buffers
runpy.run_module("llama_cpp.server", run_name="__main__", alter_sys=True)
"""


# The smoke chain's parameters where the suite runs less than the smoke profile (each with why).
SMOKE_CHAIN_OVERRIDES = {
    # Llama-3 near duplicates on 300 of its requests, not the profile's 2,000 (the same code)
    "01_generate": {"llama3_near_dup_sample": 300},
    "02_jailbreak": {
        "search_width": 8,  # GCG candidates per step: half the profile's 16
        "max_new_tokens": 24,  # tokens of the test generation: not the profile's 64
    },
    "03_safe_responses": {"max_new_tokens": 24},  # tokens per safe response: half the profile's
    "04_prompt_models": {"n_general": 2},  # general-harm requests beside 18: not the 10 of smoke
    "05_judge": {
        "validate_n": 3,  # safe responses per judge: 3 AMA categories, not the profile's 9
        "review_n": 16,  # of the 20 responses (04 above): still a real subset
    },
    "06_finetune": {
        "n_values": [8],  # demonstrations per adapter: 2 steps of 4, not the profile's 4 steps
        "n_values_both": [8],
        "eval_n": 2,  # demonstrations whose loss is measured before and after: not all 8
        "n_verify": 1,  # held-out demonstrations of each adapter's check: not 3
        "n_general": 2,  # general-harm requests: 20 per model, not the profile's 24
        "max_new_tokens": 8,  # tokens per answer: a quarter of the profile's 32
        "validate_n": 3,  # safe responses per judge, as in 05 above
    },
    "07_medical_eval": {
        "n_per_benchmark": 2,  # items per benchmark: not the profile's 3 (the longest step)
        # few-shot with one seed of the profile's two: the average over seeds and its t interval
        # are checked by hand in tests/medical_eval (test_medeval, test_intervals_refusal_text)
        "seeds": [0],
        "over_refusal_n": 4,  # half the profile's over-refusal questions ...
        "over_refusal_max_new_tokens": 16,  # ... and tokens
        # one adapter of 06's three, by name: each adapter runs the same code
        "adapters": "adapter:smollm2-135m-instruct__both_n8",
    },
}


PAPER_SHAPED = paths.REPO_ROOT / "tests" / "paper_shaped"


def shaped_overrides(step: str) -> dict:
    """What a paper-shaped run of `step` changes in the paper profile
    (tests/paper_shaped/<step>.yaml)."""
    return yaml.safe_load((PAPER_SHAPED / f"{step}.yaml").read_text()) or {}


def chain_params(step: str) -> dict:
    """The parameters the suite's smoke chain runs `step` with: the smoke profile's, then
    SMOKE_CHAIN_OVERRIDES."""
    from medsafe_utils.pipeline.execute import profile_params  # not at conftest's start-up

    profile = profile_params("smoke", paths.NOTEBOOKS_DIR / f"{step}.ipynb")
    return profile | SMOKE_CHAIN_OVERRIDES.get(step, {})


def copy_smoke_steps(smoke_results, steps: tuple[str, ...], root: Path) -> Path:
    """Copy the smoke chain's folders of `steps` (run first if need be) into root/smoke, for a
    test that reruns a step: it sets the results root to `root` and reruns there."""
    for step in steps:
        shutil.copytree(smoke_results(step), root / "smoke" / step)
    return root / "smoke"
