"""The paper's figures from MLflow: Figure 3 (per-task FID bars coloured by the winner of VPT-deep
against full finetuning, hatched where the task disparity is high, i.e. the structured group)
with Figure 1's quadrant counts, and Figures 5/6 (train and test loss per epoch of each strategy,
per task) with an overfitting flag whose rule is printed beside it."""
from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402
from mlflow.tracking import MlflowClient  # noqa: E402

from results.runs import counted  # noqa: E402

COLORS = {"vpt_deep": "tab:blue", "full_ft": "tab:orange", "mixed": "tab:green",
          "ft_then_pt": "tab:red", "vpt_shallow": "tab:purple", "linear": "tab:gray",
          "lora": "tab:brown"}
OVERFIT_RULE = ("overfitting: the last evaluated test loss is at least 10 % above the lowest "
                "test loss of the run while the train loss kept falling")


def winners(final_runs: pd.DataFrame, challenger: str = "vpt_deep",
            baseline: str = "full_ft") -> pd.DataFrame:
    means = counted(final_runs).groupby(["task", "group", "strategy"])["final_test_acc"].mean() \
        .unstack()
    means = means.dropna(subset=[challenger, baseline])
    return pd.DataFrame({"task": means.index.get_level_values(0),
                         "group": means.index.get_level_values(1),
                         "winner": ["VPT" if v > f else "FT" for v, f in
                                    zip(means[challenger], means[baseline])]})


def quadrants(fid: pd.DataFrame, wins: pd.DataFrame, fid_column: str):
    """Figure 3 and the quadrant counts (disparity: structured = high; FID: above the median)."""
    data = fid.merge(wins, on=["task", "group"]).sort_values(fid_column)
    fig, ax = plt.subplots(figsize=(max(6, 0.6 * len(data)), 4))
    spread = data.get(f"{fid_column}_std")          # std over random subsets, when measured
    bars = ax.bar(data["task"], data[fid_column], yerr=spread, capsize=3 if spread is not None
                  else 0, color=["tab:blue" if w == "VPT" else "tab:orange"
                                 for w in data["winner"]], edgecolor="black")
    for bar, group in zip(bars, data["group"]):
        bar.set_hatch("//" if group == "structured" else "")
    samples = f", {int(data['samples'].iloc[0])} images" if "samples" in data else ""
    ax.set_ylabel(fid_column.replace("_", " ") + (f"\n(mean ± std over subsets{samples})"
                                                  if spread is not None else ""))
    ax.set_xlabel("task (sorted by FID to the pretraining images)")
    ax.set_title("Who wins, VPT-deep or full finetuning, against the task's distance to pretraining")
    ax.tick_params(axis="x", rotation=45)
    for label in ax.get_xticklabels():
        label.set_horizontalalignment("right")
    handles = [plt.Rectangle((0, 0), 1, 1, color="tab:blue", label="VPT wins"),
               plt.Rectangle((0, 0), 1, 1, color="tab:orange", label="FT wins"),
               plt.Rectangle((0, 0), 1, 1, facecolor="white", edgecolor="black", hatch="//",
                             label="high task disparity (structured)")]
    ax.legend(handles=handles, loc="upper left")
    median = data[fid_column].median()
    data["distance"] = ["high FID" if v > median else "low FID" for v in data[fid_column]]
    data["disparity"] = ["high disparity" if g == "structured" else "low disparity"
                         for g in data["group"]]
    counts = (data.groupby(["disparity", "distance", "winner"]).size().unstack(fill_value=0)
              .reindex(columns=["VPT", "FT"], fill_value=0).reset_index())
    return fig, counts, data


def histories(uri: str, run_ids, keys=("train_loss", "test_loss")) -> pd.DataFrame:
    client = MlflowClient(uri)
    rows = [{"run_id": run_id, "metric": key, "epoch": m.step, "value": m.value}
            for run_id in run_ids for key in keys
            for m in client.get_metric_history(run_id, key)]
    return pd.DataFrame(rows, columns=["run_id", "metric", "epoch", "value"])


def overfitting(curve: pd.DataFrame) -> bool:
    test = curve[curve["metric"] == "test_loss"].sort_values("epoch")["value"]
    train = curve[curve["metric"] == "train_loss"].sort_values("epoch")["value"]
    return bool(len(test) > 1 and test.iloc[-1] >= 1.1 * test.min()
                and train.iloc[-1] < train.iloc[0])


def loss_curves(final_runs: pd.DataFrame, uri: str):
    """Figures 5/6 for the first final seed of each (task, strategy), and the overfitting flags."""
    done = counted(final_runs)
    first = done.sort_values("seed").drop_duplicates(["task", "strategy"])
    curves = histories(uri, first["run_id"]).merge(first[["run_id", "task", "strategy"]])
    tasks = list(dict.fromkeys(first.sort_values(["group", "task"])["task"]))
    columns = min(4, len(tasks))
    rows = -(-len(tasks) // columns)
    fig, axes = plt.subplots(rows, columns, figsize=(4 * columns, 3 * rows), squeeze=False)
    flags = []
    for ax, task in zip(axes.flat, tasks):
        for strategy, curve in curves[curves["task"] == task].groupby("strategy"):
            for metric, style in (("train_loss", "-"), ("test_loss", "--")):
                line = curve[curve["metric"] == metric].sort_values("epoch")
                ax.plot(line["epoch"], line["value"], style, color=COLORS.get(strategy),
                        label=f"{strategy} {metric.split('_')[0]}")
            flags.append({"task": task, "strategy": strategy, "overfitting": overfitting(curve)})
        ax.set_title(task)
        ax.set_xlabel("epoch")
        ax.set_ylabel("cross-entropy loss")
    spare = list(axes.flat)[len(tasks):]
    for ax in spare:
        ax.axis("off")
    handles, labels = axes.flat[0].get_legend_handles_labels()
    if spare:
        spare[0].legend(handles, labels, loc="center", ncol=2, fontsize="small")
    else:
        fig.legend(handles, labels, loc="upper center", ncol=4, bbox_to_anchor=(0.5, 0))
    fig.suptitle("Train (solid) and test (dashed) loss per epoch, first final seed")
    fig.tight_layout()
    return fig, pd.DataFrame(flags)


def capacity(final_runs: pd.DataFrame, full: str = "full_ft", prompt: str = "vpt_deep"):
    """Figure 4: test accuracy against the training-set size (log x), FT solid, VPT dotted,
    one colour per task; and the numbers behind it."""
    done = counted(final_runs)
    done = done[done["setting"].str.isdigit() & done["strategy"].isin([full, prompt])]
    points = (done.assign(train_size=done["setting"].astype(int))
              .groupby(["task", "strategy", "train_size"])["final_test_acc"].mean()
              .rename("test_acc").reset_index())
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for colour, (task, rows) in zip(plt.cm.tab20.colors, points.groupby("task")):
        for strategy, style in ((full, "-"), (prompt, ":")):
            line = rows[rows["strategy"] == strategy].sort_values("train_size")
            ax.plot(line["train_size"], line["test_acc"], style, marker="o", color=colour,
                    label=f"{task} ({'FT' if strategy == full else 'VPT'})")
    ax.set_xscale("log")
    ax.set_xlabel("training images (log scale)")
    ax.set_ylabel("test accuracy (%)")
    ax.set_title("Accuracy against training-set size: FT solid, VPT-deep dotted")
    ax.legend(fontsize="x-small", ncol=2, loc="lower right")
    return fig, points
