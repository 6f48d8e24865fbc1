"""Helpers that test modules import by name (`from support import ...`): a module of its own,
because `from conftest import` finds whichever conftest.py comes first on sys.path."""

from __future__ import annotations

import os

import pytest

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
