"""The paper's figures from MLflow: Figure 3 (per-task FID bars coloured by the winner of VPT-deep
against full finetuning where the `wins` rule finds one, grey where it does not, hatched where
the task disparity is high, i.e. the structured group) with Figure 1's quadrant counts; Figure 4
(accuracy against training-set size, mean ± std over the seeds); and Figures 5/6 (train and test
loss per epoch, one panel per task and strategy, the tune grid and its selected point behind)
with an overfitting flag whose rule is printed beside it."""
from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402

from analysis.wins import task_wins  # noqa: E402
from results.runs import counted, open_client  # noqa: E402

# also the order of the loss curves' columns
COLORS = {"full_ft": "tab:orange", "vpt_deep": "tab:blue", "vpt_shallow": "tab:purple",
          "linear": "tab:gray", "mixed": "tab:green", "ft_then_pt": "tab:red",
          "ft_then_pt_kept_head": "tab:pink", "lora": "tab:brown"}
WINNER = {"win": "VPT", "loss": "FT"}         # the challenger's verdict -> who wins
SHADE = {"VPT": "tab:blue", "FT": "tab:orange", "neither": "0.85"}
OVERFIT_RULE = ("overfitting: the last evaluated test loss is at least 10 % above the lowest "
                "test loss of the run while the train loss kept falling")


def winners(final_runs: pd.DataFrame, challenger: str = "vpt_deep",
            baseline: str = "full_ft") -> pd.DataFrame:
    """Per task, who wins `challenger` against `baseline` by the rule of the `wins` verb (the
    95 % Welch interval of the mean difference, `analysis.wins`): "VPT" or "FT" where the
    interval excludes 0, "neither" where it holds 0 or there are too few seeds to tell; with
    the difference, its interval and the verdict."""
    per_task = task_wins(final_runs, baseline)
    if per_task.empty:
        return pd.DataFrame(columns=["task", "group", "winner", "difference", "verdict"])
    rows = per_task[per_task["strategy"] == challenger]
    return pd.DataFrame({"task": rows["task"], "group": rows["group"],
                         "winner": [WINNER.get(v, "neither") for v in rows["verdict"]],
                         "difference": rows["difference"], "ci_low": rows["ci_low"],
                         "ci_high": rows["ci_high"], "verdict": rows["verdict"]})


def quadrants(fid: pd.DataFrame, wins: pd.DataFrame, fid_column: str):
    """Figure 3 and the quadrant counts (disparity: structured = high; FID: above the median);
    a bar is coloured by a winner only where the `wins` rule finds one."""
    data = fid.merge(wins, on=["task", "group"]).sort_values(fid_column)
    fig, ax = plt.subplots(figsize=(max(6, 0.6 * len(data)), 4))
    spread = data.get(f"{fid_column}_std")          # std over random subsets, when measured
    bars = ax.bar(data["task"], data[fid_column], yerr=spread, capsize=3 if spread is not None
                  else 0, color=[SHADE[w] for w in data["winner"]], edgecolor="black")
    for bar, group in zip(bars, data["group"]):
        bar.set_hatch("//" if group == "structured" else "")
    samples = f", {int(data['samples'].iloc[0])} images" if "samples" in data else ""
    ax.set_ylabel(fid_column.replace("_", " ") + (f"\n(mean ± std over subsets{samples})"
                                                  if spread is not None else ""))
    ax.set_xlabel("task (sorted by FID to the pretraining images)")
    ax.set_title("Who wins, VPT-deep or full finetuning, against the task's distance to "
                 "pretraining\n(a winner where the 95% Welch interval of the seeds' mean "
                 "difference excludes 0, as `wins`)", fontsize="medium")
    ax.tick_params(axis="x", rotation=45)
    for label in ax.get_xticklabels():
        label.set_horizontalalignment("right")
    undecided = sorted(set(data.loc[data["winner"] == "neither", "verdict"]))
    handles = [plt.Rectangle((0, 0), 1, 1, color=SHADE["VPT"], label="VPT wins"),
               plt.Rectangle((0, 0), 1, 1, color=SHADE["FT"], label="FT wins"),
               plt.Rectangle((0, 0), 1, 1, color=SHADE["neither"],
                             label=f"neither ({', '.join(undecided) or 'within noise'})"),
               plt.Rectangle((0, 0), 1, 1, facecolor="white", edgecolor="black", hatch="//",
                             label="high task disparity (structured)")]
    ax.legend(handles=handles, loc="upper left", fontsize="small")
    median = data[fid_column].median()
    data["distance"] = ["high FID" if v > median else "low FID" for v in data[fid_column]]
    data["disparity"] = ["high disparity" if g == "structured" else "low disparity"
                         for g in data["group"]]
    counts = (data.groupby(["disparity", "distance", "winner"]).size().unstack(fill_value=0)
              .reindex(columns=list(SHADE), fill_value=0).reset_index())
    return fig, counts, data


