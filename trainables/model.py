"""The trial's model: the timm backbone with its weights, prepared by each phase's strategy in
turn (a prior phase first, as FT-then-PT's FT), so that the last phase's parameters take
gradients. `phases` lists the (strategy, recipe) pairs a trial trains in order."""
from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import torch

from trainables.backbones import create_backbone
from trainables.config import TrialConfig
from trainables.strategy import get_strategy


def build_model(cfg: TrialConfig, num_classes: int, cache_dir: str | Path = "",
                pretrained: bool = True, phase: int | None = None) -> torch.nn.Module:
    """The trial's model: the backbone (with its pretrained weights unless told not to) prepared
    by every phase's strategy in turn (or the phases up to `phase`), so that the last one's
    parameters take gradients. Under `torch.device("meta")` it costs no memory."""
    backbone = cfg.backbone if pretrained else replace(cfg.backbone, weights=None,
                                                       hub_weights=False)
    model = create_backbone(backbone, num_classes, cache_dir)
    for strategy, _ in phases(cfg)[:None if phase is None else phase + 1]:
        model = strategy.prepare(model, cfg)
    return model


def phases(cfg: TrialConfig):
    """(strategy, recipe) trained in order: the strategy's prior first (FT-then-PT), then it."""
    strategy = get_strategy(cfg.strategy)
    prior = [(get_strategy(strategy.prior), cfg.prior_recipe)] if strategy.prior else []
    return prior + [(strategy, cfg.recipe)]
