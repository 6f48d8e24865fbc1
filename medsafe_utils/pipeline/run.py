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
import sys
import time
from pathlib import Path

from medsafe_utils.core import paths
from medsafe_utils.pipeline import fanout
from medsafe_utils.pipeline.execute import (
    is_current,
    notebooks,
    profile_params,
    run_notebook,
    step_hash,
)
from medsafe_utils.pipeline.overrides import check_params, resolve


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
