"""Run the notebooks in order with papermill (python -m medsafe_utils.pipeline.run; run_all.sh).

Each notebook gets the profile's parameter file params/<profile>/<NN_name>.yaml, then the
command line's -f files and -p NAME VALUE pairs (medsafe_utils.pipeline.overrides), and is
executed into results/<profile>/executed/. A step whose notebook, parameters, library code, data
manifest and upstream results are unchanged since its last successful run is skipped (the hash
is kept in its manifest.json); --force reruns. The first failure stops the run, naming notebook
and cell.
Every run ends with results/<profile>/INDEX.md and report.html (medsafe_utils.pipeline.report).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import time
from pathlib import Path

import yaml

from medsafe_utils.core import paths
from medsafe_utils.core.redact import redact
from medsafe_utils.core.steps import DEPENDS
from medsafe_utils.core.store import SHARDS_DIR
from medsafe_utils.pipeline import fanout
from medsafe_utils.pipeline.overrides import check_params, resolve

HASH_KEY = "pipeline_hash"


def notebooks() -> list[Path]:
    """The pipeline's notebooks (NN_name.ipynb), in order."""
    return sorted(paths.NOTEBOOKS_DIR.glob("[0-9][0-9]_*.ipynb"))


def profile_params(profile: str, notebook: Path) -> dict:
    """The parameters a profile sets for one notebook (its file may be absent: defaults)."""
    path = paths.PARAMS_DIR / profile / f"{notebook.stem}.yaml"
    params = yaml.safe_load(path.read_text(encoding="utf-8")) if path.exists() else {}
    return {**(params or {}), "profile": profile}


def select(all_notebooks: list[Path], only: list[str], start: str | None) -> list[Path]:
    """Notebooks chosen by --only NN ... or --from NN."""
    if only:
        chosen = [nb for nb in all_notebooks if nb.stem[:2] in only]
        missing = set(only) - {nb.stem[:2] for nb in chosen}
        if missing:
            raise SystemExit(f"no notebook numbered {sorted(missing)} in {paths.NOTEBOOKS_DIR}")
        return chosen
    if start:
        return [nb for nb in all_notebooks if nb.stem[:2] >= start]
    return all_notebooks


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
    )
    manifest = _manifest(profile, notebook.stem, shard)
    if manifest.exists():
        record = json.loads(manifest.read_text(encoding="utf-8")) | (extra or {})
        record[HASH_KEY] = digest
        record["overrides"] = redact(overrides or {})
        record["wall_s"] = round(time.time() - began, 2)  # with kernel start, unlike duration_s
        manifest.write_text(json.dumps(record, indent=2, default=str) + "\n", encoding="utf-8")
    return executed


def _report(profile: str, timings: list[tuple[str, float, str]], harmful_text: bool) -> None:
    from medsafe_utils.pipeline.index import write_index
    from medsafe_utils.pipeline.report import write_report

    print(f"\n{'step':<22} {'seconds':>8}  status")
    for step, seconds, status in timings:
        print(f"{step:<22} {seconds:8.1f}  {status}")
    print(f"{'total':<22} {sum(t[1] for t in timings):8.1f}")
    profile_dir = paths.results_root() / profile
    if profile_dir.is_dir():
        index = write_index(profile_dir)
        print(f"\nartifacts (see {index}):")
        for step, _, _ in timings:
            for path in sorted((profile_dir / step).glob("*")):
                if path.is_file():
                    print(f"  {path}")
        report = write_report(profile_dir, {s: status for s, _, status in timings}, harmful_text)
        print(f"\nreport: {report}")


def _fan_out(notebook: Path, profile: str, overrides: dict, args, settings) -> dict | None:
    """The step's slices as jobs (pipeline.fanout); the manifest's record of them, or None
    (every failed job named, with its log) when one failed."""
    from dataclasses import asdict

    def is_done(slice_overrides: dict) -> bool:
        slice_params = {**profile_params(profile, notebook), **slice_overrides}
        digest = step_hash(notebook, profile, slice_params)
        return is_current(notebook, profile, digest, slice_overrides["shard"])

    outcomes = fanout.fan_out(notebook, profile, overrides, args.executor, settings, is_done)
    for o in outcomes:
        print(f"    {o.shard:<28} {o.status:<7} {o.job_id} {o.log}")
    failed = [o for o in outcomes if o.status == "failed"]
    for o in failed:
        print(
            f"\nFAILED job of {notebook.stem}: {o.slice} (shard {o.shard}, job {o.job_id}); "
            f"log: {o.log or 'none (debug executor)'}\n  {o.error}\n  its finished items are "
            "kept in its shard; the same command resubmits only what is missing",
            file=sys.stderr,
        )
    if failed:
        return None
    return {
        "fanout": {
            "executor": {"cluster": args.executor, **asdict(settings)},
            "jobs": [asdict(o) for o in outcomes],
        }
    }


