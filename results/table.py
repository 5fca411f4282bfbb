"""The paper's Table 1/2 layout from the final-stage runs: one row per strategy; per task the
last-epoch test accuracy as mean +- std over seeds (sample std); per group (Natural, Specialized,
Structured) the mean of the task means with, in parentheses, the number of tasks on which the
strategy beats full finetuning (strict >); where VTAB-1k groups are two or more, both averages
papers use for VTAB-1k, labelled: the mean over the tasks and the mean of the group means (they
differ when groups differ in size, as VTAB-1k's 7 / 4 / 8); then a Tuned / Total % row per
strategy. A cell with no counted run says why (failed, diverged, killed, not run). As CSV, for
programs: one row per cell with numeric mean, std and seed count."""
from __future__ import annotations

from dataclasses import dataclass, field

import pandas as pd

from results.runs import counted

from tasks.spec import GROUP_TITLES, GROUPS
BASELINE = "full_ft"
VTAB_GROUPS = ("natural", "specialized", "structured")


def vtab_averages(per_task: pd.DataFrame, group_of: dict) -> pd.DataFrame:
    """Both VTAB-1k averages of each row of a (row x task) frame, as two columns labelled with
    what they average: "Mean over N tasks" and "Mean of K group means" (each group's tasks
    averaged first, so a group of 4 tasks weighs as much as one of 8). A row missing a task has
    neither."""
    groups = [g for g in VTAB_GROUPS if any(group_of[t] == g for t in per_task.columns)]
    by_group = pd.concat([per_task[[t for t in per_task.columns if group_of[t] == g]]
                          .mean(axis=1, skipna=False) for g in groups], axis=1)
    return pd.DataFrame({
        f"Mean over {per_task.shape[1]} tasks": per_task.mean(axis=1, skipna=False),
        f"Mean of {len(groups)} group means": by_group.mean(axis=1, skipna=False)})


@dataclass(frozen=True)
class PaperTable:
    cells: pd.DataFrame          # display strings, rows = strategies (+ tuned rows)
    mean: pd.DataFrame           # strategy x task, test accuracy mean over seeds
    std: pd.DataFrame
    seeds: pd.DataFrame          # number of seeds counted per cell
    group_mean: pd.DataFrame     # strategy x group
    wins: pd.DataFrame           # strategy x group, tasks where strategy > full_ft
    tuned_percent: pd.DataFrame  # strategy x task
    averages: pd.DataFrame | None = None   # strategy x both VTAB-1k averages (2+ VTAB groups)
    group_of: dict = field(default_factory=dict)     # task -> its group

    def render(self, fmt: str = "markdown") -> str:
        if fmt == "csv":
            return self.numbers().to_csv(index=False).rstrip("\n")
        renderers = {"markdown": lambda t: t.to_markdown(),
                     "latex": lambda t: t.to_latex(escape=True)}
        return renderers[fmt](self.cells)

    def numbers(self) -> pd.DataFrame:
        """One row per (strategy, task), in the table's order: the numbers, not display
        strings (an empty mean where the cell has no counted run, and `missing` says why)."""
        rows = [{"strategy": s, "group": self.group_of.get(t, ""), "task": t, "mean": self.mean.loc[s, t], "std": self.std.loc[s, t],
                 "seeds": int(self.seeds.loc[s, t]) if pd.notna(self.seeds.loc[s, t]) else 0,
                 "tuned_percent": self.tuned_percent.loc[s, t],
                 "missing": self.cells.loc[s, t][len("n/a ("):-1]
                 if pd.isna(self.mean.loc[s, t]) else ""}
                for s in self.mean.index for t in self.mean.columns]
        return pd.DataFrame(rows, columns=["strategy", "group", "task", "mean", "std", "seeds",
                                           "tuned_percent", "missing"])


@dataclass(frozen=True)
class PaperTables:
    """One `PaperTable` per (backbone, data setting) block of a study."""
    blocks: dict

    @property
    def single(self) -> PaperTable:
        if len(self.blocks) != 1:
            raise ValueError(f"{len(self.blocks)} blocks, not one")
        return next(iter(self.blocks.values()))

    def render(self, fmt: str = "markdown") -> str:
        """Markdown or LaTeX: a heading and a table per block. CSV: one table, one row per
        block, strategy and task (backbone and setting as columns), numeric mean and std."""
        if fmt == "csv":
            frames = [table.numbers() for table in self.blocks.values()]
            for frame, (backbone, setting) in zip(frames, self.blocks):
                frame.insert(0, "setting", setting)
                frame.insert(0, "backbone", backbone)
            return pd.concat(frames).to_csv(index=False).rstrip("\n")
        mark = {"markdown": "###", "latex": "%"}[fmt]
        return "\n\n".join(f"{mark} backbone {backbone}, train size {setting}\n"
                             f"{table.render(fmt)}"
                             for (backbone, setting), table in self.blocks.items())


def paper_tables(final_runs: pd.DataFrame, strategy_order=(), task_order=(),
                 tune_runs: pd.DataFrame | None = None) -> PaperTables:
    everything = pd.concat([final_runs, tune_runs]) if tune_runs is not None else final_runs
    keys = list(dict.fromkeys(zip(everything["backbone"], everything["setting"])))
    backbones = list(dict.fromkeys(backbone for backbone, _ in keys))
    keys.sort(key=lambda k: (backbones.index(k[0]),            # train sizes ascending
                             (0, int(k[1]), "") if k[1].isdigit() else (1, 0, k[1])))
    blocks = {}
    for key in keys:
        def of(runs):
            return None if runs is None else runs[(runs["backbone"] == key[0]) &
                                                  (runs["setting"] == key[1])]
        blocks[key] = paper_table(of(final_runs), strategy_order, task_order, of(tune_runs))
    return PaperTables(blocks)


