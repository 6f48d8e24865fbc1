"""The benchmarks' one timing and checking mechanism.

`compare` runs each side once untimed (warm-up: first kernels, allocations, caches), then
`repeats` times in a rotated order (repeat i starts at side i mod k), so no side is always
first or always runs on a cold or a busier machine. A side may return `Measured(seconds, out)`
to time only the work it names inside a longer call (a training loop without model loading);
otherwise the harness times the whole call. `Bench.check` records a claim (same outputs, none
lost, loss within a tolerance); `Bench.finish` prints the last line, `RESULT <name> key=value
...`, and exits 1 when any claim failed.

    bench = Bench("bench_x")
    runs = compare({"ours": run_ours, "baseline": run_base}, repeats=3)
    bench.check("same_outputs", runs["ours"][0].output == runs["baseline"][0].output)
    bench.finish(**figures("ours_items_s", rates(runs["ours"], n)), ...)
"""

from __future__ import annotations

import math
import os
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any


@dataclass
class Measured:
    """A side's result when it times its own work: seconds of the named work, its output."""

    seconds: float
    output: Any = None
    cpu_s: float = float("nan")


@dataclass
class Run:
    """One timed repeat of one side."""

    seconds: float
    cpu_s: float
    output: Any


def _timed(side: Callable[[], Any]) -> Run:
    wall, cpu = time.perf_counter(), time.process_time()
    out = side()
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    if isinstance(out, Measured):
        return Run(out.seconds, out.cpu_s, out.output)
    return Run(wall, cpu, out)


def rotations(names: list[str], repeats: int) -> list[list[str]]:
    """The run order of each repeat: repeat i starts at side i mod len(names)."""
    k = len(names)
    return [names[i % k :] + names[: i % k] for i in range(repeats)]


def compare(
    sides: dict[str, Callable[[], Any]],
    repeats: int = 3,
    warmups: dict[str, Callable[[], Any]] | None = None,
) -> dict[str, list[Run]]:
    """Warm up every side once (with `warmups[name]`, a smaller call, where given), then time
    `repeats` rotated rounds; returns each side's runs in order."""
    if repeats < 1:
        raise ValueError(f"repeats must be at least 1, got {repeats}")
    names = list(sides)
    for name in names:
        (warmups or sides).get(name, sides[name])()
        print(f"warm-up: {name} done", flush=True)
    runs: dict[str, list[Run]] = {name: [] for name in names}
    for i, order in enumerate(rotations(names, repeats)):
        for name in order:
            run = _timed(sides[name])
            runs[name].append(run)
            print(f"repeat {i + 1}/{repeats} {name}: {run.seconds:.2f} s", flush=True)
    return runs


def spread(values: list[float]) -> tuple[float, float, float]:
    """(median, min, max)."""
    return statistics.median(values), min(values), max(values)


def fmt(x: float, digits: int = 3) -> str:
    """A figure with `digits` significant digits, never in exponent notation."""
    if not math.isfinite(x) or x == 0:
        return str(x)
    decimals = max(0, digits - 1 - int(math.floor(math.log10(abs(x)))))
    return f"{x:.{decimals}f}"


def figures(key: str, values: list[float], digits: int = 3) -> dict[str, str]:
    """`key=median` and `key_range=min..max` for a RESULT line."""
    mid, lo, hi = spread(values)
    return {key: fmt(mid, digits), f"{key}_range": f"{fmt(lo, digits)}..{fmt(hi, digits)}"}


def rates(runs: list[Run], work: float) -> list[float]:
    """Work per second of each repeat (work: items, tokens ... done by one run)."""
    return [work / r.seconds for r in runs]


def paired_ratios(a: list[float], b: list[float]) -> list[float]:
    """a[i] / b[i]: repeats of the same round saw the same machine load."""
    return [x / y for x, y in zip(a, b, strict=True)]


def load_note() -> str:
    """The 1-minute load average on this machine's cores (other work skews wall time)."""
    return f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores"


class Bench:
    """Claims checked during a benchmark and its final RESULT line."""

    def __init__(self, name: str):
        self.name = name
        self.failed: list[str] = []

    def check(self, claim: str, ok: bool, detail: str = "") -> bool:
        """Record a claim; a failed one makes `finish` exit 1."""
        print(f"CHECK {claim}: {'ok' if ok else 'FAILED'}{f' ({detail})' if detail else ''}")
        if not ok:
            self.failed.append(claim)
        return ok

    def finish(self, **result: Any) -> None:
        """Print `RESULT <name> key=value ...` last; exit 1 if a claim failed."""
        result["failed"] = ",".join(self.failed) or "none"
        print(f"RESULT {self.name} " + " ".join(f"{k}={v}" for k, v in result.items()))
        sys.stdout.flush()
        if self.failed:
            raise SystemExit(1)


def parse_result(text: str) -> tuple[str, dict[str, str]]:
    """The benchmark name and key=value pairs of the RESULT line ending `text` (tests)."""
    last = text.strip().splitlines()[-1]
    word, name, *pairs = last.split()
    if word != "RESULT":
        raise ValueError(f"the last line is not a RESULT line: {last!r}")
    return name, dict(p.split("=", 1) for p in pairs)
