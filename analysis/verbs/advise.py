"""`advise`: VPT or FT for a new task, by the paper's findings (FID to the pretraining data,
task disparity, training-set size), citing the nearest tasks the study measured. FID grows as
the sample shrinks, so the task's FID and the reference tasks' (whose median the rule reads) are
all measured at the same number of images, the task's own (at most --samples), by random
subsets; below `MIN_IMAGES` there is no verdict. The reference tasks are the demo suite for a
backbone pretrained on the demo's upstream images, else the study's tasks. With no study run
yet the answer is the rule's alone (the default study's backbone and tasks)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from analysis import fid as fid_lib
from analysis.advise import MIN_IMAGES, recommend
from analysis.inputs import measured_fid, reference_images
from analysis.plots import winners
from analysis.verb import Verb, register
from analysis.verbs.fid import fid_arguments
from common.errors import StudyInputError, say


def arguments(parser) -> None:
    parser.add_argument("--task", required=True, help="a prepared task slug or an image folder")
    parser.add_argument("--train-size", type=int, help="training images available")
    parser.add_argument("--disparity", choices=("high", "low"),
                        help="high: the task's objective is unlike classifying objects (e.g. "
                             "counting); default: from the task's group")
    parser.add_argument("--fid", type=float,
                        help="the task's FID, if already known: compared with the `fid` verb's "
                             "table (measured at its --samples)")
    parser.add_argument("--image-size", type=int, default=32,
                        help="size a folder's images are resized to (default 32)")
    fid_arguments(parser)


def train_split(spec) -> str:
    """The split whose images stand for a task: train800val200, else its train+val split."""
    names = list(spec.splits)
    return "train800val200" if "train800val200" in names else next(
        (s for s in names if s.startswith("train") and "val" in s), names[0])


def task_images(args):
    """(images, group, train size) of a prepared task slug or an image folder."""
    from PIL import Image
    from tasks import TASKS, get_task
    from tasks.splits import split_size
    from tasks.views import evaluation_images
    if args.task in TASKS or (Path(args.cache_dir) / "tasks" / args.task).is_dir():
        spec = get_task(args.task)               # the same images as the `fid` verb uses
        images = evaluation_images(args.cache_dir, args.task, train_split(spec))
        return images, spec.group, split_size(spec, train_split(spec)) or len(images)
    folder = Path(args.task)
    if not folder.is_dir():
        raise StudyInputError(f"--task '{args.task}' is neither a task slug nor a folder")
    files = sorted(p for p in folder.rglob("*") if p.suffix.lower() in (".jpg", ".jpeg", ".png"))
    if not files:
        raise StudyInputError(f"no .jpg or .png images under {folder}")
    size = args.image_size
    images = np.stack([np.asarray(Image.open(p).convert("RGB").resize((size, size)))
                       for p in files])
    return images, None, len(files)


def setup(args, final) -> tuple:
    """(features, kind, upstream task) of the study: the backbone its final runs
    used (a registered one, so a study from a file works), else the registered study's."""
    from study.spec import all_studies, get_backbone, get_study
    from study.upstream import copy_shipped
    from trainables.backbones import resolve_weights
    if args.inception_weights:
        return fid_lib.inception(args.inception_weights), "inception_fid", None
    if not final.empty:
        backbone, upstream = get_backbone(final["backbone"].iloc[0])
    elif args.study in all_studies():
        spec = get_study(args.study)
        backbone, upstream = spec.backbones[0], spec.upstream
    else:
        raise StudyInputError(f"'{args.study}' has no final runs and is not a registered study: "
                              f"pass --fid VALUE, or --inception-weights")
    weights = resolve_weights(backbone, args.cache_dir)
    if not weights.exists() and not copy_shipped(backbone, upstream, weights):
        raise StudyInputError(f"weights file {weights} does not exist: `python -m study "
                              f"pretrain {args.study}` makes it")
    return (fid_lib.backbone(backbone, args.cache_dir), f"backbone-{backbone.tag}",
            upstream.task if upstream else None)


