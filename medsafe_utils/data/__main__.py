"""python -m medsafe_utils.data {fetch,summary,verify,manifest}"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from medsafe_utils.core import paths
from medsafe_utils.core.errors import DataError


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m medsafe_utils.data",
        description="Fetch, verify and summarise the project's data.",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    fetch = sub.add_parser("fetch", help="download (or copy from $MEDSAFE_DATA_MIRROR) and verify")
    fetch.add_argument("datasets", nargs="*", help="dataset names (default: all)")
    summary = sub.add_parser("summary", help="rows per dataset, loaded and validated")
    summary.add_argument("--json", action="store_true", help="machine-readable output")
    build = sub.add_parser("manifest", help="maintainers: rebuild data/manifest.json from a mirror")
    build.add_argument("mirror", type=Path)
    args = parser.parse_args(argv)

    try:
        if args.command == "fetch":
            from medsafe_utils.data.manifest import fetch as fetch_files

            done = fetch_files(args.datasets or None)
            print(f"{len(done)} files verified in {paths.downloads_dir()}")
        elif args.command == "summary":
            from medsafe_utils.data.summary import summarize

            rows = summarize()
            if args.json:
                print(json.dumps(rows, indent=2))
            else:
                for r in rows:
                    print(
                        f"{r['dataset']:<26} {r['rows']!s:>7} rows  (expected {r['expected']})"
                        f"  {r['license']}"
                    )
        elif args.command == "manifest":
            from medsafe_utils.data.manifest import build_manifest

            manifest = build_manifest(args.mirror)
            paths.MANIFEST_PATH.write_text(json.dumps(manifest, indent=1) + "\n", encoding="utf-8")
            print(f"wrote {paths.MANIFEST_PATH}")
    except DataError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
