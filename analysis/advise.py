"""VPT or FT for a new task, by the paper's findings, with the study's own runs as evidence. The
rule: with 10,000 or more training images FT catches up and overtakes (Tables 5/6), so FT; with
less, VPT when the task's objective differs from the pretraining one (high disparity, the
structured group: VPT won 7 of 8 there) or when its images sit close to the pretraining images
(FID at or below the median of the measured tasks: natural tasks, 6 of 7); otherwise FT (low
disparity and far images, like the specialized group, where VPT won 2 of 4). The study's own
evidence is the 3 tasks it measured nearest by FID and who won them (by the `wins` rule; a task
without a winner beyond the seeds' noise is no evidence); when all of them went against the
rule, the advice follows the study (its backbone, its data) and says so; otherwise it follows
the rule and says how much of the evidence agrees."""
from __future__ import annotations

import pandas as pd

LARGE = 10_000
NEAREST = 3
# Below this many images a task's FID does not rank it among the demo tasks as 1,000 images do
# (bench/fid_sizes.py, docs/analyses.md): `advise` then gives no verdict.
MIN_IMAGES = 100
# The paper's quadrants (Figure 3: disparity x FID to ImageNet, VTAB-1k) and who won in each.
QUADRANTS = {("high", False): "high disparity, FID at or below the median (the paper's "
                              "structured group: VPT won 7 of 8)",
             ("high", True): "high disparity, FID above the median (the paper's structured "
                             "group: VPT won 7 of 8)",
             ("low", False): "low disparity, FID at or below the median (the paper's natural "
                             "group: VPT won 6 of 7)",
             ("low", True): "low disparity, FID above the median (the paper's specialized "
                            "group: VPT won 2 of 4)"}


def quadrant(fid: float, disparity: str, median: float) -> str:
    return QUADRANTS[(disparity, bool(fid > median))]


def paper_rule(fid: float, disparity: str, train_size: int, median: float) -> tuple[str, str]:
    """(choice, reason) by the paper's findings."""
    if train_size >= LARGE:
        return "FT", f"{train_size} training images: FT overtakes VPT as data grows"
    if disparity == "high":
        return "VPT", "high task disparity (objective unlike pretraining, few images)"
    if fid <= median:
        return "VPT", f"images close to pretraining (FID {fid:.1f} <= median {median:.1f})"
    return "FT", (f"low disparity and images far from pretraining (FID {fid:.1f} > median "
                  f"{median:.1f})")


def recommend(fid: float, disparity: str, train_size: int, measured: pd.DataFrame,
              median: float | None = None) -> dict:
    """One verdict. `measured`: task, fid and winner of the study's tasks; `median`: of the
    reference tasks' FIDs (default: of the measured tasks')."""
    if median is None:
        median = float(measured["fid"].median()) if len(measured) else float("nan")
    rule, reason = paper_rule(fid, disparity, train_size, median)
    nearest = measured.assign(distance=(measured["fid"] - fid).abs()).nsmallest(NEAREST,
                                                                                 "distance")
    agree = int((nearest["winner"] == rule).sum())
    undecided = int((nearest["winner"] == "neither").sum())
    unanimous_against = len(nearest) >= NEAREST and agree == 0 and undecided == 0
    choice = nearest["winner"].iloc[0] if unanimous_against else rule
    evidence = (f"{agree} of the {len(nearest)} measured tasks nearest by FID were won by {rule} "
                f"in this study" + (f" ({undecided} with no winner beyond the seeds' noise)"
                                    if undecided else ""))
    if nearest.empty:
        evidence = "no task measured yet (the paper's rule alone)"
    return {"choice": choice, "rule": f"{rule} ({reason})", "evidence": evidence,
            "quadrant": quadrant(fid, disparity, median),
            "followed": "the study's evidence, which disagrees with the paper's rule"
            if unanimous_against else "the paper's rule",
            "nearest": nearest.drop(columns="distance")}
