"""Published per-task results as one frame, to set beside a study's runs. Three sources, each a
CSV under analysis/data/ made once from its origin (the scripts under scripts/ made the first two):

- "petl": PETL_Vision's stored VTAB-1k results (OSU-MLB/PETL_Vision @ 245d262,
  tune_output/default_vtab/processed_vtab: one final run per task and method, its last-epoch
  test accuracy; and the trainable parameters it recorded without the head);
- "vpt": the VPT paper's table (Jia et al. 2022: Full, Linear, VPT-shallow, VPT-deep on
  VTAB-1k, each number the mean of three runs);
- "paper": this paper's tables (results.csv: Tables 1-15, 19, 20; each the mean of five runs).

One row per (published number, strategy here that it stands for): source, table, backbone (the
family of backbone tags it matches: a study's tag equal to it or extending it with "-...", as
vit_b16-in21k-petl extends vit_b16-in21k), setting, group, task, strategy, method (the source's
name), accuracy, runs (how many runs the number averages) and inserted_parameters (petl only)."""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Mapping

import pandas as pd

from common.errors import UnknownName

DATA = Path(__file__).resolve().parents[1] / "analysis" / "data"
COLUMNS = ["source", "table", "backbone", "setting", "group", "task", "strategy", "method",
           "accuracy", "runs", "inserted_parameters", "knobs"]


@dataclass(frozen=True)
class Source:
    name: str
    title: str                        # what the numbers are, for a printed header
    runs: int                         # runs each published number averages
    read: Callable[[], pd.DataFrame]  # task, group, method, accuracy (+ table, backbone, setting)
    ours: Mapping[str, tuple[str, ...]] = field(default_factory=dict)   # method -> strategies
                                      # here it stands for; any other method: the one named so

    def frame(self) -> pd.DataFrame:
        """The source's numbers, one row per strategy here that each one stands for."""
        raw = self.read()
        rows = raw.assign(strategy=raw["method"].map(lambda m: self.ours.get(m, (m,))))
        rows = rows.explode("strategy").dropna(subset=["strategy"])
        defaults = {"source": self.name, "table": self.name, "backbone": "vit_b16-in21k",
                    "setting": "800", "runs": self.runs, "inserted_parameters": float("nan"),
                    "knobs": ""}
        for column, value in defaults.items():
            if column not in rows:
                rows[column] = value
        return rows[COLUMNS].reset_index(drop=True)


def _petl() -> pd.DataFrame:
    return pd.read_csv(DATA / "petl_vision_vtab.csv", dtype={"knobs": str})


def _vpt() -> pd.DataFrame:
    return pd.read_csv(DATA / "vpt_vtab.csv")


PAPER_BACKBONES = {("vit_b16", "in21k_supervised"): "vit_b16-in21k",
                   ("swin_b", "in21k_supervised"): "swin_b-in21k",
                   ("vit_b16", "mae"): "vit_b16-mae", ("vit_b16", "mocov3"): "vit_b16-mocov3"}
PAPER_TOAST_TABLE = 20          # TOAST's protocol and backbone (the paper-lora preset)


def _paper_setting(row) -> str:
    if row["setting"] == "one_shot":
        return "1shot"
    if row["group"] == "fgvc":
        return "full"
    return str(int(row["train_samples"]))


def _paper() -> pd.DataFrame:
    paper = pd.read_csv(DATA / "results.csv", dtype={"accuracy": float})
    paper = paper[paper["task"] != "mean"]
    # Tables 5 and 6 repeat Tables 1 and 2 at 800 images (results.csv's README)
    paper = paper[~(paper["table"].isin((5, 6)) & (paper["train_samples"] == 800))]
    backbone = [PAPER_BACKBONES[(b, p)] for b, p in zip(paper["backbone"], paper["pretraining"])]
    return paper.assign(
        backbone=[f"{b}-toast" if t == PAPER_TOAST_TABLE else b
                  for b, t in zip(backbone, paper["table"])],
        setting=paper.apply(_paper_setting, axis=1), method=paper["strategy"],
        table=paper["table"].astype(str))[["table", "backbone", "setting", "group", "task",
                                           "method", "accuracy"]]


SOURCES: dict[str, Source] = {s.name: s for s in (
    Source("petl", "PETL_Vision's stored VTAB-1k results (OSU-MLB/PETL_Vision@245d262; one "
                   "final run each, seed 42)", 1, _petl,
           {"full": ("full_ft",), "lora": ("lora", "petl_lora"),
            "vpt_deep": ("vpt_deep", "petl_vpt_deep"),
            "vpt_shallow": ("vpt_shallow", "petl_vpt_shallow")}),
    Source("vpt", "the VPT paper's VTAB-1k table (Jia et al. 2022; each number the mean of "
                  "three runs, P:85)", 3, _vpt, {"full": ("full_ft",)}),
    Source("paper", "this paper's tables (analysis/data/results.csv; each number the mean of "
                    "five runs, P:85)", 5, _paper, {"vpt": ("vpt_deep",)}),
)}


def get_source(name: str) -> Source:
    try:
        return SOURCES[name]
    except KeyError:
        raise UnknownName("published source", name, SOURCES) from None


def published(name: str) -> pd.DataFrame:
    return get_source(name).frame()


def petl_inserted_parameters() -> dict[str, tuple[int, float, int]]:
    """Per strategy here: (min, mean, max) over VTAB-1k's tasks of the trainable parameters
    without the head that PETL_Vision recorded for its method at the selected knobs."""
    rows = published("petl")
    stats = rows.groupby("strategy")["inserted_parameters"].agg(["min", "mean", "max"])
    return {s: (int(r["min"]), float(r["mean"]), int(r["max"])) for s, r in stats.iterrows()}


def petl_selected_knobs(method: str) -> dict[str, dict]:
    """Per task: the lr, wd and knobs PETL_Vision selected for one of its methods."""
    rows = _petl()
    rows = rows[rows["method"] == method]
    return {r["task"]: {"lr": r["lr"], "wd": r["wd"], **json.loads(r["knobs"])}
            for _, r in rows.iterrows()}
