"""One trial from config to summary: load the task's cached splits once per process, put them on
the device, build the timm backbone with its weights, then for the strategy's prior (if any) and
the strategy itself: adapt the model, set `requires_grad` by name, train. Per-epoch metrics and a
final summary (outcome, last-epoch accuracy, parameter counts, tuned %, wall time, images/s) leave
through `report`; the summary is also returned."""
from __future__ import annotations

import json
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from tasks import get_task, load_split
from trainables.backbones import create_backbone, normalization
from trainables.config import TrialConfig
from trainables.faults import inject
from trainables.loop import Normalize, Report, Split, train
from trainables.strategy import get_strategy

SUMMARY = "summary"          # key marking the last report of a trial


def device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def metric_prefix(split: str) -> str:
    return "val" if split.startswith("val") else "test" if split.startswith("test") else "eval"


def load(cfg: TrialConfig, split: str, name: str, on: torch.device, resident: bool) -> Split:
    """A split of the task's cache: copied to the device if `resident`, else memory-mapped."""
    images, labels = load_split(cfg.cache_dir, cfg.task, split)
    return Split(torch.tensor(images, device=on) if resident else images,
                 torch.tensor(labels, device=on), name)


def weights_path(cfg: TrialConfig) -> Path:
    return Path(cfg.cache_dir) / "weights" / cfg.study / f"{cfg.trial_id}.safetensors"


def save_trained(model: torch.nn.Module, cfg: TrialConfig) -> str:
    """Keep the trained weights for later analyses: only what trained (prompts and head for
    VPT), or everything with `save="all"`; the path goes into the summary."""
    if not cfg.save:
        return ""
    from safetensors.torch import save_file
    trained = {n for n, p in model.named_parameters() if p.requires_grad}
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()
             if cfg.save == "all" or k in trained}
    path = weights_path(cfg)
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file(state, str(path))
    path.with_suffix(".json").write_text(json.dumps(cfg.to_dict()))
    return str(path)


def build_model(cfg: TrialConfig, num_classes: int, cache_dir: str | Path = "",
                pretrained: bool = True) -> torch.nn.Module:
    """The trial's architecture: the backbone (with its pretrained weights unless told not to)
    after every phase's adaptation. Under `torch.device("meta")` it costs no memory."""
    backbone = cfg.backbone if pretrained else replace(cfg.backbone, weights=None,
                                                       hub_weights=False)
    model = create_backbone(backbone, num_classes, cache_dir)
    for phase, _ in phases(cfg):
        model = phase.adapt(model, cfg)
    return model


def load_trained(path: str | Path, cache_dir: str | Path) -> tuple[torch.nn.Module, TrialConfig]:
    """Rebuild a trained model from `save_trained`'s file: the pretrained, adapted architecture,
    then the saved weights on top."""
    from safetensors.torch import load_file
    path = Path(path)
    cfg = TrialConfig.from_dict(json.loads(path.with_suffix(".json").read_text()))
    model = build_model(cfg, get_task(cfg.task).num_classes, cache_dir)
    missing, unexpected = model.load_state_dict(load_file(str(path)), strict=False)
    if unexpected:
        raise ValueError(f"{path} has weights the model lacks: {unexpected[:3]}")
    return model.eval(), cfg


def phases(cfg: TrialConfig):
    """(strategy, recipe) trained in order: the strategy's prior first (FT-then-PT), then it."""
    strategy = get_strategy(cfg.strategy)
    prior = [(get_strategy(strategy.prior), cfg.prior_recipe)] if strategy.prior else []
    return prior + [(strategy, cfg.recipe)]


def run_trial(cfg: TrialConfig, report: Report) -> dict:
    """Train one trial; its summary is the last report and the return value."""
    return train_model(cfg, report)[1]


def train_model(cfg: TrialConfig, report: Report) -> tuple[torch.nn.Module, dict]:
    started = time.perf_counter()
    inject(cfg)
    torch.set_num_threads(max(1, cfg.threads))
    torch.manual_seed(cfg.seed)
    np.random.seed(cfg.seed)
    on = device()
    task = get_task(cfg.task)
    train_split = load(cfg, cfg.train_split, "train", on, resident=True)
    eval_split = load(cfg, cfg.eval_split, metric_prefix(cfg.eval_split), on, resident=False)
    model = create_backbone(cfg.backbone, task.num_classes, cfg.cache_dir)
    mean, std = normalization(model, cfg.backbone)
    normalize = Normalize.of(mean, std, on)

    epoch, result = 1, {}
    for phase, recipe in phases(cfg):
        model = phase.adapt(model, cfg).to(on)
        for name, param in model.named_parameters():
            param.requires_grad_(phase.trains(name))
        result = train(model, train_split, eval_split, normalize, recipe, cfg.seed, report,
                       first_epoch=epoch)
        if result["outcome"] != "finished":
            break
        epoch += recipe.epochs

    saved = save_trained(model, cfg) if result["outcome"] == "finished" else ""
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    total = sum(p.numel() for p in model.parameters())
    eval_name = eval_split.name
    summary = {
        SUMMARY: 1, "outcome": result["outcome"],
        f"final_{eval_name}_acc": result.get(f"{eval_name}_acc", float("nan")),
        f"final_{eval_name}_loss": result.get(f"{eval_name}_loss", float("nan")),
        "final_train_loss": result.get("train_loss", float("nan")),
        "trainable_params": trainable, "total_params": total,
        "tuned_percent": 100.0 * trainable / total,
        "train_size": len(train_split), "eval_size": len(eval_split),
        "images_per_second": result["train_images"] / max(result["train_seconds"], 1e-9),
        "wall_seconds": time.perf_counter() - started,
        "device": str(on), "normalization": f"mean={mean} std={std}", "saved_weights": saved,
    }
    report(summary)
    return model, summary
