"""A model server for the length of one fan-out job (executor setting `serve`).

The job starts the command (for vLLM: `vllm serve {model} --port {port} ...`), waits until
GET {api_base_url}/models answers, runs the notebook through the OpenAI-compatible backend
(backend: openai, api_base_url: http://127.0.0.1:PORT/v1, set for the whole step so that the
final run keys its items the same way), and stops the server at the end, failure included.

    with serving("vllm serve {model} --port {port}", {"models": ["llama2-7b-chat"],
                 "backend": "openai", "api_base_url": "http://127.0.0.1:8000/v1"}, 900):
        ...
"""

from __future__ import annotations

import contextlib
import logging
import shlex
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from urllib.parse import urlparse

log = logging.getLogger(__name__)


def serve_command(template: str, overrides: dict) -> tuple[list[str], str]:
    """(argv, base_url) of the server for a slice: {model}, {port} and {host} filled in."""
    if overrides.get("backend") != "openai" or not overrides.get("api_base_url"):
        raise SystemExit(
            "executor.serve needs -p backend openai -p api_base_url http://127.0.0.1:PORT/v1 "
            "(the final run keys its items by that URL, so it is a parameter of the whole step)"
        )
    from medsafe_utils.backends.factory import served_name  # loads torch: only when serving

    models = overrides.get("models") or overrides.get("base_models") or []
    if len(models) != 1:
        raise SystemExit(f"executor.serve serves one model per job, this slice has {models}")
    base_url = overrides["api_base_url"].rstrip("/")
    url = urlparse(base_url)
    argv = shlex.split(
        template.format(model=served_name(models[0]), port=url.port or 80, host=url.hostname)
    )
    return argv, base_url


def wait_until_up(proc: subprocess.Popen, base_url: str, wait_s: float) -> float:
    """Poll {base_url}/models until it answers 200; seconds waited (error if the server died)."""
    began = time.monotonic()
    while True:
        if proc.poll() is not None:
            raise RuntimeError(f"the server {proc.args} exited with {proc.returncode} at start")
        try:
            with urllib.request.urlopen(f"{base_url}/models", timeout=2) as reply:
                if reply.status == 200:
                    return time.monotonic() - began
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            pass
        if time.monotonic() - began > wait_s:
            raise RuntimeError(f"{proc.args} did not answer {base_url}/models within {wait_s} s")
        time.sleep(1)


def stop(proc: subprocess.Popen, grace_s: float = 30) -> int:
    """SIGTERM, then SIGKILL after `grace_s`; the exit code."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(grace_s)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    return proc.returncode


@contextlib.contextmanager
def serving(template: str, overrides: dict, wait_s: float = 900) -> Iterator[str | None]:
    """A server from `template` while the block runs (its base URL); no template: nothing."""
    if not template:
        yield None
        return
    argv, base_url = serve_command(template, overrides)
    log.info("starting %s", shlex.join(argv))
    proc = subprocess.Popen(argv)
    try:
        waited = wait_until_up(proc, base_url, wait_s)
        log.info("%s answered after %.1f s", base_url, waited)
        yield base_url
    finally:
        stop(proc)
