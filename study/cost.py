"""What a study costs before it runs: per stage, per task and per strategy, trials, training
images x epochs, evaluation images, and an estimated number of GPU-hours. The FLOPs of one training
step and one evaluation forward pass are counted exactly, per phase of a trial (FT-then-PT's FT phase as full
finetuning, its prompt phase as prompt tuning) and per (backbone, strategy, prompt length), with
`torch.utils.flop_counter` on a model built on the meta device (no memory, no weights). A prior
phase trained once and replayed (`trainables.priors`: FT-then-PT's FT, once per task in the tune
stage, and in the final stage full_ft's own run of the seed) is counted once.
Each strategy's trainable parameters (the classifier head's excluded, as PETL_Vision's
`inserted_parameters` counts them) come from the same meta-device model.
The hours assume a stated fraction of a stated accelerator's dense bf16 peak. It is an estimate,
not a measurement: bench/ measures throughput."""
from __future__ import annotations

import functools
import math
from collections import defaultdict
from dataclasses import dataclass, field, replace

import torch
from torch.utils.flop_counter import FlopCounterMode

from tasks import get_task
from tasks.splits import split_size
from trainables.backbones import input_size
from trainables.config import TrialConfig
from trainables.footprint import Footprint, trial_footprint
from trainables.priors import shares_prior
from trainables.model import build_model, phases
from trainables.strategy import get_strategy

PEAK_FLOPS = 312e12            # NVIDIA A100 dense bf16
UTILISATION = 0.4
METHOD = (f"FLOPs counted per step with torch.utils.flop_counter on the meta device, at "
          f"{UTILISATION:.0%} of an A100's {PEAK_FLOPS / 1e12:.0f} TFLOP/s dense bf16 peak")


def flops_per_image(cfg: TrialConfig, phase: int) -> tuple[float, float]:
    """(train step, eval forward) FLOPs per image of the trial's model in one phase: adapted up
    to that phase and trained as its strategy trains (a 10-class head: its share is
    negligible)."""
    return _counted(_flops_key(cfg), phase)[:2]


def trainable_parameters(cfg: TrialConfig) -> int:
    """Parameters that train in the trial's last phase, the classifier head's excluded, of its
    model built on the meta device."""
    return _counted(_flops_key(cfg), len(phases(cfg)) - 1)[2]


def _flops_key(cfg: TrialConfig) -> TrialConfig:
    """What a trial's FLOPs and parameters depend on: its model, not its data, its recipe or
    the knobs that leave the model's shape alone (a scaler, a dropout, an initialisation)."""
    declared = {knob.name: knob for knob in get_strategy(cfg.strategy).knobs}
    knobs = tuple((name, declared[name].default if name in declared and
                   not declared[name].shapes_model else value) for name, value in cfg.knobs)
    return replace(cfg, seed=0, recipe=None, prior_recipe=None, cache_dir="", stage="", task="",
                   train_split="", eval_split="", setting="", knobs=knobs)


@functools.lru_cache(maxsize=None)
def _counted(key: TrialConfig, phase: int) -> tuple[float, float, int]:
    """(train step FLOPs, eval forward FLOPs, trained parameters without the head) per image,
    from one model built on the meta device and one forward and backward pass through it."""
    with torch.device("meta"):
        model = build_model(key, 10, pretrained=False, phase=phase)
        size = input_size(model, key.backbone)
        with FlopCounterMode(display=False) as forward:
            loss = model(torch.empty(1, 3, size, size)).sum()
        with FlopCounterMode(display=False) as backward:
            loss.backward()
    trained = sum(p.numel() for name, p in model.named_parameters()
                  if p.requires_grad and not name.startswith("head."))
    flops = float(forward.get_total_flops())
    return flops + float(backward.get_total_flops()), flops, trained


def strategy_footprints(configs: list[TrialConfig],
                        dtype: torch.dtype | None) -> dict[str, Footprint]:
    """Each strategy's peak memory per trial (`trainables.footprint`), counted on its trial with
    the most training FLOPs per step (saved activations grow with them: a longer prompt, a larger
    batch or backbone), with the largest training split any of its trials keeps resident."""
    by_strategy: dict[str, list[TrialConfig]] = defaultdict(list)
    for cfg in configs:
        by_strategy[cfg.strategy].append(cfg)

    def step_flops(cfg: TrialConfig) -> float:
        return max(flops_per_image(_flops_key(cfg), index)[0] * recipe.batch_size
                   for index, (_, recipe) in enumerate(phases(cfg)))
    return {strategy: trial_footprint(max(trials, key=step_flops), dtype, data_of=trials)
            for strategy, trials in by_strategy.items()}


@dataclass
class Cost:
    trials: int = 0
    trial_epochs: float = 0.0    # epochs trained, summed over trials (a shared prior once)
    train_images: int = 0        # images x epochs
    eval_images: int = 0
    flops: float = 0.0
    val_passes: int = 0          # evaluations of a trial's eval split, summed over trials
    eval_flops: float = 0.0      # their share of `flops`

    @property
    def gpu_hours(self) -> float:
        return self.flops / (PEAK_FLOPS * UTILISATION) / 3600

    def val_pass(self) -> tuple[float, float]:
        """One val pass on average: (GPU-seconds, in trial-epochs of training)."""
        if not self.val_passes:
            return 0.0, 0.0
        flops = self.eval_flops / self.val_passes
        per_epoch = (self.flops - self.eval_flops) / self.trial_epochs
        return flops / (PEAK_FLOPS * UTILISATION), flops / per_epoch


@dataclass
class StageCost:
    total: Cost = field(default_factory=Cost)
    by_task: dict[str, Cost] = field(default_factory=lambda: defaultdict(Cost))
    by_strategy: dict[str, Cost] = field(default_factory=lambda: defaultdict(Cost))
    shared: dict = field(default_factory=dict)      # prior phase counted -> the trial id
                                                    # of the trial that trains it

    def add(self, cfg: TrialConfig, share: float = 1.0) -> tuple[Cost, tuple[str, ...]]:
        """Count one trial; `share` is the fraction of its own phase's epochs it is expected to
        run (successive halving stops some trials early: `study.halving`). Returns the trial's
        own cost and the ids of the trials counted before whose prior phase it replays."""
        task = get_task(cfg.task)
        key = _flops_key(cfg)
        ordered = phases(cfg)
        own, replays = Cost(), []
        costs = (self.total, self.by_task[cfg.task], self.by_strategy[cfg.strategy], own)
        for cost in costs:
            cost.trials += 1
        for index, (phase, recipe) in enumerate(ordered):
            last = index == len(ordered) - 1
            if (last and cfg.kept_as_prior) or (not last and shares_prior(cfg)):
                identity = (phase.name, cfg.task, cfg.backbone, cfg.train_split, cfg.eval_split,
                            cfg.seed, replace(recipe, eval_at=()))
                if identity in self.shared:
                    replays.append(self.shared[identity])
                    continue
                self.shared[identity] = cfg.trial_id
            train_flops, eval_flops = flops_per_image(key, index)
            epochs = recipe.epochs * (share if index == len(ordered) - 1 else 1.0)
            train = round((split_size(task, cfg.train_split) or 0) * epochs)
            passes = recipe.evaluations(math.ceil(epochs))
            evaluated = (split_size(task, cfg.eval_split) or 0) * passes
            for cost in costs:
                cost.trial_epochs += epochs
                cost.train_images += train
                cost.eval_images += evaluated
                cost.flops += train * train_flops + evaluated * eval_flops
                cost.val_passes += passes
                cost.eval_flops += evaluated * eval_flops
        return own, tuple(replays)