def build_parser() -> argparse.ArgumentParser:
    """run_all.sh's command line (the README's commands are checked against it)."""
    parser = argparse.ArgumentParser(prog="run_all.sh", description=__doc__.splitlines()[0])
    parser.add_argument("profile", nargs="?", default="smoke", help="params/<profile>/ (smoke)")
    parser.add_argument("--only", nargs="+", default=[], metavar="NN", help="run just these")
    parser.add_argument("--from", dest="start", metavar="NN", help="start at this notebook")
    parser.add_argument("--force", action="store_true", help="rerun steps that are up to date")
    parser.add_argument(
        "-p",
        "--parameters",
        nargs=2,
        action="append",
        default=[],
        metavar=("NAME", "VALUE"),
        help="set a parameter of every selected notebook that has it (NN_name.NAME: of that "
        "notebook only); VALUE is YAML: -p models '[\"org/name\"]'",
    )
    parser.add_argument(
        "-f",
        "--parameters-file",
        action="append",
        default=[],
        metavar="FILE.yaml",
        help="parameters over the profile's (later files win, -p wins over -f)",
    )
    parser.add_argument(
        "--executor",
        choices=fanout.EXECUTORS,
        help="fan each selected step's sweep out as jobs through submitit (04: a job per model, "
        "06 and 07: per base model), then run the step once on their results; settings from "
        "params/executor.yaml, a -f file's `executor:` section, -p executor.NAME VALUE",
    )
    parser.add_argument(
        "--show-harmful-text",
        action="store_true",
        help="report.html shows sample requests and responses (research use; off: none)",
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        paths.check_profile(args.profile)  # before anything runs: '../x' would write outside
    except ValueError as err:
        raise SystemExit(str(err)) from None
    if not (paths.PARAMS_DIR / args.profile).is_dir():
        raise SystemExit(
            f"unknown profile {args.profile!r}: no folder {paths.PARAMS_DIR / args.profile}"
        )

    from papermill.exceptions import PapermillExecutionError

    # Every parameter of every selected notebook is checked before anything runs.
    selected = select(notebooks(), args.only, args.start)
    settings, pairs = fanout.read_settings(args.profile, args.parameters_file, args.parameters)
    overrides = resolve(selected, args.parameters_file, pairs)
    params = {nb: {**profile_params(args.profile, nb), **overrides[nb.stem]} for nb in selected}
    for notebook in selected:
        check_params(
            notebook, params[notebook], f"params/{args.profile}/{notebook.stem}.yaml + overrides"
        )

    timings: list[tuple[str, float, str]] = []
    for notebook in selected:
        began = time.time()
        if not args.force and is_current(
            notebook, args.profile, step_hash(notebook, args.profile, params[notebook])
        ):
            print(f"==> {notebook.name} [{args.profile}]: up to date, skipped (--force reruns)")
            timings.append((notebook.stem, time.time() - began, "skipped"))
            continue
        print(f"==> {notebook.name} [{args.profile}]", flush=True)
        record = None
        if args.executor and fanout.plan(notebook, params[notebook]):
            record = _fan_out(notebook, args.profile, overrides[notebook.stem], args, settings)
            if record is None:
                timings.append((notebook.stem, time.time() - began, "failed"))
                _report(args.profile, timings, args.show_harmful_text)
                return 1
        try:
            run_notebook(notebook, args.profile, overrides[notebook.stem], extra=record)
        except PapermillExecutionError as err:
            print(
                f"\nFAILED: {notebook.name}, cell {err.cell_index} (execution count "
                f"{err.exec_count}): {err.ename}: {err.evalue}\nexecuted copy: "
                f"{paths.results_root() / args.profile / 'executed' / notebook.name}",
                file=sys.stderr,
            )
            timings.append((notebook.stem, time.time() - began, "failed"))
            _report(args.profile, timings, args.show_harmful_text)
            return 1
        timings.append((notebook.stem, time.time() - began, "ran"))
        print(f"    done in {timings[-1][1]:.1f} s", flush=True)
    _report(args.profile, timings, args.show_harmful_text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
