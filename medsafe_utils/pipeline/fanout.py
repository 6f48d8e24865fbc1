"""A step's sweep as jobs (./run_all.sh PROFILE --only 04 --executor slurm|local|debug).

Each slice of the sweep (04: one model; 06: one base model and its adapters; 07: one base model
and its adapters) runs the step's own notebook through `execute.run_notebook` with the slice's
parameters and `shard`, as a submitit job: its files, caches and hand-off part go to
<step>/shards/<shard>/ (core.store reads a store's whole family), so no two jobs write one file.
A slice whose shard manifest carries the current hash is done and is not submitted again; a
failed job is resubmitted (`retries`), its finished items kept. Then the usual single run of the
step finds every item in the shards and writes the tables, figures and report.

    plan(Path("notebooks/04_prompt_models.ipynb"), {"models": ["a", "b"]})  # two slices
"""

from __future__ import annotations

import re
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import yaml

from medsafe_utils.core import paths

EXECUTORS = ("slurm", "local", "debug")
SETTINGS_FILE = "executor.yaml"  # params/executor.yaml: the defaults, one section per profile
SECTION = "executor"  # the section of a -f file; -p executor.NAME VALUE sets one setting


@dataclass
class ExecutorSettings:
    """Where and how the jobs run (recorded in every manifest of a fan-out)."""

    partition: str = ""  # SLURM partition; empty: the cluster's default
    gpus_per_job: int = 1
    cpus_per_job: int = 8
    mem_gb: int = 64
    timeout_min: int = 720  # per job
    array_parallelism: int = 32  # jobs of one array running at once
    retries: int = 1  # resubmissions of a failed job before it is reported
    additional: dict = field(default_factory=dict)  # sbatch options, e.g. {account: x, qos: y}
    serve: str = ""  # a command that serves the slice's model; "" answers in-process
    serve_wait_s: int = 900  # how long a job waits for the server's /v1/models

    @classmethod
    def from_layers(cls, *layers: dict) -> ExecutorSettings:
        """Settings from mappings, later wins; an unknown name is an error naming it."""
        known = set(cls.__dataclass_fields__)
        merged: dict = {}
        for layer in layers:
            unknown = sorted(set(layer) - known)
            if unknown:
                raise SystemExit(f"executor settings {unknown} unknown (known: {sorted(known)})")
            merged |= layer
        return cls(**merged)


@dataclass
class Slice:
    """One job's part of a step's sweep: its shard name and the parameters it adds."""

    shard: str
    params: dict

    def describe(self) -> str:
        """The slice in words, for messages."""
        return ", ".join(f"{k}={v}" for k, v in self.params.items() if k != "shard")


def shard_name(value: str) -> str:
    """A folder name for a model key, hub id or path ('org/name' -> 'org--name')."""
    return re.sub(r"[^\w.-]", "-", value.strip("/").replace("/", "--"))


def plan(notebook: Path, params: dict) -> list[Slice]:
    """The slices of a step's sweep, from its resolved parameters (a step without one: [])."""
    step = notebook.stem
    if step == "04_prompt_models":
        return [Slice(shard_name(m), {"models": [m]}) for m in params.get("models", [])]
    if step == "06_finetune":
        return [Slice(shard_name(b), {"base_models": [b]}) for b in params.get("base_models", [])]
    if step == "07_medical_eval":
        adapters = params.get("adapters", "all")
        return [
            Slice(
                shard_name(m),
                {"models": [m], "adapters": f"base:{m}" if adapters == "all" else adapters},
            )
            for m in params.get("models", [])
        ]
    return []


def read_settings(profile: str, files: list[str], pairs: list[tuple[str, str]]) -> tuple:
    """(ExecutorSettings, the -p pairs that are not executor settings).

    Layers: params/executor.yaml's `default` then its `<profile>` section, each -f file's
    `executor` section, then -p executor.NAME VALUE."""
    from medsafe_utils.pipeline.overrides import read_file

    path = paths.PARAMS_DIR / SETTINGS_FILE
    base = yaml.safe_load(path.read_text(encoding="utf-8")) if path.exists() else {}
    layers = [(base or {}).get("default") or {}, (base or {}).get(profile) or {}]
    layers += [read_file(f).get(SECTION) or {} for f in files]
    rest = []
    for name, text in pairs:
        if name.startswith(f"{SECTION}."):
            layers.append({name.removeprefix(f"{SECTION}."): yaml.safe_load(text)})
        else:
            rest.append((name, text))
    return ExecutorSettings.from_layers(*layers), rest


