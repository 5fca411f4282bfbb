"""Search spaces as data: lr x weight-decay grids with their optimiser, grouped into a
`SearchSpace` that maps each strategy's grid key ("full", "prompt", "lora") to a grid, and the
per-task VPT prompt lengths (the paper's Tables 16-18, shipped as `data/prompt_lengths.csv`, plus
the demo suite's). Base lrs are scaled by batch / 256 in the loop."""
from __future__ import annotations

import csv
from dataclasses import dataclass
from itertools import product
from pathlib import Path
from types import MappingProxyType
from typing import Mapping

from study.errors import StudyInputError


@dataclass(frozen=True)
class Grid:
    name: str
    optimizer: str                      # "sgd" | "adamw"
    base_lrs: tuple[float, ...]
    weight_decays: tuple[float, ...]

    def __post_init__(self):
        if not self.base_lrs or not self.weight_decays:
            raise StudyInputError(f"grid '{self.name}' is empty")

    def points(self) -> list[tuple[float, float]]:
        return list(product(self.base_lrs, self.weight_decays))


@dataclass(frozen=True)
class SearchSpace:
    name: str
    grids: Mapping[str, Grid]

    def grid_for(self, key: str) -> Grid:
        try:
            return self.grids[key]
        except KeyError:
            raise StudyInputError(f"search space '{self.name}' has no '{key}' grid") from None


PAPER_WEIGHT_DECAYS = (0.01, 0.001, 0.0001, 0.0)
# The seed paper's single grid (SGD, momentum 0.9) for every strategy.
PAPER_SGD = Grid("paper_sgd", "sgd", (50, 25, 10, 5, 2.5, 1, 0.5, 0.25, 0.1, 0.05),
                 PAPER_WEIGHT_DECAYS)
# The official VPT code's full-finetuning grid (AdamW, 5 warm-up epochs in that code).
VPT_OFFICIAL_FT = Grid("vpt_official_ft", "adamw", (0.005, 0.001, 0.0005, 0.0001),
                       PAPER_WEIGHT_DECAYS)
LORA_ADAMW = Grid("lora_adamw", "adamw", (0.005, 0.001, 0.0005, 0.0001), PAPER_WEIGHT_DECAYS)

PAPER = SearchSpace("paper", MappingProxyType(
    {"full": PAPER_SGD, "prompt": PAPER_SGD, "lora": PAPER_SGD}))
OFFICIAL = SearchSpace("vpt_official", MappingProxyType(
    {"full": VPT_OFFICIAL_FT, "prompt": PAPER_SGD, "lora": LORA_ADAMW}))
# The demo's small grid: two or three lrs per family, no weight decay, for the 32 px demo ViT.
DEMO = SearchSpace("demo", MappingProxyType({
    "full": Grid("demo_full", "adamw", (0.004, 0.001), (0.0,)),
    "prompt": Grid("demo_prompt", "sgd", (5.0, 1.0, 0.25), (0.0,)),
    "lora": Grid("demo_lora", "adamw", (0.02, 0.005), (0.0,)),
}))
SMOKE = SearchSpace("smoke", MappingProxyType({
    "full": Grid("smoke_full", "adamw", (0.002,), (0.0,)),
    "prompt": Grid("smoke_prompt", "sgd", (2.5,), (0.0,)),
    "lora": Grid("smoke_lora", "adamw", (0.01,), (0.0,)),
}))


def _paper_prompt_lengths() -> dict[str, int]:
    with open(Path(__file__).parent / "data" / "prompt_lengths.csv", newline="") as f:
        return {row["task"]: int(row["prompt_length"]) for row in csv.DictReader(f)
                if row["task"] != "mean"}


DEMO_PROMPT_LENGTHS = {"photos": 4, "photo_regions": 8, "digits": 8, "microscopy": 4,
                       "count": 8, "sprite_location": 8, "sprite_orientation": 8}
FGVC_PROMPT_LENGTH = 10          # not published in the paper for FGVC; one choice for all five
PROMPT_LENGTHS: Mapping[str, int] = MappingProxyType(
    {**_paper_prompt_lengths(), **DEMO_PROMPT_LENGTHS,
     **{task: FGVC_PROMPT_LENGTH for task in ("cub200", "nabirds", "oxford_flowers",
                                              "stanford_dogs", "stanford_cars")}})


def prompt_length(task: str) -> int:
    try:
        return PROMPT_LENGTHS[task]
    except KeyError:
        raise StudyInputError(f"no prompt length for task '{task}'") from None
