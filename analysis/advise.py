"""VPT or FT for a new task, by the paper's findings, with the study's own runs as evidence. The
rule: with 10,000 or more training images FT catches up and overtakes (Tables 5/6), so FT; with
less, VPT when the task's objective differs from the pretraining one (high disparity, the
structured group: VPT won 7 of 8 there) or when its images sit close to the pretraining images
(FID at or below the median of the measured tasks: natural tasks, 6 of 7); otherwise FT (low
disparity and far images, like the specialized group, where VPT won 2 of 4). The nearest measured
tasks by FID, with who won them in the study, are cited beside the rule's answer."""
from __future__ import annotations

import pandas as pd

LARGE = 10_000


def recommend(fid: float, disparity: str, train_size: int, measured: pd.DataFrame) -> dict:
    """`measured`: task, fid, winner (and margin) of the study's tasks."""
    median = float(measured["fid"].median()) if len(measured) else float("nan")
    if train_size >= LARGE:
        choice, reason = "FT", f"{train_size} training images: FT overtakes VPT as data grows"
    elif disparity == "high":
        choice, reason = "VPT", "high task disparity (objective unlike pretraining, few images)"
    elif len(measured) and fid <= median:
        choice, reason = "VPT", f"images close to pretraining (FID {fid:.1f} <= median {median:.1f})"
    else:
        choice, reason = "FT", (f"low disparity and images far from pretraining (FID {fid:.1f} > "
                                f"median {median:.1f})")
    nearest = measured.assign(distance=(measured["fid"] - fid).abs()).nsmallest(3, "distance")
    agree = int((nearest["winner"] == choice).sum())
    return {"choice": choice, "reason": reason, "nearest": nearest.drop(columns="distance"),
            "evidence": f"{agree} of the {len(nearest)} nearest measured tasks were won by "
                        f"{choice} in this study"}
