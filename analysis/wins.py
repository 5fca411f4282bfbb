"""Wins against full finetuning with statistics: per task, the difference of mean test accuracy
over the final seeds, Welch's t-test between the two sets of seeds, and a bootstrap 95 % interval
of the difference; a win whose interval contains 0 (or with p >= 0.05) is marked "within noise".
Per group: wins, wins beyond noise, losses beyond noise."""
from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
from scipy import stats

from results.runs import counted
from results.table import BASELINE
from tasks.spec import GROUPS


def _bootstrap(a: np.ndarray, b: np.ndarray, rounds: int = 2000, seed: int = 0):
    rng = np.random.default_rng(seed)
    diffs = (rng.choice(a, (rounds, len(a))).mean(1) - rng.choice(b, (rounds, len(b))).mean(1))
    return np.percentile(diffs, [2.5, 97.5])


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
        low, high = _bootstrap(ours, theirs)
        with warnings.catch_warnings():       # identical seeds make the t statistic degenerate
            warnings.simplefilter("ignore", RuntimeWarning)
            p = (stats.ttest_ind(ours, theirs, equal_var=False).pvalue
                 if min(len(ours), len(theirs)) > 1 else float("nan"))
        significant = not (low <= 0 <= high) and not (p >= 0.05)
        difference = ours.mean() - theirs.mean()
        rows.append({"task": task, "group": cell["group"].iloc[0], "strategy": strategy,
                     "seeds": len(ours), "difference": round(difference, 2),
                     "ci_low": round(low, 2), "ci_high": round(high, 2),
                     "p_value": round(float(p), 4) if p == p else None,
                     "verdict": ("win" if difference > 0 else "loss")
                     + ("" if significant else " (within noise)")})
    return pd.DataFrame(rows)


def group_wins(per_task: pd.DataFrame) -> pd.DataFrame:
    rows = []
    for (strategy, group), cell in per_task.groupby(["strategy", "group"]):
        rows.append({"strategy": strategy, "group": group, "tasks": len(cell),
                     "wins": int((cell["difference"] > 0).sum()),
                     "wins beyond noise": int((cell["verdict"] == "win").sum()),
                     "losses beyond noise": int((cell["verdict"] == "loss").sum())})
    order = {g: i for i, g in enumerate(GROUPS)}
    return pd.DataFrame(rows).sort_values(["strategy", "group"], key=lambda c: c.map(order)
                                          if c.name == "group" else c)
