"""Command line: `python -m tasks prepare <task slug | suite> [--cache-dir DIR]` builds the array
cache of a task (or of every task of a suite: demo, vtab1k); `python -m tasks list` shows what
is prepared. Preparation is idempotent; `--force` rebuilds."""
from __future__ import annotations

import argparse
import os
import sys

from study.errors import StudyInputError
from tasks.cache import is_prepared, read_manifest
from tasks.prepare import prepare
from tasks.spec import SUITES, TASKS, get_task


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tasks", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    prep = commands.add_parser("prepare", help="build the array cache of a task or suite")
    prep.add_argument("target", help=f"a task slug or a suite ({', '.join(SUITES)})")
    prep.add_argument("--force", action="store_true", help="rebuild even if prepared")
    listing = commands.add_parser("list", help="tasks and whether they are prepared")
    for sub in (prep, listing):
        sub.add_argument("--cache-dir", default=os.environ.get("VPT_CACHE_DIR", "cache"))
    args = parser.parse_args(argv)
    try:
        if args.command == "list":
            for slug, task in TASKS.items():
                state = "prepared" if is_prepared(args.cache_dir, slug) else "-"
                print(f"{slug:<22} {task.group:<12} {state}")
            return 0
        slugs = SUITES.get(args.target) or (get_task(args.target).slug,)
        for index, slug in enumerate(slugs, 1):
            wrote = prepare(get_task(slug), args.cache_dir, force=args.force)
            counts = {k: v["count"] for k, v in read_manifest(args.cache_dir, slug)["splits"].items()}
            print(f"[{index}/{len(slugs)}] {slug}: {'prepared' if wrote else 'already prepared'} "
                  f"{counts}")
    except StudyInputError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
