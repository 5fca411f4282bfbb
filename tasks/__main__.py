"""Command line: `python -m tasks prepare <task slug | suite>... [--data-dir DIR] [--cache-dir DIR]`
builds the array cache of tasks or of every task of a suite (demo, vtab1k, fgvc), from TFDS, from
an exported folder (`--from-folder`), or generated (demo); `--sweep 400,800,5000` and
`--one-shot` add the data-size and one-shot splits. `python -m tasks import NAME --from-folder
DIR | --from-csv FILE` makes a task of your own images that every study finds by NAME.
`python -m tasks list` shows what is prepared and which sweep sizes each task supports.
Idempotent, task by task; `--force` rebuilds."""
from __future__ import annotations

import argparse
import os
import sys

from common.errors import StudyInputError, exit_status
from tasks.cache import default_cache_dir, is_prepared, read_manifest
from tasks.prepare import prepare
from tasks.spec import SUITES, TASKS, get_task, imported_slugs
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
    importing = add_import_parser(commands)
    for sub in (prep, listing, importing):
        sub.add_argument("--cache-dir", default=default_cache_dir(),
                         help="the task cache (default: $VPT_CACHE_DIR, else ./cache)")
    return parser


IMPORT_HELP = """\
Make a task of your own images in the cache; every study then finds it by NAME,
as it finds a built-in task (studies look in the cache VPT_CACHE_DIR or their
--cache-dir names). For example:
  python -m tasks import leaves --from-folder /data/leaves --train-size 400
  python -m tasks import scans --from-csv /data/scans/list.csv

Input: --from-folder DIR, one sub-folder per class (its images at any depth),
or --from-csv FILE, rows `path,label[,split]` (an optional header row; paths
relative to the CSV's folder or --root; split: train, val or test). A path that
resolves outside the root (.., an absolute path elsewhere, a link out) is refused.

Splits: VTAB-1k's by default: a stratified held-out test share (--test-fraction),
then train800 and val200 from the rest, and train800val200 = both. --train-size N
and --val-fraction F (val's share of train + val; 0.2 is 4:1) give trainN / valV /
trainNvalV (a study's data setting "N"). A CSV's split column is used as it is;
a missing val or test split is carved from its train rows. Every draw is
stratified by class and seeded (--seed). Byte-identical files are one image:
the first copy is kept (all dropped where their labels differ), so no image is
in two splits.

Images are decoded with Pillow, EXIF-rotated, converted to RGB (grey, palette,
RGBA, CMYK and 16-bit included) and resized to --image-size as the built-in
VTAB tasks are. Files that cannot be used are skipped with one line per kind of
problem; input that leaves no usable task is one `error:` line and exit status 2,
with nothing written (the task is built aside and moved into the cache whole).
The manifest records each split's indices into files.json and a digest."""


def add_import_parser(commands) -> argparse.ArgumentParser:
    from tasks.importer import IMPORT_GROUPS
    sub = commands.add_parser("import", help="make a task of your own images (a class per "
                              "folder, or a CSV)", description=IMPORT_HELP,
                              formatter_class=argparse.RawDescriptionHelpFormatter)
    sub.add_argument("name", help="the task's name (letters, digits, _ and -)")
    given = sub.add_mutually_exclusive_group(required=True)
    given.add_argument("--from-folder", metavar="DIR", help="a folder with a sub-folder per class")
    given.add_argument("--from-csv", metavar="FILE", help="a CSV of path,label[,split] rows")
    sub.add_argument("--root", metavar="DIR", help="the folder CSV paths are relative to, and "
                     "that no path may leave (default: the CSV's folder, or the --from-folder)")
    sub.add_argument("--train-size", type=int, metavar="N",
                     help="training images (default 800, as VTAB-1k)")
    sub.add_argument("--val-fraction", type=float, default=0.2, metavar="F",
                     help="val's share of train + val (default 0.2: 4:1, val200 for train800)")
    sub.add_argument("--test-fraction", type=float, default=0.2, metavar="F",
                     help="the held-out test share where the input names no test split "
                          "(default 0.2, at least one image of each class)")
    sub.add_argument("--seed", type=int, default=0, help="seed of the stratified draws")
    sub.add_argument("--image-size", type=int, default=224, help="the backbone's input size")
    sub.add_argument("--group", choices=IMPORT_GROUPS, default="natural",
                     help="the VTAB group its results are reported under (default natural)")
    sub.add_argument("--max-pixels", type=int, metavar="N",
                     help="refuse images over N pixels (default: Pillow's MAX_IMAGE_PIXELS, "
                          "about 89 million)")
    sub.add_argument("--force", action="store_true", help="replace a task imported before")
    return sub


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    commands = {"list": lambda: list_tasks(args.cache_dir), "import": lambda: import_task(args),
                "prepare": lambda: prepare_target(args)}
    return exit_status(commands[args.command])


def list_tasks(cache_dir: str) -> None:
    print(f"{'task':<22} {'group':<12} {'cache':<9} sweep sizes the pool supports")
    for slug, task in TASKS.items():
        state = "prepared" if is_prepared(cache_dir, slug) else "-"
        sizes = ",".join(map(str, supported_sweeps(task))) or "-"
        print(f"{slug:<22} {task.group:<12} {state:<9} {sizes}")
    for slug in imported_slugs(cache_dir):
        task = get_task(slug, cache_dir)
        sizes = [split[5:] for split in task.splits if split[5:].isdigit()]
        print(f"{slug:<22} {task.group:<12} {'imported':<9} {','.join(sizes)}")


def import_task(args) -> None:
    from tasks import importer
    options = importer.ImportOptions(
        train_size=args.train_size, val_fraction=args.val_fraction,
        test_fraction=args.test_fraction, seed=args.seed, image_size=args.image_size,
        group=args.group, max_pixels=args.max_pixels, force=args.force)
    problems = importer.Problems()
    items, source = importer.sources(args.from_folder, args.from_csv, args.root, problems)
    manifest = importer.import_task(args.name, items, source, args.cache_dir, options,
                                    problems, progress=True)
    counts = ", ".join(f"{split} {entry['count']}" for split, entry in manifest["splits"].items())
    print(f"imported {args.name}: {manifest['num_classes']} classes, {counts} into "
          f"{os.path.join(args.cache_dir, 'tasks', args.name)}")


def prepare_target(args) -> None:
    slugs = list(dict.fromkeys(slug for target in args.target
                               for slug in SUITES.get(target)
                               or (get_task(target, args.cache_dir).slug,)))
    try:
        sweep = tuple(int(n) for n in args.sweep.split(",") if n)
    except ValueError:
        raise StudyInputError(f"--sweep takes sizes like 400,800, got '{args.sweep}'") from None
    for index, slug in enumerate(slugs, 1):
        wrote = prepare(get_task(slug, args.cache_dir), args.cache_dir, force=args.force,
                        data_dir=args.data_dir, from_folder=args.from_folder,
                        image_size=args.image_size, sweep=sweep, one_shot=args.one_shot,
                        progress=True)
        counts = {k: v["count"] for k, v in read_manifest(args.cache_dir, slug)["splits"].items()}
        print(f"[{index}/{len(slugs)}] {slug}: {'prepared' if wrote else 'already prepared'} "
              f"{counts}")


if __name__ == "__main__":
    sys.exit(main())
