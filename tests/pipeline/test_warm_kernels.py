"""Warm kernels (pipeline.warm_kernels): a notebook run in a kernel forked from the server gives
what a cold kernel gives (outputs, figures, folder, environment, threads), in the server's process
tree; a changed import-time variable or another interpreter starts cold; a kernel whose launcher
dies exits; a preload that warns or prints stops the server."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_notebook

from medsafe_utils.pipeline import warm_kernels

CELLS = [
    "import os, torch\nprint(os.getcwd(), os.environ['WARM_TEST'], torch.get_num_threads())",
    "print((torch.arange(90000.).reshape(300, 300) @ torch.ones(300, 300)).sum().item())",
    "import matplotlib.pyplot as plt\nfig, ax = plt.subplots()\nax.plot([3, 1])\nfig",
    "import warnings\nwarnings.warn('shown')",
    "print(os.getppid())",
]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """A server of this module's own (the suite's may be off: MEDSAFE_TEST_COLD_KERNELS=1)."""
    import tempfile

    folder = tempfile.mkdtemp(prefix="warm-test-")
    path = os.path.join(folder, "s.sock")
    process = warm_kernels.start(path)
    yield process, path
    process.terminate()
    process.wait(timeout=30)


@pytest.fixture
def notebook(tmp_path):
    path = tmp_path / "nb.ipynb"
    nb = new_notebook(cells=[new_code_cell(source) for source in CELLS])
    nb.metadata["kernelspec"] = {
        "name": "python3",
        "display_name": "Python 3",
        "language": "python",
    }
    nbformat.write(nb, path)
    return path


def _run(notebook, out, monkeypatch, socket_path: str | None, **env) -> list[list]:
    """Execute with papermill, the warm provisioner named, the server at socket_path (None: no
    server); each cell's outputs as (type, text or the MIME types)."""
    import papermill as pm
    from jupyter_client.provisioning.factory import KernelProvisionerFactory

    monkeypatch.setattr(
        KernelProvisionerFactory.instance(), "default_provisioner_name", warm_kernels.PROVISIONER
    )
    if socket_path is None:
        monkeypatch.delenv(warm_kernels.SOCKET_ENV, raising=False)
    else:
        monkeypatch.setenv(warm_kernels.SOCKET_ENV, socket_path)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    pm.execute_notebook(
        str(notebook), str(out), kernel_name="python3", progress_bar=False, cwd=str(notebook.parent)
    )
    cells = nbformat.read(out, 4).cells
    return [
        [
            (o.output_type, o.get("text") or o.get("name") or sorted(o.get("data", {})))
            for o in cell.outputs
        ]
        for cell in cells
    ]


def test_a_warm_kernel_gives_what_a_cold_one_gives(server, notebook, tmp_path, monkeypatch):
    process, path = server
    cold = _run(notebook, tmp_path / "cold.ipynb", monkeypatch, None, WARM_TEST="cold")
    warm = _run(notebook, tmp_path / "warm.ipynb", monkeypatch, path, WARM_TEST="warm")
    assert cold[0][0][1].startswith(f"{notebook.parent} cold ")
    assert warm[0] == [("stream", cold[0][0][1].replace("cold", "warm"))], "folder, env, threads"
    assert warm[1:3] == cold[1:3]
    assert ("display_data", ["image/png", "text/plain"]) in warm[2], "the inline backend's figure"
    assert "UserWarning: shown" in "".join(text for _, text in warm[3])
    assert int(warm[4][0][1]) == process.pid, "forked by the server"
    assert int(cold[4][0][1]) == os.getpid(), "started by this process"


