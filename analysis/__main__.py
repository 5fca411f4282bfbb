"""Command line: `python -m analysis <verb> <study>`, reading MLflow runs and the task cache only.
  table       the paper's Table 1/2 layout (per backbone and data setting)
  wins        wins against full finetuning per task and group, with Welch's t-test and a
              bootstrap interval over the seeds ("within noise" when it contains 0)
  fid         FID of each task's training images to a pretraining sample: Inception features
              (`--inception-weights FILE`) and the study backbone's features (labelled as such)
  quadrants   Figure 3 (FID bars coloured by the VPT / FT winner, structured hatched) and the
              Figure 1 quadrant counts; needs `fid` first
  curves      Figures 5/6 (train and test loss per epoch) and an overfitting flag per run
  capacity    Figure 4 (accuracy against training-set size, FT solid, VPT dotted) and the
              Table 5/6 layout, from a study with several train sizes (e.g. paper-scale)
  compare     the study's numbers next to the paper's, with the win pattern's agreement
  attributions  Figures 8/17: Grad-CAM and Integrated Gradients, input | FT | VPT, on test
              images VPT gets right and FT wrong (needs the final stage's saved weights)
  advise      `advise [study] --task <slug | image folder> [--train-size N]`: VPT or FT for a
              task by the paper's findings (FID to pretraining, disparity, data size), citing the
              nearest tasks the study measured (needs the study's `fid` output)
Figures go to --out (PNG and PDF), tables as CSV and markdown, and all of it is logged as
artifacts of the study's `analysis` MLflow run."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from common.errors import StudyInputError, exit_status

VERBS = ("table", "wins", "fid", "quadrants", "curves", "capacity", "compare", "attributions",
         "advise")
SUFFIX = {"markdown": "md", "csv": "csv", "latex": "tex"}


def _final(runs):
    final = runs[runs["stage"] == "final"]
    if final.empty:
        raise StudyInputError("the study has no final-stage runs yet")
    return final


def cmd_table(args, runs, report):
    from results.table import paper_tables
    text = paper_tables(_final(runs), tune_runs=runs[runs["stage"] == "tune"]).render(args.format)
    report.text(text + "\n", f"table.{SUFFIX[args.format]}")
    return text


def cmd_wins(args, runs, report):
    from analysis.wins import group_wins, task_wins
    per_task = task_wins(_final(runs))
    per_group = group_wins(per_task)
    report.table(per_task, "wins_per_task")
    report.table(per_group, "wins_per_group")
    return per_group.to_markdown(index=False) + "\n\n" + per_task.to_markdown(index=False)


def _reference_images(args, runs):
    from study.spec import get_study
    from tasks import is_prepared, load_split
    upstream = get_study(args.study).upstream if args.study_spec else None
    reference = args.reference or (
        upstream.task if upstream else "upstream" if "pretrain" in set(runs["stage"]) else
        "imagenet_sample" if is_prepared(args.cache_dir, "imagenet_sample") else None)
    if reference is None:
        raise StudyInputError("no images stand for the pretraining data: prepare a sample of "
                              "ImageNet with `python -m tasks prepare imagenet_sample "
                              "--from-folder DIR` (DIR/imagenet_sample/train.txt), or pass "
                              "--reference "
                              "<prepared task slug>")
    split = "train" if reference in ("upstream", "imagenet_sample") else "train800val200"
    return reference, load_split(args.cache_dir, reference, split)[0]


def cmd_fid(args, runs, report):
    import pandas as pd
    from analysis import fid
    from study.spec import get_study
    from tasks import get_task
    from tasks.views import evaluation_images
    final = _final(runs)
    reference, ref_images = _reference_images(args, runs)
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


def _measured_fid(args):
    """The `fid` verb's table and the FID column to use (Inception's when present)."""
    import pandas as pd
    path = Path(args.out) / "fid.csv"
    if not path.exists():
        raise StudyInputError(f"{path} does not exist: run `python -m analysis fid "
                              f"{args.study}` first")
    table = pd.read_csv(path)
    return table, "inception_fid" if "inception_fid" in table else "backbone_fid"


def cmd_quadrants(args, runs, report):
    from analysis.plots import quadrants, winners
    fid, column = _measured_fid(args)
    fig, counts, data = quadrants(fid, winners(_final(runs)), column)
    report.figure(fig, "figure3_fid_winners")
    report.table(counts, "figure1_quadrants")
    report.table(data, "figure3_data")
    return f"quadrant counts ({column}; FID split at its median)\n" + \
        counts.to_markdown(index=False)


def cmd_curves(args, runs, report):
    from analysis.plots import OVERFIT_RULE, loss_curves
    fig, flags = loss_curves(_final(runs), args.tracking_uri)
    report.figure(fig, "figures5_6_loss_curves")
    report.table(flags, "overfitting")
    return OVERFIT_RULE + "\n" + flags.to_markdown(index=False)


def cmd_capacity(args, runs, report):
    from analysis.plots import capacity
    from results.table import paper_tables
    final = _final(runs)
    fig, points = capacity(final)
    if points["train_size"].nunique() < 2:
        raise StudyInputError("capacity needs final runs at two or more train sizes (a study "
                              "with several settings, such as paper-scale)")
    report.figure(fig, "figure4_capacity")
    report.table(points, "figure4_data")
    tables = paper_tables(final).render("markdown")
    report.text(tables + "\n", "tables5_6.md")
    return tables


def cmd_compare(args, runs, report):
    from analysis.compare import compare, winner_agreement
    comparison = compare(_final(runs))
    if comparison.empty:
        return "no (strategy, task) in common with the paper's Tables 1, 2 and 19"
    agreement = winner_agreement(comparison)
    report.table(comparison, "compare_with_paper")
    report.table(agreement, "winner_agreement")
    share = agreement["agrees"].mean() if len(agreement) else float("nan")
    return comparison.to_markdown(index=False) + \
        f"\n\nthe winner against full_ft agrees with the paper on {share:.0%} of tasks"


def cmd_attributions(args, runs, report):
    import pandas as pd
    import torch
    from analysis import attributions as attr
    from results.runs import counted
    from tasks import load_split
    from trainables.backbones import normalization
    from trainables.loop import Normalize
    from trainables.trial import load_trained
    final = counted(_final(runs))
    chosen = []
    for task in dict.fromkeys(final["task"]):
        pair = {}
        for strategy in ("full_ft", "vpt_deep"):
            rows = final[(final["task"] == task) & (final["strategy"] == strategy)]
            saved = rows.sort_values("seed")["saved_weights"].dropna()
            saved = saved[saved != ""]
            if saved.empty:
                raise StudyInputError(f"no saved {strategy} weights for '{task}': run the final "
                                      f"stage again with --save-full-weights")
            pair[strategy] = load_trained(saved.iloc[0], args.cache_dir)[0]
        ft, vpt = pair["full_ft"], pair["vpt_deep"]
        images, labels = (np.array(a[:args.samples]) for a in
                          load_split(args.cache_dir, task, "test"))
        normalize = Normalize.of(*normalization(vpt), "cpu")
        x, y = normalize(torch.from_numpy(images)), torch.from_numpy(labels)
        picked = attr.vpt_right_ft_wrong(ft, vpt, x, y, args.examples)
        if len(picked) == 0:
            continue
        xs, ys = x[picked], y[picked]
        black = normalize(torch.zeros_like(torch.from_numpy(images[:1])).expand(len(picked),
                                                                              -1, -1, -1))
        shown = images[picked.numpy()]
        report.figure(attr.panels(shown, {"FT Grad-CAM": attr.gradcam(ft, xs, ys),
                                          "VPT Grad-CAM": attr.gradcam(vpt, xs, ys)},
                                  f"{task}: VPT right, FT wrong (Grad-CAM)"),
                      f"figure8_gradcam_{task}")
        report.figure(attr.panels(shown, {
            "FT IG": attr.integrated_gradients(ft, xs, black, ys),
            "VPT IG": attr.integrated_gradients(vpt, xs, black, ys)},
            f"{task}: VPT right, FT wrong (Integrated Gradients)"), f"figure17_ig_{task}")
        chosen += [{"task": task, "test_index": int(i), "label": int(labels[i])}
                   for i in picked]
    table = pd.DataFrame(chosen, columns=["task", "test_index", "label"])
    report.table(table, "attribution_examples")
    return f"{len(table)} test images where VPT is right and FT wrong, over " \
           f"{table['task'].nunique()} tasks\n" + table.to_markdown(index=False)


def _task_images(args):
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


def cmd_advise(args, runs, report):
    from analysis.advise import recommend
    from analysis.plots import winners
    if not args.task:
        raise StudyInputError("advise needs --task <task slug or image folder>")
    measured, column = _measured_fid(args)
    measured = measured.rename(columns={column: "fid"})[["task", "group", "fid"]] \
        .merge(winners(_final(runs)), on=["task", "group"])
    group, train_size, value = None, args.train_size, args.fid
    if value is None or train_size is None or args.disparity is None:
        images, group, size = _task_images(args)
        train_size = train_size or size
        if value is None:
            value = _fid_to_reference(args, runs, images, column)
    disparity = args.disparity or ("high" if group == "structured" else "low" if group else None)
    if disparity is None:
        raise StudyInputError("say --disparity high|low for an image folder (high: the task's "
                              "objective is unlike classification of objects, e.g. counting)")
    advice = recommend(value, disparity, train_size, measured)
    text = (f"task {args.task}: FID {value:.1f} ({column}), disparity {disparity}, "
            f"{train_size} training images\nrecommendation: {advice['choice']} ({advice['reason']})"
            f"\nevidence: {advice['evidence']}\n" + advice["nearest"].to_markdown(index=False))
    report.text(text + "\n", f"advise_{Path(args.task).name}.md")
    return text


def _fid_to_reference(args, runs, images, column):
    from analysis import fid as fid_lib
    from study.spec import get_study
    _, reference = _reference_images(args, runs)
    if column == "inception_fid" and args.inception_weights:
        features, kind = fid_lib.inception(args.inception_weights), "inception_fid"
    elif args.study_spec:
        backbone = get_study(args.study).backbones[0]
        features, kind = fid_lib.backbone(backbone, args.cache_dir), f"backbone-{backbone.tag}"
    else:
        raise StudyInputError("cannot compute the task's FID here: pass --fid VALUE, or "
                              "--inception-weights, or use a registered study")
    images = np.stack([np.asarray(_resize_like(i, reference.shape[1])) for i in images])
    return fid_lib.repeated(fid_lib.cached(features, kind, reference, args.cache_dir),
                            fid_lib.cached(features, kind, images, args.cache_dir),
                            args.samples, args.repeats)["fid"]


def _resize_like(image, size):
    from PIL import Image
    return Image.fromarray(image).resize((size, size)) if image.shape[0] != size else image


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m analysis", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("verb", choices=VERBS)
    parser.add_argument("study", nargs="?", default="demo",
                        help="the study's name (its MLflow experiment; default demo)")
    parser.add_argument("--format", choices=("markdown", "csv", "latex"), default="markdown")
    parser.add_argument("--tracking-uri", help="default: $MLFLOW_TRACKING_URI or sqlite:///mlflow.db")
    parser.add_argument("--out", help="output folder (default: analysis_out/<study>)")
    parser.add_argument("--cache-dir", default="cache", help="task cache (fid)")
    parser.add_argument("--reference", help="prepared task standing for the pretraining images "
                                            "(default: upstream for the demo, else "
                                            "imagenet_sample when prepared)")
    parser.add_argument("--inception-weights", help="pytorch-fid Inception weights file")
    parser.add_argument("--samples", type=int, default=1000,
                        help="images per random subset of each set (fid, advise) or test images "
                             "searched (attributions)")
    parser.add_argument("--repeats", type=int, default=5,
                        help="fid: random subsets drawn per task (mean and std reported)")
    parser.add_argument("--examples", type=int, default=4, help="images per attribution figure")
    parser.add_argument("--task", help="advise: a prepared task slug or an image folder")
    parser.add_argument("--train-size", type=int, help="advise: training images available")
    parser.add_argument("--disparity", choices=("high", "low"), help="advise: task disparity")
    parser.add_argument("--fid", type=float, help="advise: the task's FID, if already known")
    parser.add_argument("--image-size", type=int, default=32,
                        help="advise: image size for a folder's images")
    args = parser.parse_args(argv)

    from analysis.report import Report
    from results.runs import load_runs
    from study.spec import all_studies
    from study.tracking import tracking_uri
    args.tracking_uri = args.tracking_uri or tracking_uri()
    args.out = args.out or f"analysis_out/{args.study}"
    args.study_spec = args.study in all_studies()

    def run() -> None:
        runs = load_runs(args.study, args.tracking_uri)
        report = Report(args.study, args.tracking_uri, Path(args.out))
        print(globals()[f"cmd_{args.verb}"](args, runs, report))
        if report.written:
            run_id = report.log_to_mlflow()
            print(f"\nwrote {len(report.written)} files to {args.out}; logged to MLflow run "
                  f"{run_id}", file=sys.stderr)
    return exit_status(run)


if __name__ == "__main__":
    sys.exit(main())
