"""Warm kernels: notebook kernels forked from a process that has already imported torch,
transformers and the kernel itself, so that a notebook run does not spend 8-15 s on imports
before its first line. The test suite runs some 80 notebooks and turns this on; a user's
pipeline does not need it.

Opt-in, in two environment variables:
- MEDSAFE_WARM_KERNELS: the unix socket of a running server
  (`python -m medsafe_utils.pipeline.warm_kernels SOCKET`);
- JUPYTER_DEFAULT_PROVISIONER_NAME=medsafe-warm: jupyter_client launches kernels through
  `WarmProvisioner` (the entry point in pyproject.toml).

A warm kernel is the kernel a cold start would give, or none: the server forks one only for the
same Python and the standard kernel command, when every variable that a preloaded library reads
at import has the value it had at the server's start (else the kernel starts as usual, cold). The
child takes the launcher's environment, working folder, stdout and stderr, and a session of its
own (jupyter_client signals the process group). The preload must be silent: a warning (under a
kernel's default filters), a print or a log line that a cold kernel would show at import stops
the server instead of being hidden in it. A kernel forked here is the server's child, not the
launcher's; it exits when the launcher does, as a cold kernel does (ipykernel's parent poller).
"""

from __future__ import annotations

import importlib
import json
import logging
import os
import select
import signal
import socket
import subprocess
import sys
import time
import warnings
from typing import Any

from jupyter_client.provisioning import LocalProvisioner

log = logging.getLogger(__name__)

SOCKET_ENV = "MEDSAFE_WARM_KERNELS"
PROVISIONER = "medsafe-warm"
# Imported once in the server; the notebooks' own modules (medsafe_utils) are not: they are
# imported by each kernel, as in a cold start, with their warnings in the notebook.
PRELOAD = (
    "torch",
    "transformers",
    "transformers.models.llama.modeling_llama",
    "pandas",
    "scipy.stats",
    "peft",
    "openai",
    "datasets",
    "matplotlib.pyplot",
    "seaborn",
    "zmq",
    "IPython.core.interactiveshell",
)  # not ipykernel.kernelapp: it reads its parent's pid from the environment when imported
# Variables a preloaded library reads when it is imported (its settings, threads, paths).
IMPORT_TIME_PREFIXES = (
    "HF_",
    "TRANSFORMERS",
    "TORCH",
    "PYTORCH",
    "CUDA",
    "OMP_",
    "MKL_",
    "OPENBLAS",
    "TOKENIZERS",
    "BITSANDBYTES",
    "PYTHON",
    "MPLBACKEND",
)
# Which GPUs a process may see cannot matter to a torch built for CPUs only: the one import-time
# variable such a server ignores (submitit's local executor sets it for every job).
GPU_SELECTION = "CUDA_VISIBLE_DEVICES"
KERNEL_MODULE = "ipykernel_launcher"
READY_TIMEOUT_S = 300.0  # the server's preload, when a kernel is asked for at once


def import_time_env(env: dict[str, str]) -> dict[str, str]:
    return {k: v for k, v in env.items() if k.startswith(IMPORT_TIME_PREFIXES)}


def interpreter(argv: list[str]) -> list[str]:
    """The interpreter and its options of a `python ... -m module` command."""
    return argv[: argv.index("-m")] if "-m" in argv else argv


def refusal(request: dict, server: dict) -> str:
    """Why the server would not fork this kernel ("" when it would). `server`: its interpreter,
    its import-time variables before the preload, those the preload itself set and those it
    ignores."""
    argv = request["argv"]
    python = interpreter(argv)
    if python != server["interpreter"] or argv[len(python) : len(python) + 2] != [
        "-m",
        KERNEL_MODULE,
    ]:
        return f"not the server's interpreter and kernel: {argv[: len(python) + 2]}"
    asked, before, set_by_preload = import_time_env(request["env"]), server["env"], server["set"]
    differ = {
        k
        for k in (set(asked) | set(before)) - set(server["ignored"])
        if asked.get(k) != before.get(k)
        and not (k in set_by_preload and asked.get(k) in (None, set_by_preload[k]))
    }
    return f"import-time variables differ: {sorted(differ)}" if differ else ""


# --- the server -----------------------------------------------------------------------------