def measured_at(args, runs, final, images) -> tuple[dict, pd.DataFrame, pd.DataFrame, str]:
    """The task's FID and the reference and measured tasks' FIDs, all at the task's size."""
    from tasks import get_task, tasks_in_suite
    from tasks.prepare import prepare
    from tasks.views import evaluation_images
    features, kind, upstream = setup(args, final)
    if args.reference is None and upstream is not None:
        args.reference = upstream
    _, reference = reference_images(args, runs)
    reference = fid_lib.cached(features, kind, reference, args.cache_dir)
    n = min(len(images), args.samples)

    def at_n(images) -> dict:
        return fid_lib.repeated(reference, fid_lib.cached(features, kind, images, args.cache_dir),
                                n, args.repeats)
    mine = at_n(images)
    studied = list(dict.fromkeys(final["task"]))
    suite = list(tasks_in_suite("demo")) if upstream == "upstream" or not studied else []
    rows = []
    for task in dict.fromkeys(suite + studied):
        if task == args.task:
            continue
        spec = get_task(task)
        if spec.source.startswith("demo:") and prepare(spec, args.cache_dir):
            say(f"data: generated demo task '{task}' into {args.cache_dir}")
        rows.append({"task": task, "group": spec.group, "fid": at_n(
            evaluation_images(args.cache_dir, task, train_split(spec)))["fid"]})
    table = pd.DataFrame(rows, columns=["task", "group", "fid"])
    if args.task in studied:
        table = pd.concat([table, pd.DataFrame([{"task": args.task, "group": get_task(
            args.task).group, "fid": mine["fid"]}])], ignore_index=True)
    median_of = table[table["task"].isin(suite or studied) & (table["task"] != args.task)]
    return mine, median_of, table[table["task"].isin(studied)], kind


def run(args, runs, report) -> str:
    images, group, size = task_images(args) if None in (args.fid, args.train_size) or \
        args.disparity is None else (None, None, None)
    train_size = args.train_size or size
    disparity = args.disparity or ("high" if group == "structured" else "low" if group else None)
    if disparity is None:
        raise StudyInputError("say --disparity high|low for an image folder (high: the task's "
                              "objective is unlike classification of objects, e.g. counting)")
    final = runs[runs["stage"] == "final"]              # none when no study has run
    wins = winners(final) if len(final) else pd.DataFrame(columns=["task", "group", "winner"])
    if args.fid is not None:                      # a known value, against the `fid` verb's table
        measured, column = measured_fid(args)
        reference = measured.rename(columns={column: "fid"})[["task", "group", "fid"]]
        value, n, median_of = args.fid, None, reference
        studied = reference
    else:
        mine, median_of, studied, column = measured_at(args, runs, final, images)
        value, n = mine["fid"], mine["samples"]
    measured = studied.merge(wins, on=["task", "group"])
    median = float(median_of["fid"].median())
    advice = recommend(value, disparity, train_size, measured, median)
    size_note = "" if n is None else (
        f" on {n} images of each set (the reference tasks' FIDs too, by random subsets; "
        f"median of {len(median_of)} reference tasks {median:.1f})")
    lines = [f"task {args.task}: FID {value:.1f} ({column}){size_note}, disparity {disparity}, "
             f"{train_size} training images",
             f"quadrant: {advice['quadrant']}",
             f"the paper's rule: {advice['rule']}",
             f"this study: {advice['evidence']}"]
    if n is not None and n < MIN_IMAGES:
        lines.insert(0, f"no verdict: {n} images, fewer than the {MIN_IMAGES} at which the demo "
                        f"tasks' FID ranking is stable (docs/analyses.md); the rule's answer "
                        f"below is a guess")
    else:
        lines.insert(0, f"recommendation: {advice['choice']}, following {advice['followed']}")
    text = "\n".join(lines) + "\n"
    if len(advice["nearest"]):
        text += advice["nearest"].to_markdown(index=False, floatfmt=".1f") + "\n"
    report.text(text, f"advise_{Path(args.task).name}.md")
    return text


VERB = register(Verb("advise", "VPT or FT for a task (a prepared slug or an image folder) by the "
                               "paper's findings (FID to pretraining at the task's own sample "
                               "size, disparity, data size), citing the nearest tasks the study "
                               "measured with the seeds' intervals; with no study, the rule alone",
                     run, arguments, study_optional=True))
