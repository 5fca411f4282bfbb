"""Hyperparameter selection, by the paper's rule: per (backbone, data setting, task, strategy), the
tune-stage run with
the best last-epoch val200 accuracy; ties go to the smaller lr, then the smaller weight decay (then,
among searched knobs' values, to the smaller trial id, so that the pick repeats).
Diverged, failed and killed runs never win. Test accuracy is never read here."""
from __future__ import annotations

import pandas as pd

from common.keys import Cell
from results.runs import counted

CELL = list(Cell._fields)     # the run columns naming a cell: one selection per cell


def select_best(tune_runs: pd.DataFrame) -> pd.DataFrame:
    """One row per cell: base_lr, weight_decay and the val accuracy that won."""
    done = counted(tune_runs).dropna(subset=["final_val_acc"])
    ranked = done.sort_values([*CELL, "final_val_acc", "base_lr", "weight_decay", "trial_id"],
                              ascending=[True] * len(CELL) + [False, True, True, True])
    best = ranked.drop_duplicates(CELL, keep="first")
    return best[[*CELL, "base_lr", "weight_decay", "final_val_acc", "run_id", "trial_id"]] \
        .reset_index(drop=True)
