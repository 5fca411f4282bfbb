"""`advise`: VPT or FT for a new task, by the paper's findings (FID to the pretraining data,
task disparity, training-set size), citing the nearest tasks the study measured (needs the
study's `fid` output)."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from analysis import fid as fid_lib
from analysis.advise import recommend
from analysis.inputs import final_runs, measured_fid, reference_images
from analysis.plots import winners
from analysis.verb import Verb, register
from analysis.verbs.fid import fid_arguments
from common.errors import StudyInputError


def arguments(parser) -> None:
    parser.add_argument("--task", required=True, help="a prepared task slug or an image folder")
    parser.add_argument("--train-size", type=int, help="training images available")
    parser.add_argument("--disparity", choices=("high", "low"),
                        help="high: the task's objective is unlike classifying objects (e.g. "
                             "counting); default: from the task's group")
    parser.add_argument("--fid", type=float, help="the task's FID, if already known")
    parser.add_argument("--image-size", type=int, default=32,
                        help="size a folder's images are resized to (default 32)")
    fid_arguments(parser)


def task_images(args):
    """(images, group, train size) of a prepared task slug or an image folder."""
    from PIL import Image
    from tasks import TASKS
    from tasks.splits import split_size
    from tasks.views import evaluation_images
    if args.task in TASKS:
        spec = TASKS[args.task]                  # the same images as the `fid` verb uses
        split = "train800val200" if "train800val200" in spec.splits else list(spec.splits)[0]
        images = evaluation_images(args.cache_dir, args.task, split, args.samples)
        return images, spec.group, split_size(spec, split) or len(images)
    folder = Path(args.task)
    if not folder.is_dir():
        raise StudyInputError(f"--task '{args.task}' is neither a task slug nor a folder")
    files = sorted(p for p in folder.rglob("*") if p.suffix.lower() in (".jpg", ".jpeg", ".png"))
    if not files:
        raise StudyInputError(f"no .jpg or .png images under {folder}")
    size = args.image_size
    images = np.stack([np.asarray(Image.open(p).convert("RGB").resize((size, size)))
                       for p in files[:args.samples]])
    return images, None, len(files)


def fid_to_reference(args, runs, images, column) -> float:
    from PIL import Image
    from study.spec import get_study
    _, reference = reference_images(args, runs)
    if column == "inception_fid" and args.inception_weights:
        features, kind = fid_lib.inception(args.inception_weights), "inception_fid"
    elif args.study_spec:
        backbone = get_study(args.study).backbones[0]
        features, kind = fid_lib.backbone(backbone, args.cache_dir), f"backbone-{backbone.tag}"
    else:
        raise StudyInputError("cannot compute the task's FID here: pass --fid VALUE, or "
                              "--inception-weights, or use a registered study")
    size = reference.shape[1]
    images = np.stack([np.asarray(Image.fromarray(i).resize((size, size)))
                       if i.shape[0] != size else i for i in images])
    return fid_lib.repeated(fid_lib.cached(features, kind, reference, args.cache_dir),
                            fid_lib.cached(features, kind, images, args.cache_dir),
                            args.samples, args.repeats)["fid"]


def run(args, runs, report) -> str:
    measured, column = measured_fid(args)
    measured = measured.rename(columns={column: "fid"})[["task", "group", "fid"]] \
        .merge(winners(final_runs(runs)), on=["task", "group"])
    group, train_size, value = None, args.train_size, args.fid
    if value is None or train_size is None or args.disparity is None:
        images, group, size = task_images(args)
        train_size = train_size or size
        if value is None:
            value = fid_to_reference(args, runs, images, column)
    disparity = args.disparity or ("high" if group == "structured" else "low" if group else None)
    if disparity is None:
        raise StudyInputError("say --disparity high|low for an image folder (high: the task's "
                              "objective is unlike classification of objects, e.g. counting)")
    advice = recommend(value, disparity, train_size, measured)
    text = (f"task {args.task}: FID {value:.1f} ({column}), disparity {disparity}, "
            f"{train_size} training images\nrecommendation: {advice['choice']}, following "
            f"{advice['followed']}\n  the paper's rule: {advice['rule']}\n  the study's "
            f"evidence: {advice['evidence']}\n" + advice["nearest"].to_markdown(index=False))
    report.text(text + "\n", f"advise_{Path(args.task).name}.md")
    return text


VERB = register(Verb("advise", "VPT or FT for a task (a prepared slug or an image folder) by the "
                               "paper's findings (FID to pretraining, disparity, data size), "
                               "citing the nearest tasks the study measured (needs `fid` first)",
                     run, arguments))
