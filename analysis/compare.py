"""A study's numbers next to published ones (`results.published`: PETL_Vision's stored results,
the VPT paper's table, this paper's tables). Per cell of the study that the source has a number
for (same data setting, task and strategy, on a backbone of the source's family): ours as mean
and std over the final seeds, theirs, the difference, its 95 % t interval with their number taken
as the mean of the runs it averages, spread as our seeds (`analysis.wins.published_interval`), and
a verdict read from that interval alone; per strategy, both VTAB-1k averages of each side over the
tasks they share; and per task whether the winner against full finetuning agrees."""
from __future__ import annotations

import numpy as np
import pandas as pd

from analysis.wins import MIN_SEEDS, published_interval, verdict
from results.published import published
from results.runs import counted
from results.table import BASELINE, VTAB_GROUPS
from tasks import TASKS
from tasks.spec import GROUPS

CELL = ["backbone", "setting", "group", "task", "strategy"]
SAYS = {"win": "ours higher", "loss": "ours lower"}
RULE = (f"verdict: the 95% t interval of our mean minus theirs, with their number taken as the "
        f"mean of the runs it averages, spread as our seeds (t with seeds - 1 degrees of "
        f"freedom): ours higher / ours lower when it excludes 0, within noise when it holds 0; "
        f"fewer than {MIN_SEEDS} seeds: too few seeds to tell")
COLUMNS = [*CELL, "table", "method", "seeds", "ours", "ours_std", "theirs", "difference",
           "ci_low", "ci_high", "verdict"]


def _of_family(backbone: str, family: str) -> bool:
    return backbone == family or backbone.startswith(f"{family}-")


def _table_order(table: pd.Series) -> pd.Series:
    return pd.to_numeric(table, errors="coerce").fillna(np.inf)


def compare(final_runs: pd.DataFrame, source: str = "paper") -> pd.DataFrame:
    """One row per cell of the study the source has a number for (that of the exact backbone
    tag, else of its family; of the lowest table number), in the task table's order."""
    done = counted(final_runs).dropna(subset=["final_test_acc"])
    if done.empty:
        return pd.DataFrame(columns=COLUMNS)
    ours = done.groupby(CELL)["final_test_acc"].agg(list).rename("accuracies").reset_index()
    theirs = published(source).rename(columns={"backbone": "family", "accuracy": "theirs"})
    merged = ours.merge(theirs.drop(columns="group"), on=["setting", "task", "strategy"])
    merged = merged[[_of_family(b, f) for b, f in zip(merged["backbone"], merged["family"])]]
    merged = merged.assign(exact=merged["backbone"] == merged["family"]).sort_values(
        ["exact", "table"], ascending=[False, True], key=lambda c: c if c.name == "exact"
        else _table_order(c)).drop_duplicates(CELL)
    rows = []
    for _, cell in merged.iterrows():
        accuracies = np.asarray(cell["accuracies"], dtype=float)
        difference = accuracies.mean() - cell["theirs"]
        low, high = published_interval(accuracies, cell["theirs"], int(cell["runs"]))
        said = verdict(difference, low, high, len(accuracies))
        rows.append({**{k: cell[k] for k in (*CELL, "table", "method")},
                     "seeds": len(accuracies), "ours": round(accuracies.mean(), 2),
                     "ours_std": round(accuracies.std(ddof=1), 2) if len(accuracies) > 1
                     else np.nan, "theirs": cell["theirs"], "difference": round(difference, 2),
                     "ci_low": round(low, 2), "ci_high": round(high, 2),
                     "verdict": SAYS.get(said, said)})
    table = pd.DataFrame(rows, columns=COLUMNS)
    order = {name: i for i, name in enumerate([*GROUPS, *TASKS])}
    return table.sort_values(["backbone", "setting", "group", "task", "strategy"],
                             key=lambda c: c.map(order).fillna(len(order))
                             if c.name in ("group", "task") else c).reset_index(drop=True)


def averages(comparison: pd.DataFrame) -> pd.DataFrame:
    """Per (backbone, setting, strategy), over the VTAB-1k tasks both sides have: the mean over
    those tasks and the mean of the group means (each group's tasks averaged first), ours
    and theirs."""
    vtab = comparison[comparison["group"].isin(VTAB_GROUPS)]
    rows = []
    for (backbone, setting, strategy), cell in vtab.groupby(["backbone", "setting", "strategy"]):
        row = {"backbone": backbone, "setting": setting, "strategy": strategy,
               "tasks": len(cell), "per group": " / ".join(
                   f"{g} {(cell['group'] == g).sum()}" for g in VTAB_GROUPS
                   if (cell["group"] == g).any())}
        for side in ("ours", "theirs"):
            row[f"{side}: mean over tasks"] = round(cell[side].mean(), 2)
            row[f"{side}: mean of group means"] = round(
                cell.groupby("group")[side].mean().mean(), 2)
        rows.append(row)
    return pd.DataFrame(rows)


def winner_agreement(comparison: pd.DataFrame, baseline: str = BASELINE) -> pd.DataFrame:
    """Per (backbone, setting, task, strategy): who wins against full_ft in the study and in
    the source, where both have full_ft's number."""
    key = ["backbone", "setting", "task"]
    base = comparison[comparison["strategy"] == baseline][[*key, "ours", "theirs"]]
    paired = comparison[comparison["strategy"] != baseline].merge(base, on=key,
                                                                  suffixes=("", "_base"))
    ours = paired["ours"] - paired["ours_base"]
    theirs = paired["theirs"] - paired["theirs_base"]
    return pd.DataFrame({**{k: paired[k] for k in (*key, "strategy")},
                         "study": np.where(ours > 0, "win", "loss"),
                         "source": np.where(theirs > 0, "win", "loss"),
                         "agrees": (ours > 0) == (theirs > 0)}).reset_index(drop=True)
