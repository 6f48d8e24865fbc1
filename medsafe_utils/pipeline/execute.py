"""One notebook run: its parameters, its hash (what decides that a step is up to date) and its
papermill execution into results/<profile>/executed/ with the step manifest's record. Both the
pipeline (pipeline.run) and a fan-out job (pipeline.fanout) run a step through `run_notebook`."""

from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path

import yaml

from medsafe_utils.core import paths
from medsafe_utils.core.redact import redact
from medsafe_utils.core.steps import DEPENDS
from medsafe_utils.core.store import SHARDS_DIR
from medsafe_utils.pipeline.overrides import check_params

HASH_KEY = "pipeline_hash"


def notebooks() -> list[Path]:
    """The pipeline's notebooks (NN_name.ipynb), in order."""
    return sorted(paths.NOTEBOOKS_DIR.glob("[0-9][0-9]_*.ipynb"))


def profile_params(profile: str, notebook: Path) -> dict:
    """The parameters a profile sets for one notebook (its file may be absent: defaults)."""
    path = paths.PARAMS_DIR / profile / f"{notebook.stem}.yaml"
    params = yaml.safe_load(path.read_text(encoding="utf-8")) if path.exists() else {}
    return {**(params or {}), "profile": profile}


def _hash_files(digest, files) -> None:
    for path in files:
        digest.update(str(path.name).encode())
        digest.update(path.read_bytes())


def step_hash(notebook: Path, profile: str, params: dict) -> str:
    """sha256 over the notebook, its parameters, the library, the data manifest and the results
    of its upstream steps (their files, not their timing-bearing manifests)."""
    digest = hashlib.sha256()
    digest.update(json.dumps(params, sort_keys=True).encode())
    library = paths.REPO_ROOT / "medsafe_utils"
    code = sorted(library.rglob("*.py")) + sorted(library.rglob("*.yaml"))
    _hash_files(digest, [notebook, paths.MANIFEST_PATH, *code])
    for upstream in DEPENDS.get(notebook.stem, []):
        folder = paths.results_root() / profile / upstream
        files = folder.rglob("*") if folder.is_dir() else []
        _hash_files(digest, sorted(p for p in files if p.is_file() and p.name != "manifest.json"))
    return digest.hexdigest()


def _manifest(profile: str, step: str, shard: str = "") -> Path:
    folder = paths.results_root() / profile / step
    return (folder / SHARDS_DIR / shard if shard else folder) / "manifest.json"


def is_current(notebook: Path, profile: str, digest: str, shard: str = "") -> bool:
    """True when the step's (or its shard's) last successful run had this hash."""
    manifest = _manifest(profile, notebook.stem, shard)
    if not manifest.exists():
        return False
    return json.loads(manifest.read_text(encoding="utf-8")).get(HASH_KEY) == digest


def run_notebook(
    notebook: Path, profile: str, overrides: dict | None = None, extra: dict | None = None
) -> Path:
    """Execute one notebook with papermill (the profile's parameters, then `overrides`); record
    its hash, the overrides, the wall time and `extra` in the step manifest (a shard's: its own
    executed copy and manifest, pipeline.fanout)."""
    import papermill as pm

    began = time.time()
    params = {**profile_params(paths.check_profile(profile), notebook), **(overrides or {})}
    check_params(notebook, params)
    digest = step_hash(notebook, profile, params)
    shard = str(params.get("shard") or "")
    name = f"{notebook.stem}.{shard}.ipynb" if shard else notebook.name
    executed = paths.results_root() / profile / "executed" / name
    executed.parent.mkdir(parents=True, exist_ok=True)
    pm.execute_notebook(
        str(notebook),
        str(executed),
        parameters=params,
        cwd=str(paths.NOTEBOOKS_DIR),
        kernel_name="python3",
        progress_bar=False,
        log_output=True,
        report_mode=False,
        # The kernel warns on the terminal that its sockets are TCP without encryption: they
        # listen on 127.0.0.1 for this one run, and a student reads the warning as a fault.
        extra_arguments=["--IPKernelApp.log_level=ERROR"],
    )
    manifest = _manifest(profile, notebook.stem, shard)
    if manifest.exists():
        record = json.loads(manifest.read_text(encoding="utf-8")) | (extra or {})
        record[HASH_KEY] = digest
        record["overrides"] = redact(overrides or {})
        record["wall_s"] = round(time.time() - began, 2)  # with kernel start, unlike duration_s
        manifest.write_text(json.dumps(record, indent=2, default=str) + "\n", encoding="utf-8")
    return executed