def histories(uri: str, run_ids, keys=("train_loss", "test_loss")) -> pd.DataFrame:
    client = open_client(uri)
    rows = [{"run_id": run_id, "metric": key, "epoch": m.step, "value": m.value}
            for run_id in run_ids for key in keys
            for m in client.get_metric_history(run_id, key)]
    return pd.DataFrame(rows, columns=["run_id", "metric", "epoch", "value"])


def overfitting(curve: pd.DataFrame) -> bool:
    test = curve[curve["metric"] == "test_loss"].sort_values("epoch")["value"]
    train = curve[curve["metric"] == "train_loss"].sort_values("epoch")["value"]
    return bool(len(test) > 1 and test.iloc[-1] >= 1.1 * test.min()
                and train.iloc[-1] < train.iloc[0])


def _line(ax, curve: pd.DataFrame, metric: str, **style) -> None:
    line = curve[curve["metric"] == metric].sort_values("epoch")
    if len(line):
        ax.plot(line["epoch"], line["value"], **style)


def loss_curves(runs: pd.DataFrame, uri: str):
    """Figures 5/6, one panel per task (rows) and strategy (columns), on a log loss axis: the
    final seeds' train (solid) and test (dashed) loss, the first seed opaque; behind them the
    tune grid's val loss (thin grey), the point the selection chose in black. And the
    overfitting flag of each (task, strategy), from its first final seed."""
    final = counted(runs[runs["stage"] == "final"])
    tune = counted(runs[runs["stage"] == "tune"])
    curves = histories(uri, final["run_id"]).merge(final[["run_id", "task", "strategy",
                                                         "seed"]])
    grid = histories(uri, tune["run_id"], ("val_loss",)).merge(
        tune[["run_id", "task", "strategy"]].assign(chosen=tune["selected"] == "true"))
    tasks = list(dict.fromkeys(final.sort_values(["group", "task"])["task"]))
    strategies = sorted(set(final["strategy"]), key=lambda name: (
        list(COLORS).index(name) if name in COLORS else len(COLORS), name))
    fig, axes = plt.subplots(len(tasks), len(strategies), squeeze=False, sharex="row",
                             sharey="row", figsize=(2.3 * len(strategies), 1.9 * len(tasks)))
    flags = []
    for i, task in enumerate(tasks):
        for j, strategy in enumerate(strategies):
            ax = axes[i, j]
            for run_id, curve in grid[(grid["task"] == task) &
                                      (grid["strategy"] == strategy)].groupby("run_id"):
                chosen = bool(curve["chosen"].iloc[0])
                _line(ax, curve, "val_loss", color="black" if chosen else "0.75",
                      ls=":" if chosen else "-", lw=1.5 if chosen else 0.6,
                      zorder=2 if chosen else 1)
            cell = curves[(curves["task"] == task) & (curves["strategy"] == strategy)]
            for rank, (seed, curve) in enumerate(sorted(cell.groupby("seed"))):
                alpha = 1.0 if rank == 0 else 0.35
                for metric, dash in (("train_loss", "-"), ("test_loss", "--")):
                    _line(ax, curve, metric, ls=dash, color=COLORS.get(strategy), alpha=alpha,
                          lw=1.2, zorder=3)
                if rank == 0:
                    flags.append({"task": task, "strategy": strategy,
                                  "overfitting": overfitting(curve)})
            ax.set_yscale("log")
            ax.tick_params(labelsize="x-small")
            if i == 0:
                ax.set_title(strategy, fontsize="small")
            if j == 0:
                ax.set_ylabel(f"{task}\nloss", fontsize="small")
            if i == len(tasks) - 1:
                ax.set_xlabel("epoch", fontsize="small")
    legend = [plt.Line2D([], [], color="tab:blue", ls="-", label="train loss (final seeds; "
                                                                  "the first opaque)"),
              plt.Line2D([], [], color="tab:blue", ls="--", label="test loss (final seeds)"),
              plt.Line2D([], [], color="0.75", lw=0.6, label="val loss of each tune grid point"),
              plt.Line2D([], [], color="black", ls=":", lw=1.5,
                         label="val loss of the selected point")]
    fig.legend(handles=legend, loc="lower center", ncol=4, fontsize="small",
               bbox_to_anchor=(0.5, 0))
    fig.suptitle("Loss per epoch (log scale): final seeds in the strategy's colour, the tune "
                 "grid behind them")
    fig.tight_layout(rect=(0, 0.03, 1, 1))
    return fig, pd.DataFrame(flags)