def _ordered(items, preferred) -> list:
    present, preferred = list(dict.fromkeys(items)), list(dict.fromkeys(preferred))
    return [x for x in preferred if x in present] + [x for x in present if x not in preferred]


def _what_happened(runs: pd.DataFrame) -> str | None:
    if (runs["outcome"] == "diverged").any():
        return "diverged"
    for status in ("FAILED", "KILLED", "RUNNING"):
        if (runs["status"] == status).any():
            return status.lower()
    return None


def _missing_reason(final_runs, tune_runs, strategy: str, task: str) -> str:
    for stage, runs in (("", final_runs), ("tune ", tune_runs)):
        if runs is None:
            continue
        cell = runs[(runs["strategy"] == strategy) & (runs["task"] == task)]
        if not cell.empty:
            return stage + (_what_happened(cell) or "no result")
    return "not run"


def paper_table(final_runs: pd.DataFrame, strategy_order=(), task_order=(),
                tune_runs: pd.DataFrame | None = None) -> PaperTable:
    """Rows follow `strategy_order` (default: the registry's), columns `task_order` (default:
    the task table's) within each group. With `tune_runs`, cells that never reached the final
    stage appear too, saying what happened to them in tuning."""
    from tasks import TASKS
    from trainables.strategy import all_strategies
    strategy_order, task_order = strategy_order or tuple(all_strategies()), task_order or tuple(TASKS)
    done = counted(final_runs).dropna(subset=["final_test_acc"])
    everything = pd.concat([final_runs, tune_runs]) if tune_runs is not None else final_runs
    strategies = _ordered(everything["strategy"], [BASELINE, *strategy_order])
    group_of = dict(zip(everything["task"], everything["group"]))
    tasks = [t for g in GROUPS for t in _ordered(everything["task"], task_order)
             if group_of[t] == g]
    by_cell = done.groupby(["strategy", "task"])
    mean = by_cell["final_test_acc"].mean().unstack().reindex(index=strategies, columns=tasks)
    std = by_cell["final_test_acc"].std().unstack().reindex(index=strategies, columns=tasks)
    seeds = by_cell["final_test_acc"].count().unstack().reindex(index=strategies, columns=tasks)
    tuned = by_cell["tuned_percent"].mean().unstack().reindex(index=strategies, columns=tasks)

    groups = [g for g in GROUPS if any(group_of[t] == g for t in tasks)]
    group_mean = pd.DataFrame(index=strategies, columns=groups, dtype=float)
    wins = pd.DataFrame(index=strategies, columns=groups, dtype="Int64")
    for g in groups:
        members = [t for t in tasks if group_of[t] == g]
        group_mean[g] = mean[members].mean(axis=1, skipna=False)
        if BASELINE in mean.index:
            wins[g] = mean[members].gt(mean.loc[BASELINE, members], axis=1).sum(axis=1).astype("Int64")

    vtab = [t for t in tasks if group_of[t] in VTAB_GROUPS]
    averages = vtab_averages(mean[vtab], group_of) if len(
        {group_of[t] for t in vtab}) > 1 else None
    tuned_averages = vtab_averages(tuned[vtab], group_of) if averages is not None else None
    columns, rows = [], {}
    for g in groups:
        columns += [t for t in tasks if group_of[t] == g] + [f"{GROUP_TITLES[g]} mean"]
    columns += list(averages.columns) if averages is not None else []
    for s in strategies:
        row = {}
        for t in tasks:
            if pd.isna(mean.loc[s, t]):
                row[t] = f"n/a ({_missing_reason(final_runs, tune_runs, s, t)})"
            elif seeds.loc[s, t] > 1:
                row[t] = f"{mean.loc[s, t]:.1f} ± {std.loc[s, t]:.1f}"
            else:
                row[t] = f"{mean.loc[s, t]:.1f}"
        for g in groups:
            value = group_mean.loc[s, g]
            text = "n/a" if pd.isna(value) else f"{value:.2f}"
            if s != BASELINE and BASELINE in mean.index and not pd.isna(value):
                text += f" ({wins.loc[s, g]})"
            row[f"{GROUP_TITLES[g]} mean"] = text
        for column in () if averages is None else averages.columns:
            value = averages.loc[s, column]
            row[column] = "n/a" if pd.isna(value) else f"{value:.2f}"
        rows[s] = row
    for s in strategies:
        if s == BASELINE:
            continue
        row = {t: "" if pd.isna(tuned.loc[s, t]) else f"{tuned.loc[s, t]:.2f}" for t in tasks}
        for g in groups:
            members = [t for t in tasks if group_of[t] == g]
            row[f"{GROUP_TITLES[g]} mean"] = f"{tuned.loc[s, members].mean():.2f}"
        for column in () if tuned_averages is None else tuned_averages.columns:
            value = tuned_averages.loc[s, column]
            row[column] = "" if pd.isna(value) else f"{value:.2f}"
        rows[f"Tuned / Total % ({s})"] = row
    cells = pd.DataFrame.from_dict(rows, orient="index")[columns]
    cells.index.name = "strategy"
    return PaperTable(cells, mean, std, seeds, group_mean, wins, tuned, averages,
                      {t: group_of[t] for t in tasks})