def _preload() -> None:
    """Import PRELOAD, silently or not at all: what an import warns, prints or logs (at the file
    descriptors too, which a kernel also shows) a cold kernel would show in the notebook."""
    import tempfile

    # the backend a kernel sets before any notebook imports matplotlib (ipykernel's kernelapp)
    os.environ.setdefault("MPLBACKEND", "module://matplotlib_inline.backend_inline")
    saved = [os.dup(1), os.dup(2)]
    with tempfile.TemporaryFile() as printed, warnings.catch_warnings(record=True) as caught:
        warnings.resetwarnings()  # the filters a kernel starts with: Python's defaults
        for fd in (1, 2):
            os.dup2(printed.fileno(), fd)
        try:
            for name in PRELOAD:
                importlib.import_module(name)
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            for fd, original in zip((1, 2), saved, strict=True):
                os.dup2(original, fd)
                os.close(original)
        printed.seek(0)
        output = printed.read().decode(errors="replace")
    quiet = (DeprecationWarning, ImportWarning, PendingDeprecationWarning)  # ignored by default
    shown = [w for w in caught if not issubclass(w.category, quiet)]
    if shown:
        first = shown[0]
        sys.exit(
            f"warm kernels: importing {PRELOAD} warned ({first.category.__name__}: "
            f"{first.message}); a cold kernel would show it, so none is forked"
        )
    if output:
        sys.exit(
            f"warm kernels: importing {PRELOAD} printed {output[:500]!r}; a cold kernel would "
            "show it, so none is forked"
        )


def _read_line(conn: socket.socket) -> tuple[bytes, list[int]]:
    message, fds, _, _ = socket.recv_fds(conn, 1 << 20, 4)
    while message and not message.endswith(b"\n"):
        more = conn.recv(1 << 20)
        if not more:
            break
        message += more
    return message, fds


def _send(conn: socket.socket, payload: dict) -> None:
    """Answer a launcher; one that has gone (killed, say) is not waiting for it."""
    try:
        conn.sendall(json.dumps(payload).encode() + b"\n")
    except OSError:
        pass


def _become_kernel(request: dict, fds: list[int]) -> None:
    """In the forked child: the launcher's session, streams, folder and environment, then the
    kernel's own main module. Never returns."""
    code = 1
    try:
        os.setsid()
        signal.signal(signal.SIGINT, signal.default_int_handler)  # the server ignores it
        os.dup2(os.open(os.devnull, os.O_RDONLY), 0)
        for fd, target in zip(fds, (1, 2), strict=False):
            os.dup2(fd, target)
        for fd in fds:
            os.close(fd)
        os.chdir(request["cwd"])
        os.environ.clear()
        os.environ.update(request["env"])
        _exit_with(request["launcher"])
        import numpy
        import torch

        numpy.random.seed()  # a fresh process's seeds are its own (random's: reseeded at fork)
        torch.seed()
        argv = request["argv"]
        sys.argv = [KERNEL_MODULE, *argv[argv.index(KERNEL_MODULE) + 1 :]]
        import runpy

        runpy.run_module(KERNEL_MODULE, run_name="__main__", alter_sys=True)
        code = 0
    except SystemExit as stop:
        code = stop.code if isinstance(stop.code, int) else (0 if stop.code is None else 1)
    except BaseException:  # noqa: BLE001 - the child must exit here, never return to the server
        import traceback

        traceback.print_exc()
    finally:
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except Exception:  # noqa: BLE001
                pass
        os._exit(code)


def _cpu_only_torch() -> bool:
    import torch

    return torch.version.cuda is None and torch.version.hip is None


def serve(path: str) -> None:
    """Listen on `path` at once (a launcher may connect while the preload runs), preload, then
    fork a kernel per request; report each kernel's exit status on its request's connection.
    Stops when the process that started it is gone."""
    parent = os.getppid()
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(path)
    listener.listen(64)
    before = import_time_env(dict(os.environ))
    _preload()
    after = import_time_env(dict(os.environ))
    server = {
        "interpreter": interpreter(sys.orig_argv),
        "env": before,
        "set": {k: v for k, v in after.items() if before.get(k) != v},
        "ignored": [GPU_SELECTION] if _cpu_only_torch() else [],
    }
    waiting: dict[int, socket.socket] = {}
    while os.getppid() == parent:
        ready, _, _ = select.select([listener], [], [], 0.2)
        while waiting:
            pid, status = os.waitpid(-1, os.WNOHANG)
            if not pid:
                break
            conn = waiting.pop(pid, None)
            if conn is not None:
                _send(conn, {"returncode": os.waitstatus_to_exitcode(status)})
                conn.close()
        if not ready:
            continue
        conn, _ = listener.accept()
        message, fds = _read_line(conn)
        try:
            request = json.loads(message)
            reason = refusal(request, server)
        except (ValueError, KeyError, TypeError) as error:
            reason = f"unreadable request: {error}"
        if reason:
            _send(conn, {"refused": reason})
            conn.close()
        else:
            pid = os.fork()
            if pid == 0:
                listener.close()
                conn.close()
                for other in waiting.values():
                    other.close()
                _become_kernel(request, fds)
            _send(conn, {"pid": pid})
            waiting[pid] = conn
        for fd in fds:
            os.close(fd)
    listener.close()


