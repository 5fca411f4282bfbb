"""A prior phase shared across trials. FT-then-PT first finetunes the whole network with its
task's selected FT recipe, which repeats a computation (same backbone, data, recipe, seed and
precision) done elsewhere:
- in the tune stage, by every prompt lr and weight decay of the task: the first trial to train it
  keeps it, and the others replay it;
- in the final stage, by full_ft's own final run of the same seed: that run is `kept_as_prior`
  and queued first, and FT-then-PT's run replays it (as the paper's code prompt-tunes the FT
  run's checkpoint). These live under the study's own folder and go when its final stage ends.
A prior is the trained weights and the phase's per-epoch reports under <cache>/priors/ (written
atomically); a trial in any process or node sharing the cache loads the weights and sends the
reports again instead of training, and trains the phase itself when the prior is not there."""
from __future__ import annotations

import contextlib
import hashlib
import json
import shutil
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from common.files import write_atomically, write_text_atomically
from trainables.backbones import resolve_weights
from trainables.config import Recipe, TrialConfig
from trainables.loop import MetricsSink


def shares_prior(cfg: TrialConfig) -> bool:
    return cfg.prior_recipe is not None


def priors_folder(cache_dir: str | Path, study: str, stage: str) -> Path:
    """The tune stage's priors are shared by any study with the same cache; the final stage's
    are one study's, discarded when its final stage ends (`discard_final_priors`)."""
    folder = Path(cache_dir) / "priors"
    return folder if stage == "tune" else folder / stage / study


def discard_final_priors(cache_dir: str | Path, study: str) -> None:
    folder = priors_folder(cache_dir, study, "final")
    shutil.rmtree(folder, ignore_errors=True)
    with contextlib.suppress(OSError):       # another study's may still be there
        folder.parent.rmdir()


def prior_path(cfg: TrialConfig, phase: str, recipe: Recipe, dtype: torch.dtype | None) -> Path:
    """Where the prior lives, named by everything it depends on (a replaced weights file too)."""
    weights = resolve_weights(cfg.backbone, cfg.cache_dir) if cfg.backbone.weights else None
    stamp = (weights.stat().st_size, weights.stat().st_mtime_ns) if weights else None
    identity = {"phase": phase, "recipe": recipe.identity(), "precision": str(dtype),
                "weights_file": stamp,
                **{k: v for k, v in cfg.to_dict().items()
                   if k in ("task", "backbone", "train_split", "eval_split", "seed")}}
    key = hashlib.sha1(json.dumps(identity, sort_keys=True).encode()).hexdigest()[:16]
    folder = priors_folder(cfg.cache_dir, cfg.study, cfg.stage)
    return folder / f"{cfg.task}-{phase}-{key}.safetensors"


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
