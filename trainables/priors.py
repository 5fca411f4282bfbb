"""A prior phase shared across trials. FT-then-PT first finetunes the whole network with one fixed
recipe, so in the tune stage every prompt lr and weight decay of a task repeats the same
computation (same backbone, data, recipe, seed and precision). The first trial to train it keeps
the trained weights and the phase's per-epoch reports under <cache>/priors/ (written atomically);
later trials in any process or node sharing the cache load the weights and replay the reports
instead of training again. Final-stage trials differ in seed and train their own."""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from common.files import write_atomically, write_text_atomically
from trainables.backbones import resolve_weights
from trainables.config import Recipe, TrialConfig
from trainables.loop import MetricsSink


def shares_prior(cfg: TrialConfig) -> bool:
    return cfg.stage == "tune" and cfg.prior_recipe is not None


def prior_path(cfg: TrialConfig, phase: str, recipe: Recipe, dtype: torch.dtype | None) -> Path:
    """Where the prior lives, named by everything it depends on (a replaced weights file too)."""
    weights = resolve_weights(cfg.backbone, cfg.cache_dir) if cfg.backbone.weights else None
    stamp = (weights.stat().st_size, weights.stat().st_mtime_ns) if weights else None
    identity = {"phase": phase, "recipe": recipe.__dict__, "precision": str(dtype),
                "weights_file": stamp,
                **{k: v for k, v in cfg.to_dict().items()
                   if k in ("task", "backbone", "train_split", "eval_split", "seed")}}
    key = hashlib.sha1(json.dumps(identity, sort_keys=True).encode()).hexdigest()[:16]
    return Path(cfg.cache_dir) / "priors" / f"{cfg.task}-{phase}-{key}.safetensors"


def replay(path: Path, model: torch.nn.Module, report: MetricsSink) -> dict | None:
    """Load a kept prior into `model` and send its reports again; None if there is none."""
    if not (path.exists() and path.with_suffix(".json").exists()):
        return None
    kept = json.loads(path.with_suffix(".json").read_text())
    model.load_state_dict(load_file(str(path), device=str(next(model.parameters()).device)))
    for metrics in kept["reports"]:
        report(metrics)
    return {**kept["result"], "train_seconds": 0.0, "train_images": 0, "replayed": True}


def store(path: Path, model: torch.nn.Module, reports: list[dict], result: dict) -> None:
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    write_atomically(path, lambda partial: save_file(state, partial))
    write_text_atomically(path.with_suffix(".json"),
                          json.dumps({"reports": reports, "result": result}))