def executor(cluster: str, settings: ExecutorSettings, folder: Path, step: str):
    """A submitit AutoExecutor with the settings (logs and job pickles under `folder`)."""
    import submitit

    ex = submitit.AutoExecutor(folder=folder, cluster=cluster)
    options = {
        "name": f"medsafe-{step}",
        "timeout_min": settings.timeout_min,
        "gpus_per_node": settings.gpus_per_job,
        "cpus_per_task": settings.cpus_per_job,
        "mem_gb": settings.mem_gb,
        "slurm_array_parallelism": settings.array_parallelism,
    }
    if settings.partition:
        options["slurm_partition"] = settings.partition
    if settings.additional:
        options["slurm_additional_parameters"] = dict(settings.additional)
    ex.update_parameters(**options)
    return ex


def run_slice(notebook: str, profile: str, overrides: dict, record: dict) -> str:
    """One job: the step's notebook on its slice (the same papermill run as a whole step);
    with a serve command, a model server lives for the length of the job."""
    from medsafe_utils.pipeline.execute import run_notebook
    from medsafe_utils.pipeline.serve import serving

    command = record["executor"]["serve"]
    with serving(command, overrides, record["executor"]["serve_wait_s"]):
        return str(run_notebook(Path(notebook), profile, overrides, extra=record))


@dataclass
class Outcome:
    """What happened to one slice."""

    shard: str
    slice: str
    status: str  # done (earlier), ran, failed
    job_id: str = ""
    log: str = ""
    error: str = ""


def _log_path(job) -> str:
    try:
        return str(job.paths.stdout)
    except AttributeError:  # the debug executor's jobs keep no log file
        return ""


def fan_out(
    notebook: Path,
    profile: str,
    overrides: dict,
    cluster: str,
    settings: ExecutorSettings,
    is_done,
) -> list[Outcome]:
    """Submit every slice not yet done (`is_done(overrides) -> bool`), wait, resubmit failures
    up to `settings.retries` times; one Outcome per slice."""
    from medsafe_utils.pipeline.execute import profile_params

    resolved = {**profile_params(profile, notebook), **overrides}
    folder = paths.results_root() / profile / "jobs" / notebook.stem
    outcomes: dict[str, Outcome] = {}
    todo: list[tuple[Slice, dict]] = []
    slices = plan(notebook, resolved)
    for part in slices:
        slice_overrides = {**overrides, **part.params, "shard": part.shard}
        if is_done(slice_overrides):
            outcomes[part.shard] = Outcome(part.shard, part.describe(), "done")
        else:
            todo.append((part, slice_overrides))
    record = {"executor": {"cluster": cluster, **asdict(settings)}}
    for attempt in range(settings.retries + 1):
        if not todo:
            break
        ex = executor(cluster, settings, folder, notebook.stem)
        with ex.batch():  # one SLURM job array
            jobs = [
                ex.submit(run_slice, str(notebook), profile, o, record | {"slice": p.params})
                for p, o in todo
            ]
        print(f"    {notebook.stem}: submitted {len(jobs)} job(s) (attempt {attempt + 1})")
        failed = []
        for (part, slice_overrides), job in zip(todo, jobs, strict=True):
            outcome = Outcome(part.shard, part.describe(), "ran", str(job.job_id), _log_path(job))
            try:
                job.result()
            except Exception as err:  # a job's failure of any kind: kept, resubmitted, reported
                outcome.status, outcome.error = "failed", f"{type(err).__name__}: {err}"[-2000:]
                failed.append((part, slice_overrides))
            outcomes[part.shard] = outcome
        todo = failed
    return [outcomes[part.shard] for part in slices]  # in the sweep's order


def wait_for(jobs, poll_s: float = 2.0) -> None:
    """Block until every job has finished (for tests that cancel one on the way)."""
    while not all(job.done() for job in jobs):
        time.sleep(poll_s)
