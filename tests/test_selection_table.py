"""Selection by the paper's rule and the Table 1/2 layout, on hand-made run frames."""
from __future__ import annotations

import pandas as pd
import pytest

from results.selection import select_best
from results.table import paper_table


def tune_row(task, strategy, lr, acc, status="FINISHED", outcome="finished", wd=0.0, n=[0]):
    n[0] += 1
    return dict(run_id=f"r{n[0]}", trial_id=f"t{n[0]}", start_time=n[0], stage="tune",
                backbone="b", setting="800", task=task, strategy=strategy, base_lr=lr, weight_decay=wd, final_val_acc=acc,
                status=status, outcome=outcome)


def test_best_val_wins_ties_go_to_the_smaller_lr_and_failures_never_win():
    frame = pd.DataFrame([
        tune_row("a", "vpt_deep", 5.0, 80.0), tune_row("a", "vpt_deep", 1.0, 80.0),
        tune_row("a", "vpt_deep", 2.5, 79.0),
        tune_row("a", "full_ft", 0.01, 99.0, outcome="diverged"),
        tune_row("a", "full_ft", 0.005, 95.0, status="FAILED"),
        tune_row("a", "full_ft", 0.001, 60.0),
        tune_row("a", "full_ft", 0.0005, 61.0, status="KILLED"),
    ])
    best = select_best(frame).set_index("strategy")
    assert best.loc["vpt_deep", "base_lr"] == 1.0
    assert best.loc["full_ft", "base_lr"] == 0.001 and best.loc["full_ft", "final_val_acc"] == 60


def final_row(task, group, strategy, seed, acc, tuned=1.0, status="FINISHED",
              outcome="finished", n=[0]):
    n[0] += 1
    return dict(run_id=f"f{n[0]}", trial_id=f"x{n[0]}", start_time=n[0], stage="final",
                backbone="b", setting="800", task=task, group=group, strategy=strategy, seed=seed, final_test_acc=acc,
                tuned_percent=tuned, status=status, outcome=outcome)


@pytest.fixture
def final_runs():
    rows = []
    for seed, ft, vpt in ((42, 70.0, 80.0), (44, 72.0, 78.0)):
        rows += [final_row("n1", "natural", "full_ft", seed, ft, 100.0),
                 final_row("n1", "natural", "vpt_deep", seed, vpt, 2.0),
                 final_row("s1", "structured", "full_ft", seed, 50.0 + seed / 100, 100.0),
                 final_row("s1", "structured", "vpt_deep", seed, 40.0, 4.0)]
    rows.append(final_row("s2", "structured", "full_ft", 42, 90.0, 100.0))
    rows.append(final_row("s2", "structured", "vpt_deep", 42, float("nan"), 4.0,
                          status="FAILED", outcome=None))
    return pd.DataFrame(rows)


def test_table_means_stds_wins_and_missing_cells(final_runs):
    table = paper_table(final_runs)
    assert table.mean.loc["vpt_deep", "n1"] == 79.0
    assert table.std.loc["full_ft", "n1"] == pytest.approx(pd.Series([70.0, 72.0]).std())
    assert table.wins.loc["vpt_deep", "natural"] == 1
    assert table.wins.loc["vpt_deep", "structured"] == 0
    assert table.cells.loc["vpt_deep", "n1"] == "79.0 ± 1.4"
    assert table.cells.loc["vpt_deep", "Natural mean"] == "79.00 (1)"
    assert table.cells.loc["vpt_deep", "s2"] == "n/a (failed)"
    assert table.cells.loc["full_ft", "s2"] == "90.0"                  # one seed: no std
    assert table.cells.loc["Tuned / Total % (vpt_deep)", "Structured mean"] == "4.00"
    assert list(table.cells.columns) == ["n1", "Natural mean", "s1", "s2", "Structured mean",
                                         "Mean over 3 tasks", "Mean of 2 group means"]


def test_table_prints_both_vtab_averages_labelled(final_runs):
    table = paper_table(final_runs)
    n1, s1, s2 = 71.0, (50.42 + 50.44) / 2, 90.0              # full_ft's task means, by hand
    assert table.averages.loc["full_ft", "Mean over 3 tasks"] == pytest.approx((n1 + s1 + s2) / 3)
    assert table.averages.loc["full_ft", "Mean of 2 group means"] == pytest.approx(
        (n1 + (s1 + s2) / 2) / 2)
    assert table.cells.loc["full_ft", "Mean over 3 tasks"] == f"{(n1 + s1 + s2) / 3:.2f}"
    assert table.cells.loc["vpt_deep", "Mean of 2 group means"] == "n/a"     # s2 failed
    one_group = paper_table(final_runs[final_runs["group"] == "structured"])
    assert one_group.averages is None and "Mean over 2 tasks" not in one_group.cells


@pytest.mark.parametrize("fmt, marker", [("markdown", "|"), ("csv", ","),
                                         ("latex", "\\begin{tabular}")])
def test_table_renders_in_every_format(final_runs, fmt, marker):
    text = paper_table(final_runs).render(fmt)
    name = "vpt\\_deep" if fmt == "latex" else "vpt_deep"
    assert marker in text and name in text
