"""Command line: `python -m tasks prepare <task slug | suite>... [--data-dir DIR] [--cache-dir DIR]`
builds the array cache of tasks or of every task of a suite (demo, vtab1k, fgvc), from TFDS, from
an exported folder (`--from-folder`), or generated (demo); `--sweep 400,800,5000` and
`--one-shot` add the data-size and one-shot splits. `python -m tasks list` shows what is
prepared and which sweep sizes each task supports. Idempotent, task by task; `--force` rebuilds."""
from __future__ import annotations

import argparse
import os
import sys

from common.errors import StudyInputError, exit_status
from tasks.cache import is_prepared, read_manifest
from tasks.prepare import prepare
from tasks.spec import SUITES, TASKS, get_task
from tasks.splits import supported_sweeps


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m tasks", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    prep = commands.add_parser("prepare", help="build the array cache of a task or suite")
    prep.add_argument("target", nargs="+",
                      help=f"task slugs or suites ({', '.join(SUITES)})")
    prep.add_argument("--force", action="store_true", help="rebuild even if prepared")
    prep.add_argument("--data-dir", help="TFDS data dir (default: TFDS's own)")
    prep.add_argument("--from-folder", help="root of an exported <task>/<split>.txt layout")
    prep.add_argument("--image-size", type=int, default=224, help="the backbone's input size")
    prep.add_argument("--sweep", default="", help="data-size sweep train sizes, e.g. 400,800,5000 "
                      "(800 is VTAB-1k's own train800 / val200, never replaced)")
    prep.add_argument("--one-shot", action="store_true", help="also one image per class splits")
    listing = commands.add_parser("list", help="tasks and whether they are prepared")
    for sub in (prep, listing):
        sub.add_argument("--cache-dir", default=os.environ.get("VPT_CACHE_DIR", "cache"))
    return parser


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    return exit_status(lambda: list_tasks(args.cache_dir) if args.command == "list"
                       else prepare_target(args))


def list_tasks(cache_dir: str) -> None:
    print(f"{'task':<22} {'group':<12} {'cache':<9} sweep sizes the pool supports")
    for slug, task in TASKS.items():
        state = "prepared" if is_prepared(cache_dir, slug) else "-"
        sizes = ",".join(map(str, supported_sweeps(task))) or "-"
        print(f"{slug:<22} {task.group:<12} {state:<9} {sizes}")


def prepare_target(args) -> None:
    slugs = list(dict.fromkeys(slug for target in args.target
                               for slug in SUITES.get(target) or (get_task(target).slug,)))
    try:
        sweep = tuple(int(n) for n in args.sweep.split(",") if n)
    except ValueError:
        raise StudyInputError(f"--sweep takes sizes like 400,800, got '{args.sweep}'") from None
    for index, slug in enumerate(slugs, 1):
        wrote = prepare(get_task(slug), args.cache_dir, force=args.force, data_dir=args.data_dir,
                        from_folder=args.from_folder, image_size=args.image_size, sweep=sweep,
                        one_shot=args.one_shot, progress=True)
        counts = {k: v["count"] for k, v in read_manifest(args.cache_dir, slug)["splits"].items()}
        print(f"[{index}/{len(slugs)}] {slug}: {'prepared' if wrote else 'already prepared'} "
              f"{counts}")


if __name__ == "__main__":
    sys.exit(main())
