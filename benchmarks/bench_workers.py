"""How to run model work in parallel processes on a small machine: the question behind the test
suite's two pytest-xdist workers and their OMP_NUM_THREADS (tests/conftest.py).

Each side runs `--workers` copies of one job, a fresh Python process that imports torch and
transformers, loads the model and decodes `--prompts` MedSafety-Eval requests greedily (what a
notebook's kernel does): `serial` one after the other on all cores (pytest in one process),
`all_cores` at the same time, each on all cores (torch's default), `shared` at the same time,
each with its share of the cores (what conftest sets). Figures are medians of the wall time of
a side's whole batch of jobs over `--repeats` rotated rounds; ratios are serial / the side, per
round. Every job of every side must decode the same tokens (exit 1 otherwise).

    python benchmarks/bench_workers.py [--model smollm2-135m-instruct] [--workers 2]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
from benchmarks.harness import Bench, compare, figures, load_note, paired_ratios  # noqa: E402


def job(model: str, prompts: int, tokens: int) -> str:
    """One job (run in its own process): the digest of the token ids it decodes."""
    import torch

    from medsafe_utils.data import load_medsafetybench
    from medsafe_utils.models import load_model

    lm = load_model(model)
    requests = load_medsafetybench("test")["request"].head(prompts).tolist()
    digest = hashlib.sha256()
    with torch.inference_mode():
        for request in requests:
            ids = lm.tokenizer(request, return_tensors="pt").input_ids
            out = lm.model.generate(ids, max_new_tokens=tokens, do_sample=False)
            digest.update(json.dumps(out[0, ids.shape[1] :].tolist()).encode())
    return digest.hexdigest()


def command(model: str, prompts: int, tokens: int) -> list[str]:
    """The command line of one job."""
    args = ["--job", "--model", model, "--prompts", str(prompts), "--tokens", str(tokens)]
    return [sys.executable, str(Path(__file__).resolve()), *args]


def run_jobs(commands: list[list[str]], threads: int | None, together: bool) -> list[str]:
    """Run the jobs (at the same time or one after the other); their digests."""
    env = dict(os.environ)
    env.pop("OMP_NUM_THREADS", None)
    if threads:
        env["OMP_NUM_THREADS"] = str(threads)
    started: list[subprocess.Popen] = []
    digests = []
    for cmd in commands:
        started.append(subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, text=True))
        if not together:
            digests.append(_digest(started[-1]))
    return digests + [_digest(p) for p in started[len(digests) :]]


def _digest(process: subprocess.Popen) -> str:
    out, _ = process.communicate()
    if process.returncode:
        raise SystemExit(f"a job failed with exit code {process.returncode}")
    return out.strip().splitlines()[-1]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="smollm2-135m-instruct")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--prompts", type=int, default=16)
    parser.add_argument("--tokens", type=int, default=24)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--job", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.job:
        print(job(args.model, args.prompts, args.tokens))
        return

    cores = os.cpu_count() or 1
    share = max(1, cores // args.workers)
    commands = [command(args.model, args.prompts, args.tokens) for _ in range(args.workers)]
    print(f"{args.workers} jobs of {args.model}, {cores} cores; {load_note()}", flush=True)
    sides = {
        "serial": lambda: run_jobs(commands, None, together=False),
        "all_cores": lambda: run_jobs(commands, None, together=True),
        "shared": lambda: run_jobs(commands, share, together=True),
    }
    # one warm-up for all sides: a job alone (the model's files into the page cache)
    warmups = {name: lambda: None for name in sides}
    warmups["serial"] = lambda: run_jobs(commands[:1], None, together=False)
    runs = compare(sides, repeats=args.repeats, warmups=warmups)
    bench = Bench("bench_workers")
    digests = {d for side in runs.values() for run in side for d in run.output}
    bench.check("same_outputs", len(digests) == 1, f"{len(digests)} different decodings")
    seconds = {name: [r.seconds for r in side] for name, side in runs.items()}
    bench.finish(
        **figures("serial_s", seconds["serial"]),
        **figures("all_cores_s", seconds["all_cores"]),
        **figures("shared_s", seconds["shared"]),
        **figures("ratio_shared", paired_ratios(seconds["serial"], seconds["shared"])),
        **figures("ratio_all_cores", paired_ratios(seconds["serial"], seconds["all_cores"])),
        model=args.model,
        workers=args.workers,
        threads_shared=share,
        cores=cores,
        repeats=args.repeats,
    )


if __name__ == "__main__":
    main()
