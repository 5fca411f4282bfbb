"""Wins against full finetuning, with one rule that holds at 2-5 seeds: per task, the difference
of mean test accuracy over the final seeds and its 95 % Welch t interval (unequal variances,
Welch-Satterthwaite degrees of freedom). The verdict reads the interval and nothing else: "win"
or "loss" when it excludes 0, "within noise" when it contains 0, and "too few seeds to tell"
when either side has fewer than 3 seeds (an interval from 2 seeds spans tens of points).
Per group: wins by the mean, and wins and losses beyond noise."""
from __future__ import annotations

import math

import numpy as np
import pandas as pd
from scipy import stats

from results.runs import counted
from results.table import BASELINE
from tasks.spec import GROUPS

MIN_SEEDS = 3
RULE = (f"verdict: the 95% Welch t interval of the mean difference excludes 0 (win / loss) or "
        f"contains it (within noise); fewer than {MIN_SEEDS} seeds on either side: too few "
        f"seeds to tell")


def welch_interval(a: np.ndarray, b: np.ndarray, level: float = 0.95) -> tuple[float, float]:
    """The `level` t interval of mean(a) - mean(b) with unequal variances (NaN with a side of
    one seed)."""
    difference = a.mean() - b.mean()
    if min(len(a), len(b)) < 2:
        return math.nan, math.nan
    va, vb = a.var(ddof=1) / len(a), b.var(ddof=1) / len(b)
    se = math.sqrt(va + vb)
    if se == 0:                                   # every seed agrees on both sides
        return difference, difference
    dof = (va + vb) ** 2 / (va ** 2 / (len(a) - 1) + vb ** 2 / (len(b) - 1))
    half = stats.t.ppf(0.5 + level / 2, dof) * se
    return difference - half, difference + half


def published_interval(ours: np.ndarray, theirs: float, their_runs: int,
                       level: float = 0.95) -> tuple[float, float]:
    """The `level` t interval of mean(ours) - theirs, where `theirs` is a published mean of
    `their_runs` runs assumed to spread as our seeds do: the difference +- t(n - 1) * s *
    sqrt(1/n + 1/their_runs), s our seeds' sample std (for one published run, the prediction
    interval of a new run). NaN with one seed of ours."""
    difference = ours.mean() - theirs
    if len(ours) < 2:
        return math.nan, math.nan
    half = stats.t.ppf(0.5 + level / 2, len(ours) - 1) * ours.std(ddof=1) * math.sqrt(
        1 / len(ours) + 1 / their_runs)
    return difference - half, difference + half


def verdict(difference: float, low: float, high: float, seeds: int) -> str:
    if seeds < MIN_SEEDS:
        return "too few seeds to tell"
    if low <= 0 <= high:
        return "within noise"
    return "win" if difference > 0 else "loss"


def task_wins(final_runs: pd.DataFrame, baseline: str = BASELINE) -> pd.DataFrame:
    done = counted(final_runs).dropna(subset=["final_test_acc"])
    rows = []
    for (task, strategy), cell in done.groupby(["task", "strategy"]):
        if strategy == baseline:
            continue
        base = done[(done["task"] == task) & (done["strategy"] == baseline)]["final_test_acc"]
        if base.empty:
            continue
        ours, theirs = cell["final_test_acc"].to_numpy(), base.to_numpy()
        low, high = welch_interval(ours, theirs)
        difference = ours.mean() - theirs.mean()
        rows.append({"task": task, "group": cell["group"].iloc[0], "strategy": strategy,
                     "seeds": min(len(ours), len(theirs)), "difference": round(difference, 2),
                     "ci_low": round(low, 2), "ci_high": round(high, 2),
                     "verdict": verdict(difference, low, high,
                                        min(len(ours), len(theirs)))})
    return pd.DataFrame(rows)


def group_wins(per_task: pd.DataFrame) -> pd.DataFrame:
    rows = []
    for (strategy, group), cell in per_task.groupby(["strategy", "group"]):
        rows.append({"strategy": strategy, "group": group, "tasks": len(cell),
                     "wins by the mean": int((cell["difference"] > 0).sum()),
                     "wins beyond noise": int((cell["verdict"] == "win").sum()),
                     "losses beyond noise": int((cell["verdict"] == "loss").sum()),
                     "too few seeds": int((cell["verdict"] == "too few seeds to tell").sum())})
    order = {g: i for i, g in enumerate(GROUPS)}
    return pd.DataFrame(rows).sort_values(["strategy", "group"], key=lambda c: c.map(order)
                                          if c.name == "group" else c)
