"""python -m medsafe_utils.inspect_task import-log LOG --profile P --model NAME [--aligned]"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from medsafe_utils.core.errors import DataError


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m medsafe_utils.inspect_task",
        description="Bring an Inspect run of medsafetybench/medsafetybench into the pipeline.",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    imp = sub.add_parser(
        "import-log",
        help="add a log's answers to results/<profile>/04_prompt_models/responses.jsonl "
        "(05 judges them next)",
    )
    imp.add_argument("log", type=Path, help="an Inspect log of the task (.eval or .json)")
    imp.add_argument("--profile", required=True, help="results/<profile>/ to add the model to")
    imp.add_argument("--model", required=True, help="the model's name in 04's and 05's tables")
    imp.add_argument(
        "--aligned",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="safety-aligned or not (a registry model: the registry's)",
    )
    imp.add_argument("--group", choices=["general", "medical"], help="(a registry model: its)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")

    from medsafe_utils.inspect_task.log_import import import_log

    try:
        target = import_log(args.log, args.profile, args.model, args.aligned, args.group)
    except (DataError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    print(f"{args.model}: responses added to {target}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
