"""The study's numbers next to the paper's (analysis/data/results.csv, the paper's tables): per
(strategy, task) our mean test accuracy with the study (preset) it came from, the paper's, and
the difference, and per group whether the winner against full finetuning agrees."""
from __future__ import annotations

from pathlib import Path

import pandas as pd

from results.runs import counted

PAPER = Path(__file__).parent / "data" / "results.csv"
PAPER_NAMES = {"vpt_deep": "vpt"}            # the paper's "VPT" is VPT-deep


def paper_results(table_numbers=(1, 2, 19)) -> pd.DataFrame:
    paper = pd.read_csv(PAPER, dtype={"accuracy": float})
    return paper[paper["table"].isin(table_numbers) & (paper["task"] != "mean")]


def compare(final_runs: pd.DataFrame, tables=(1, 2, 19)) -> pd.DataFrame:
    done = counted(final_runs).dropna(subset=["final_test_acc"])
    ours = (done.groupby(["study", "strategy", "task"])["final_test_acc"].mean().rename("ours")
            .reset_index())
    ours["paper_strategy"] = ours["strategy"].map(lambda s: PAPER_NAMES.get(s, s))
    paper = paper_results(tables).rename(columns={"strategy": "paper_strategy",
                                                  "accuracy": "paper"})
    merged = ours.merge(paper[["paper_strategy", "task", "group", "paper", "table"]],
                        on=["paper_strategy", "task"], how="inner")
    merged["difference"] = (merged["ours"] - merged["paper"]).round(2)
    merged["ours"] = merged["ours"].round(2)
    return merged[["table", "group", "task", "strategy", "study", "ours", "paper", "difference"]]


def winner_agreement(comparison: pd.DataFrame, baseline: str = "full_ft") -> pd.DataFrame:
    """Per (strategy, task): who wins against full_ft in the study and in the paper."""
    wide = {col: comparison.pivot_table(index="task", columns="strategy", values=col)
            for col in ("ours", "paper")}
    rows = []
    for strategy in [s for s in wide["ours"].columns if s != baseline]:
        for task in wide["ours"].index:
            ours = wide["ours"].loc[task, strategy] - wide["ours"].loc[task, baseline]
            paper = wide["paper"].loc[task, strategy] - wide["paper"].loc[task, baseline]
            if pd.notna(ours) and pd.notna(paper):
                rows.append({"task": task, "strategy": strategy,
                             "study": "win" if ours > 0 else "loss",
                             "paper": "win" if paper > 0 else "loss",
                             "agrees": (ours > 0) == (paper > 0)})
    return pd.DataFrame(rows)
