"""Search spaces as data: lr x weight-decay grids, each with its optimiser (and, where a protocol
sets them per grid, batch size and warm-up), grouped into a `SearchSpace` that maps each
strategy's grid key ("full", "prompt", "mixed", "lora", "petl": the PETL_Vision methods) to a grid and carries per-task tables of
strategy knobs (VPT's prompt lengths), keyed by knob name. The paper has two readings (../README.md, `python -m study explain paper`):
`PAPER`, the protocol its code ran (ChengHan111/VPT-or-FT, i.e. KMnP/vpt plus Mixed), and
`PAPER_AS_WRITTEN`, its text; `PETL` is PETL_Vision's (one AdamW grid for every method). Base lrs
are scaled by batch / 256 in the loop (`absolute` turns a protocol's unscaled lrs into base
lrs)."""
from __future__ import annotations

import csv
from dataclasses import dataclass
from itertools import product
from pathlib import Path
from types import MappingProxyType
from typing import Mapping

from common.errors import StudyInputError, UnknownName

DATA = Path(__file__).parent / "data"


@dataclass(frozen=True)
class Grid:
    name: str
    optimizer: str                      # a name in trainables.optimizers.OPTIMIZERS
    base_lrs: tuple[float, ...]
    weight_decays: tuple[float, ...]
    batch_size: int | None = None       # None: the study's
    warmup_epochs: int | None = None    # None: the study's

    def __post_init__(self):
        if not self.base_lrs or not self.weight_decays:
            raise StudyInputError(f"grid '{self.name}' is empty")

    def points(self) -> list[tuple[float, float]]:
        return list(product(self.base_lrs, self.weight_decays))


@dataclass(frozen=True)
class PerTask:
    """One value per task of a strategy knob (VPT's prompt lengths)."""
    name: str
    values: Mapping[str, int]
    source: str                         # where the numbers come from

    def value(self, task: str):
        try:
            return self.values[task]
        except KeyError:
            raise StudyInputError(f"table '{self.name}' has no value for task '{task}'") from None


@dataclass(frozen=True)
class SearchSpace:
    name: str
    grids: Mapping[str, Grid]
    per_task: Mapping[str, PerTask]     # knob name -> its per-task table

    def grid_for(self, key: str) -> Grid:
        try:
            return self.grids[key]
        except KeyError:
            raise StudyInputError(f"search space '{self.name}' has no '{key}' grid") from None

    def table(self, knob: str) -> PerTask | None:
        return self.per_task.get(knob)


def absolute(lrs: tuple[float, ...], batch_size: int) -> tuple[float, ...]:
    """Base lrs (per 256 images) for lrs that a protocol gives its optimiser unscaled at
    `batch_size`: lr * 256 / batch, which the loop's base_lr * batch / 256 turns back exactly
    for a power-of-two batch."""
    return tuple(lr * 256 / batch_size for lr in lrs)


def _lengths(file: str) -> Mapping[str, int]:
    with open(DATA / file, newline="") as f:
        return MappingProxyType({row["task"]: int(row["prompt_length"])
                                 for row in csv.DictReader(f) if row["task"] != "mean"})


# VPT's per-task lengths, recovered from the paper's own Tuned / Total rows (P:137,159 and Tables
# 10-15, 19): tuned = 9216 * P + 769 * C for deep prompts on ViT-B/16 with a C-class head fits one
# P per task; the paper's code says it "strictly followed the ones in VPT" (VPT-or-FT README:125).
VPT_LENGTHS = PerTask("vpt", _lengths("prompt_lengths_as_run.csv"),
                            "VPT's lengths, as the paper's Tuned/Total rows (P:137,159,620) fit")
# Tables 16-18 (P:596-610), which the text cites from E2VPT [37] (P:512); 15 of 19 differ.
TABLES_16_18 = PerTask("tables_16_18", _lengths("prompt_lengths.csv"),
                             "the paper's Tables 16-18 (P:512,596-610)")
# Lengths this project chose, for tasks no paper's table lists (the demo's, for its 32 px ViT, and
# any task added to tasks/spec.py), kept apart from the paper's numbers above. A study's per-task
# table falls back to it for a task it lacks (`study.spec.KnobChoice`).
PROJECT_LENGTHS = PerTask("project", _lengths("prompt_lengths_project.csv"),
                          "chosen by this project (search_spaces/data/prompt_lengths_project.csv)")
PROJECT_TABLES: Mapping[str, PerTask] = MappingProxyType({"prompt_length": PROJECT_LENGTHS})


def prompt_lengths(table: PerTask) -> Mapping[str, PerTask]:
    return MappingProxyType({"prompt_length": table})


PAPER_WEIGHT_DECAYS = (0.01, 0.001, 0.0001, 0.0)
# The paper's SGD grid (P:79; VPT-or-FT tune_vtab.py:247-253 "prompt"), momentum 0.9, batch 64
# and 10 warm-up epochs (configs/base-prompt.yaml; README.md:142-143).
PAPER_SGD = Grid("paper_sgd", "vpt_sgd", (50, 25, 10, 5, 2.5, 1, 0.5, 0.25, 0.1, 0.05),
                 PAPER_WEIGHT_DECAYS, batch_size=64, warmup_epochs=10)
