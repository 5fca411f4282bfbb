"""What verbs read besides the runs: the final stage's runs, the `fid` verb's table, and the
images standing for the pretraining data."""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pandas as pd

from common.errors import StudyInputError, say


def final_runs(runs: pd.DataFrame) -> pd.DataFrame:
    final = runs[runs["stage"] == "final"]
    if final.empty:
        raise StudyInputError("the study has no final-stage runs yet")
    return final


def measured_fid(args: argparse.Namespace) -> tuple[pd.DataFrame, str]:
    """The `fid` verb's table and the FID column to use (Inception's when present)."""
    path = Path(args.out) / "fid.csv"
    if not path.exists():
        raise StudyInputError(f"{path} does not exist: run `python -m analysis fid "
                              f"{args.study}` first")
    table = pd.read_csv(path)
    return table, "inception_fid" if "inception_fid" in table else "backbone_fid"


def reference_images(args: argparse.Namespace, runs: pd.DataFrame) -> tuple[str, np.ndarray]:
    """(slug, images) of the prepared task standing for the pretraining data: --reference, the
    study's upstream task, or a prepared ImageNet sample. A reference the demo generators make
    is generated here when the cache lacks it (a study that copied its backbone never needed
    it)."""
    from study.spec import get_study
    from tasks import get_task, is_prepared, load_split
    from tasks.prepare import prepare
    upstream = get_study(args.study).upstream if args.study_spec else None
    reference = args.reference or (
        upstream.task if upstream else "upstream" if "pretrain" in set(runs["stage"]) else
        "imagenet_sample" if is_prepared(args.cache_dir, "imagenet_sample") else None)
    if reference is None:
        raise StudyInputError("no images stand for the pretraining data: prepare a sample of "
                              "ImageNet with `python -m tasks prepare imagenet_sample "
                              "--from-folder DIR` (DIR/imagenet_sample/train.txt), or pass "
                              "--reference <prepared task slug>")
    task = get_task(reference)
    if task.source.startswith("demo:") and prepare(task, args.cache_dir):
        say(f"data: generated demo task '{reference}' into {args.cache_dir}")
    split = "train" if reference in ("upstream", "imagenet_sample") else "train800val200"
    return reference, load_split(args.cache_dir, reference, split)[0]