def test_another_import_time_variable_or_interpreter_starts_cold(
    server, notebook, tmp_path, monkeypatch
):
    _, path = server
    flipped = "0" if os.environ.get("HF_HUB_OFFLINE") == "1" else "1"
    outputs = _run(
        notebook, tmp_path / "o.ipynb", monkeypatch, path, WARM_TEST="x", HF_HUB_OFFLINE=flipped
    )
    assert int(outputs[4][0][1]) == os.getpid()

    server_info = {
        "interpreter": [sys.executable],
        "env": {},
        "set": {"MPLBACKEND": "inline"},
        "ignored": [],
    }
    request = {"argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "c.json"], "env": {}}
    assert warm_kernels.refusal(request, server_info) == ""
    assert warm_kernels.refusal(request | {"env": {"MPLBACKEND": "inline"}}, server_info) == ""
    assert "MPLBACKEND" in warm_kernels.refusal(
        request | {"env": {"MPLBACKEND": "agg"}}, server_info
    )
    assert "OMP_NUM_THREADS" in warm_kernels.refusal(
        request | {"env": {"OMP_NUM_THREADS": "1"}}, server_info
    )
    hidden = request | {"env": {"CUDA_VISIBLE_DEVICES": ""}}  # as submitit's local jobs ask
    assert "CUDA_VISIBLE_DEVICES" in warm_kernels.refusal(hidden, server_info)
    cpu_only = server_info | {"ignored": ["CUDA_VISIBLE_DEVICES"]}  # a torch without CUDA
    assert warm_kernels.refusal(hidden, cpu_only) == ""
    assert "OMP_NUM_THREADS" in warm_kernels.refusal(
        request | {"env": {"OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": ""}}, cpu_only
    )
    other = request | {"argv": ["/usr/bin/python3", "-m", "ipykernel_launcher", "-f", "c.json"]}
    assert "interpreter" in warm_kernels.refusal(other, server_info)
    not_a_kernel = request | {"argv": [sys.executable, "-m", "http.server"]}
    assert "interpreter and kernel" in warm_kernels.refusal(not_a_kernel, server_info)


LAUNCHER = """
import json, os, sys, time
from jupyter_client.connect import write_connection_file
from medsafe_utils.pipeline import warm_kernels
connection, _ = write_connection_file(sys.argv[1])
argv = [*warm_kernels.interpreter(json.loads(sys.argv[2])), "-m", "ipykernel_launcher", "-f",
        connection]
kernel = warm_kernels.fork_kernel(argv, dict(os.environ), os.getcwd())
print(kernel.pid, flush=True)
time.sleep(600)
"""


def test_a_kernel_exits_when_its_launcher_dies(server, tmp_path):
    from jupyter_client.kernelspec import KernelSpecManager

    process, path = server
    spec = KernelSpecManager().get_kernel_spec("python3").argv
    launcher = subprocess.Popen(
        [sys.executable, "-c", LAUNCHER, str(tmp_path / "k.json"), json.dumps(spec)],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, warm_kernels.SOCKET_ENV: path},
    )
    kernel = int(launcher.stdout.readline())
    time.sleep(1)
    assert not warm_kernels._gone(kernel), "the kernel runs while its launcher does"
    launcher.kill()
    launcher.wait()
    deadline = time.time() + 10
    while not warm_kernels._gone(kernel):
        assert time.time() < deadline, "the kernel outlived its launcher"
        time.sleep(0.1)
    time.sleep(1)  # the server reaps the kernel, then answers a launcher that is gone
    assert process.poll() is None, "the server outlives a killed launcher"


@pytest.mark.parametrize(
    "module, said",
    [
        ("import warnings\nwarnings.warn('at import', UserWarning)\n", "warned (UserWarning"),
        ("print('at import')\n", "printed 'at import\\n'"),
        ("import logging\nlogging.getLogger('x').warning('at import')\n", "printed 'at import"),
        ("import os\nos.write(2, b'at import')\n", "printed 'at import'"),
    ],
    ids=["warning", "print", "log", "file-descriptor"],
)
def test_a_preload_that_says_anything_stops_the_server(tmp_path, module, said):
    (tmp_path / "noisy.py").write_text(module)
    code = (
        "import sys\nfrom medsafe_utils.pipeline import warm_kernels as w\n"
        "w.PRELOAD = ('noisy',)\nw.serve(sys.argv[1])"
    )
    done = subprocess.run(
        [sys.executable, "-c", code, str(tmp_path / "s.sock")],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "PYTHONPATH": str(tmp_path)},
    )
    assert done.returncode == 1
    assert f"warm kernels: importing ('noisy',) {said}" in done.stderr


def test_a_test_sets_an_import_time_variable_in_the_process():
    """With the next test: the suite undoes it (conftest), or every later kernel starts cold."""
    os.environ["HF_WARM_KERNELS_TEST"] = "1"  # as benchmarks' main() sets HF_DATASETS_OFFLINE
    os.environ["OMP_NUM_THREADS"] = "7"


def test_the_suite_unset_it_after_that_test():
    assert "HF_WARM_KERNELS_TEST" not in os.environ
    assert os.environ.get("OMP_NUM_THREADS") != "7"