# FGVC's own prompt grid (VPT tune_fgvc.py:151-156, the same in VPT-or-FT tune_fgvc.py:181-186):
# VTAB's without 0.05; batch 64 and 10 warm-up epochs as configs/base-prompt.yaml:18,25, though
# the paper's code's own FGVC example passes DATA.BATCH_SIZE 128 (command.txt:27-31).
FGVC_SGD = Grid("fgvc_sgd", "vpt_sgd", (50, 25, 10, 5, 2.5, 1, 0.5, 0.25, 0.1),
                PAPER_WEIGHT_DECAYS, batch_size=64, warmup_epochs=10)
# Full finetuning as the paper's code runs it (`--train-type finetune`, tune_vtab.py:219-221;
# configs/base-finetune.yaml: AdamW, 5 warm-up epochs; README.md:141: batch 128).
VPT_OFFICIAL_FT = Grid("vpt_official_ft", "vpt_adamw", (0.001, 0.0001, 0.0005, 0.005),
                       PAPER_WEIGHT_DECAYS, batch_size=128, warmup_epochs=5)
# TOAST's protocol (bfshi/TOAST visual_classification), which the paper's Table 20 follows (P:623):
# SGD with momentum 0.9 (configs/base.yaml:14-15), batch 32 (base.yaml:25), 10 warm-up epochs
# (base.yaml:18), the grids of tune_vtab.py:229-246.
TOAST_FT = Grid("toast_ft", "vpt_sgd", (0.001, 0.0001, 0.0005, 0.005), PAPER_WEIGHT_DECAYS,
                batch_size=32, warmup_epochs=10)
TOAST_LORA = Grid("toast_lora", "vpt_sgd", (1.0, 0.5, 0.25, 0.1, 0.05, 0.025, 0.01),
                  PAPER_WEIGHT_DECAYS, batch_size=32, warmup_epochs=10)

PAPER = SearchSpace("paper", MappingProxyType(
    {"full": VPT_OFFICIAL_FT, "prompt": PAPER_SGD, "mixed": PAPER_SGD, "lora": TOAST_LORA}),
    prompt_lengths(VPT_LENGTHS))
# FGVC: the FT grid as VTAB's (VPT-or-FT tune_fgvc.py:99-100), FGVC's own prompt grid.
PAPER_FGVC = SearchSpace("paper_fgvc", MappingProxyType(
    {"full": VPT_OFFICIAL_FT, "prompt": FGVC_SGD, "mixed": FGVC_SGD, "lora": TOAST_LORA}),
    prompt_lengths(VPT_LENGTHS))
TOAST = SearchSpace("toast", MappingProxyType(
    {"full": TOAST_FT, "prompt": PAPER_SGD, "mixed": PAPER_SGD, "lora": TOAST_LORA}),
    prompt_lengths(VPT_LENGTHS))
PAPER_AS_WRITTEN = SearchSpace("paper_as_written", MappingProxyType(
    {"full": PAPER_SGD, "prompt": PAPER_SGD, "mixed": PAPER_SGD, "lora": PAPER_SGD}),
    prompt_lengths(TABLES_16_18))
# PETL_Vision's (OSU-MLB/PETL_Vision @ 245d262), one grid for every method: AdamW
# (experiment/config/default_vtab_processed.yml:5) at lr {0.001, 0.01} x wd {1e-4, 1e-3}
# (lr_wd_vtab_processed.yml:2-3), lrs given to the optimiser unscaled (engine/optimizer.py:25-30),
# batch 64 (default_vtab_processed.yml:10), 10 warm-up epochs (:7). Methods' own searched knobs
# come from their strategies' declarations, or the `petl` study.
PETL_BATCH = 64
PETL_ADAMW = Grid("petl_adamw", "adamw", absolute((0.001, 0.01), PETL_BATCH), (0.0001, 0.001),
                  batch_size=PETL_BATCH, warmup_epochs=10)
PETL = SearchSpace("petl", MappingProxyType(
    {key: PETL_ADAMW for key in ("full", "prompt", "mixed", "lora", "petl")}),
    MappingProxyType({}))
# The demo's small grid: two or three lrs per family, no weight decay, for the 32 px demo ViT.
_DEMO_FULL = Grid("demo_full", "adamw", (0.004, 0.001), (0.0,))
DEMO = SearchSpace("demo", MappingProxyType({
    "full": _DEMO_FULL, "mixed": _DEMO_FULL,
    "prompt": Grid("demo_prompt", "sgd", (5.0, 1.0, 0.25), (0.0,)),
    "lora": Grid("demo_lora", "adamw", (0.02, 0.005), (0.0,)),
    "petl": Grid("demo_petl", "adamw", (0.02, 0.005), (0.0,)),
}), prompt_lengths(PROJECT_LENGTHS))
_SMOKE_FULL = Grid("smoke_full", "adamw", (0.002,), (0.0,))
SMOKE_GRIDS: Mapping[str, Grid] = MappingProxyType({
    "full": _SMOKE_FULL, "mixed": _SMOKE_FULL,
    "prompt": Grid("smoke_prompt", "sgd", (2.5,), (0.0,)),
    "lora": Grid("smoke_lora", "adamw", (0.01,), (0.0,)),
    "petl": Grid("smoke_petl", "adamw", (0.01,), (0.0,)),
})
SMOKE = SearchSpace("smoke", SMOKE_GRIDS, prompt_lengths(PROJECT_LENGTHS))


def search_spaces() -> Mapping[str, SearchSpace]:
    """Every search space defined here, by its name (what a study file's `search_space` names)."""
    return {v.name: v for v in globals().values() if isinstance(v, SearchSpace)}


def get_search_space(name: str) -> SearchSpace:
    try:
        return search_spaces()[name]
    except KeyError:
        raise UnknownName("search space", name, search_spaces()) from None
