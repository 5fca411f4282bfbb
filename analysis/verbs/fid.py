"""`fid`: the FID of each task's training images to the images standing for the pretraining
data, in Inception's feature space (`--inception-weights FILE`) and in the study backbone's,
as mean and std over random subsets of equal size."""
from __future__ import annotations

import pandas as pd

from analysis import fid
from analysis.inputs import final_runs, reference_images
from analysis.verb import Verb, register
from common.errors import StudyInputError


def fid_arguments(parser) -> None:
    """The flags of every verb that measures an FID (`fid`, `advise`)."""
    parser.add_argument("--reference", help="prepared task standing for the pretraining images "
                                            "(default: upstream for the demo, else "
                                            "imagenet_sample when prepared)")
    parser.add_argument("--inception-weights", help="pytorch-fid Inception weights file")
    parser.add_argument("--samples", type=int, default=1000,
                        help="images per random subset of each set (default 1000)")
    parser.add_argument("--repeats", type=int, default=5,
                        help="random subsets drawn per task: their mean and std are reported")


def run(args, runs, report) -> str:
    from study.spec import get_study
    from tasks import get_task
    from tasks.views import evaluation_images
    final = final_runs(runs)
    reference, ref_images = reference_images(args, runs)
    spaces = {}
    if args.inception_weights:
        spaces["inception_fid"] = fid.inception(args.inception_weights)
    backbones = {b.tag: b for b in get_study(args.study).backbones} if args.study_spec else {}
    tag = final["backbone"].iloc[0]
    if tag in backbones:
        spaces["backbone_fid"] = fid.backbone(backbones[tag], args.cache_dir)
    if not spaces:
        raise StudyInputError("no feature space: pass --inception-weights, or run on a study "
                              "registered here so its backbone can be built")
    rows = []
    for task in dict.fromkeys(final["task"]):
        spec = get_task(task)
        split = "train800val200" if "train800val200" in spec.splits else list(spec.splits)[0]
        images = evaluation_images(args.cache_dir, task, split)
        row = {"task": task, "group": spec.group}
        for name, features in spaces.items():
            kind = name if name != "backbone_fid" else f"backbone-{tag}"
            a = fid.cached(features, kind, ref_images, args.cache_dir)
            b = fid.cached(features, kind, images, args.cache_dir)
            measured = fid.repeated(a, b, args.samples, args.repeats)
            row.update({name: round(measured["fid"], 3), f"{name}_std": round(measured["std"], 3),
                        "samples": measured["samples"]})
        rows.append(row)
    table = pd.DataFrame(rows)
    report.table(table, "fid")
    return (f"FID of each task's training images to '{reference}' ({len(ref_images)} images): "
            f"mean and std over {args.repeats} random subsets of `samples` images of each set "
            f"(FID grows as subsets shrink: compare values at one size); backbone_fid uses the "
            f"backbone's features, not Inception's\n" + table.to_markdown(index=False))


VERB = register(Verb("fid", "FID of each task's training images to a pretraining sample: "
                            "Inception features (--inception-weights FILE) and the study "
                            "backbone's features (labelled as such)", run, fid_arguments))
