"""What a study costs before it runs: per stage, trials, training images x epochs, evaluation
images, and an estimated number of GPU-hours. The FLOPs of one training step and one evaluation
forward pass are counted exactly, per (backbone, strategy, prompt length, classes), with
`torch.utils.flop_counter` on a model built on the meta device (no memory, no weights); the hours
assume a stated fraction of a stated accelerator's dense bf16 peak. It is an estimate, not a
measurement: bench/ measures throughput."""
from __future__ import annotations

import functools
from dataclasses import dataclass, replace

import torch
from torch.utils.flop_counter import FlopCounterMode

from tasks import get_task
from tasks.splits import split_size
from trainables.backbones import input_size
from trainables.config import TrialConfig
from trainables.strategy import get_strategy
from trainables.trial import build_model

PEAK_FLOPS = 312e12            # NVIDIA A100 dense bf16
UTILISATION = 0.4
METHOD = (f"FLOPs counted per step with torch.utils.flop_counter on the meta device, at "
          f"{UTILISATION:.0%} of an A100's {PEAK_FLOPS / 1e12:.0f} TFLOP/s dense bf16 peak")


@functools.lru_cache(maxsize=None)
def flops_per_image(cfg: TrialConfig) -> tuple[float, float]:
    """(train step, eval forward) FLOPs per image for the trial's model (a 10-class head: the
    head's share is negligible)."""
    strategy = get_strategy(cfg.strategy)
    with torch.device("meta"):
        model = build_model(cfg, 10, pretrained=False)
        for name, param in model.named_parameters():
            param.requires_grad_(strategy.trains(name))
        size = input_size(model, cfg.backbone)
        x = torch.empty(1, 3, size, size)
        with FlopCounterMode(display=False) as forward:
            model(x)
        with FlopCounterMode(display=False) as step:
            model(x).sum().backward()
    return float(step.get_total_flops()), float(forward.get_total_flops())


@dataclass
class StageCost:
    trials: int = 0
    train_images: int = 0        # images x epochs
    eval_images: int = 0
    flops: float = 0.0

    @property
    def gpu_hours(self) -> float:
        return self.flops / (PEAK_FLOPS * UTILISATION) / 3600

    def add(self, cfg: TrialConfig) -> None:
        task = get_task(cfg.task)
        recipes = [r for r in (cfg.prior_recipe, cfg.recipe) if r]
        key = replace(cfg, seed=0, recipe=None, prior_recipe=None, cache_dir="", stage="",
                      task="", train_split="", eval_split="", setting="")
        train_flops, eval_flops = flops_per_image(key)
        train = (split_size(task, cfg.train_split) or 0) * sum(r.epochs for r in recipes)
        evals = sum(-(-r.epochs // r.eval_every) for r in recipes)
        evaluated = (split_size(task, cfg.eval_split) or 0) * evals
        self.trials += 1
        self.train_images += train
        self.eval_images += evaluated
        self.flops += train * train_flops + evaluated * eval_flops