def start(path: str) -> subprocess.Popen:
    """Start a server on `path` (it preloads in the background) and return its process."""
    from jupyter_client.kernelspec import KernelSpecManager

    kernel = KernelSpecManager().get_kernel_spec("python3").argv  # its interpreter options too
    process = subprocess.Popen(
        [*interpreter(kernel), "-m", "medsafe_utils.pipeline.warm_kernels", path],
        stdin=subprocess.DEVNULL,
    )
    deadline = time.time() + 30
    while not os.path.exists(path):
        if process.poll() is not None or time.time() > deadline:
            raise RuntimeError(f"warm kernels: the server on {path} did not start")
        time.sleep(0.05)
    return process


# --- the launcher's side --------------------------------------------------------------------


class ForkedKernel:
    """What jupyter_client's LocalProvisioner asks of a kernel's Popen, for a kernel that the
    server forked: its exit status comes over the request's connection."""

    stdin = stdout = stderr = None

    def __init__(self, pid: int, conn: socket.socket, pending: bytes = b""):
        self.pid, self._conn, self._buffer, self.returncode = pid, conn, pending, None

    def _take(self, timeout: float | None) -> None:
        deadline = None if timeout is None else time.monotonic() + timeout
        while self.returncode is None:
            if b"\n" in self._buffer:
                self.returncode = json.loads(self._buffer.split(b"\n", 1)[0])["returncode"]
                self._conn.close()
                return
            left = None if deadline is None else max(0.0, deadline - time.monotonic())
            if self._conn.fileno() < 0:  # the server is gone: ask the process table instead
                if _gone(self.pid):
                    self.returncode = -signal.SIGKILL  # its status went with the server
                elif left != 0:
                    time.sleep(0.1 if left is None else min(0.1, left))
                    continue
                return
            if not select.select([self._conn], [], [], left)[0]:
                return
            more = self._conn.recv(4096)
            if more:
                self._buffer += more
            else:
                self._conn.close()

    def poll(self) -> int | None:
        self._take(0)
        return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        self._take(timeout)
        if self.returncode is None:
            raise subprocess.TimeoutExpired(KERNEL_MODULE, timeout)
        return self.returncode

    def send_signal(self, signum: int) -> None:
        if self.poll() is None:
            os.kill(self.pid, signum)

    def kill(self) -> None:
        self.send_signal(signal.SIGKILL)

    def terminate(self) -> None:
        self.send_signal(signal.SIGTERM)


def _gone(pid: int) -> bool:
    """The process has exited (a zombie has: it only waits for its parent to read its status)."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] in ("Z", "X")
    except FileNotFoundError:
        return True
    except OSError:  # no /proc: ask the kernel
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        return False


def _exit_with(launcher: int) -> None:
    """Exit when the process that launched this kernel exits, as a cold kernel does (ipykernel
    watches its parent, and the server is this one's)."""
    import threading

    def watch() -> None:
        while not _gone(launcher):
            time.sleep(0.2)
        os._exit(1)

    threading.Thread(target=watch, name="launcher-watch", daemon=True).start()


def fork_kernel(argv: list[str], env: dict[str, str], cwd: str) -> ForkedKernel | None:
    """A kernel forked by the server named in env[MEDSAFE_WARM_KERNELS]; None when there is no
    server or it refuses (the caller starts the kernel cold)."""
    path = env.get(SOCKET_ENV)
    if not path or not os.path.exists(path):
        return None
    conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        conn.connect(path)
        request = {"argv": argv, "env": env, "cwd": cwd, "launcher": os.getpid()}
        socket.send_fds(conn, [json.dumps(request).encode() + b"\n"], [1, 2])
        buffer = b""
        while b"\n" not in buffer:
            if not select.select([conn], [], [], READY_TIMEOUT_S)[0]:
                raise TimeoutError(f"the server on {path} did not answer")
            more = conn.recv(4096)
            if not more:
                raise ConnectionError(f"the server on {path} closed the connection")
            buffer += more
    except OSError as error:
        conn.close()
        warnings.warn(f"warm kernels: {error}; starting the kernel cold", stacklevel=2)
        return None
    line, rest = buffer.split(b"\n", 1)
    answer = json.loads(line)
    if "refused" in answer:
        conn.close()
        log.info("warm kernels: starting the kernel cold: %s", answer["refused"])
        return None
    return ForkedKernel(answer["pid"], conn, rest)


class WarmProvisioner(LocalProvisioner):
    """jupyter_client's local provisioner, with the kernel forked by the warm-kernel server
    where one is named and takes the request; started as usual otherwise."""

    async def launch_kernel(self, cmd: list[str], **kwargs: Any):
        env = {
            **(kwargs.get("env") or os.environ),
            "JPY_PARENT_PID": str(os.getpid()),
        }  # as launcher
        cwd = str(kwargs.get("cwd") or os.getcwd())
        forked = fork_kernel(list(cmd), dict(env), cwd)
        if forked is None:
            return await super().launch_kernel(cmd, **kwargs)
        self.process = forked
        self.pid = self.pgid = forked.pid  # the child's own session (setsid)
        self.cwd = cwd
        return self.connection_info


if __name__ == "__main__":
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # stopped by its parent's exit, not Ctrl-C
    serve(sys.argv[1])