def capacity(final_runs: pd.DataFrame, full: str = "full_ft", prompt: str = "vpt_deep"):
    """Figure 4: test accuracy against the training-set size (log x), FT solid, VPT dotted,
    one colour per task, each point the mean over the seeds with a bar of ± their std; and the
    numbers behind it."""
    done = counted(final_runs)
    done = done[done["setting"].str.isdigit() & done["strategy"].isin([full, prompt])]
    points = (done.assign(train_size=done["setting"].astype(int))
              .groupby(["task", "strategy", "train_size"])["final_test_acc"]
              .agg(test_acc="mean", test_acc_std="std", seeds="count").reset_index())
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for colour, (task, rows) in zip(plt.cm.tab20.colors, points.groupby("task")):
        for strategy, style, shift in ((full, "-", 0.98), (prompt, ":", 1.02)):
            line = rows[rows["strategy"] == strategy].sort_values("train_size")
            ax.errorbar(line["train_size"] * shift, line["test_acc"],   # apart, not hidden
                        yerr=line["test_acc_std"].fillna(0), fmt="o" + style, color=colour,
                        capsize=3, ms=4, label=f"{task} ({'FT' if strategy == full else 'VPT'})")
    seeds = points["seeds"]
    n = f"{seeds.min()}" if seeds.min() == seeds.max() else f"{seeds.min()}-{seeds.max()}"
    ax.set_xscale("log")
    ax.set_xlabel("training images (log scale)")
    ax.set_ylabel(f"test accuracy (%), mean ± std over {n} seeds")
    ax.set_title("Accuracy against training-set size: FT solid, VPT-deep dotted")
    ax.legend(fontsize="x-small", ncol=2, loc="lower right")
    return fig, points


MARKERS = "osD^vP*X<>ph"


def efficiency(final_runs: pd.DataFrame):
    """Test accuracy against trainable parameters (log x), one panel per task group and one
    point per strategy: its mean over the group's tasks of the mean over seeds, at the mean of
    its runs' trainable parameters (the classifier head included, so that the linear probe has
    a place on a log axis; a two-phase strategy's last phase, so FT-then-PT sits at VPT's); a
    dashed line at full finetuning's accuracy. And the numbers."""
    done = counted(final_runs)
    per_task = (done.groupby(["group", "task", "strategy"])
                .agg(test_acc=("final_test_acc", "mean"),
                     trainable_params=("trainable_params", "mean")).reset_index())
    points = (per_task.groupby(["group", "strategy"])
              .agg(test_acc=("test_acc", "mean"), trainable_params=("trainable_params", "mean"),
                   tasks=("task", "count")).reset_index())
    strategies = sorted(set(points["strategy"]))
    own = set(strategies) <= set(COLORS)          # the paper's strategies keep their colours
    style = {name: (COLORS[name] if own else plt.cm.tab20.colors[i % 20],
                    MARKERS[i % len(MARKERS)]) for i, name in enumerate(strategies)}
    groups = list(dict.fromkeys(points.sort_values("group")["group"]))
    fig, axes = plt.subplots(1, len(groups), squeeze=False, sharey=False,
                             figsize=(4.2 * len(groups) + 2.2, 4.2))
    for ax, group in zip(axes[0], groups):
        rows = points[points["group"] == group]
        for _, row in rows.iterrows():
            colour, marker = style[row["strategy"]]
            ax.scatter(row["trainable_params"], row["test_acc"], color=colour, marker=marker,
                       s=42, edgecolor="black", linewidth=0.4, zorder=3)
        full = rows.loc[rows["strategy"] == "full_ft", "test_acc"]
        if len(full):
            ax.axhline(full.iloc[0], color="0.4", ls="--", lw=0.8, zorder=1)
        ax.set_xscale("log")
        tasks = int(rows["tasks"].max())
        ax.set_title(f"{group.capitalize()} ({tasks} task{'s' * (tasks > 1)})", fontsize="medium")
        ax.set_xlabel("trainable parameters, head included, last phase (log scale)")
        ax.grid(alpha=0.3, which="both", lw=0.4)
    axes[0, 0].set_ylabel("test accuracy (%), mean over the group's tasks\n"
                          "of the mean over seeds")
    handles = [plt.Line2D([], [], ls="", marker=style[name][1], color=style[name][0],
                          markeredgecolor="black", markeredgewidth=0.4, label=name)
               for name in strategies]
    handles.append(plt.Line2D([], [], color="0.4", ls="--", lw=0.8, label="full_ft's accuracy"))
    fig.legend(handles=handles, loc="center left", bbox_to_anchor=(1.0, 0.5),
               fontsize="x-small")
    fig.suptitle("Accuracy against trainable parameters, per task group")
    fig.tight_layout()
    return fig, points
