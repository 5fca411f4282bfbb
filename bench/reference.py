"""The reference harness, kept only to be measured against: how the codebases users would
otherwise pick run a sweep. Every image is a PNG file decoded per sample by a torch DataLoader in
every epoch, steps run in fp32 and read the loss back every step, each trial starts in a fresh
process (Ray Tune with `reuse_actors=False`), and Ray's own `MLflowLoggerCallback` writes every
result from the driver, one call per metric. The model, strategy, optimiser and schedule are the
project's, so only the harness differs. (The one other ray import besides study/ray_runner.py.)"""
from __future__ import annotations

import math
import time
from pathlib import Path

import numpy as np
import ray
import torch
import torch.nn.functional as F
import torchvision.transforms.functional as TF
from PIL import Image
from ray import tune
from ray.air.integrations.mlflow import MLflowLoggerCallback

from tasks import load_split
from trainables.backbones import create_backbone, normalization
from trainables.config import TrialConfig
from trainables.optimizers import make_optimizer, make_schedule
from trainables.model import phases



def export_pngs(cache_dir: str, task: str, split: str, out: Path, size: int | None = None,
                limit: int | None = None) -> Path:
    """Write a cached split as one PNG per image (label in the name), resized to `size` if
    given; skipped when already written."""
    folder = out / task / f"{split}{f'-{size}px' if size else ''}{f'-{limit}' if limit else ''}"
    done = folder / ".complete"
    if done.exists():
        return folder
    folder.mkdir(parents=True, exist_ok=True)
    images, labels = load_split(cache_dir, task, split)
    for i in range(len(labels) if limit is None else min(limit, len(labels))):
        image = Image.fromarray(np.asarray(images[i]))
        if size:
            image = image.resize((size, size), Image.BILINEAR)
        image.save(folder / f"{i:06d}_{int(labels[i])}.png")
    done.touch()
    return folder


class PngFolder(torch.utils.data.Dataset):
    def __init__(self, folder: Path, mean, std):
        self.files = sorted(Path(folder).glob("*.png"))
        self.mean, self.std = list(mean), list(std)

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, i: int):
        path = self.files[i]
        image = TF.to_tensor(Image.open(path).convert("RGB"))
        return TF.normalize(image, self.mean, self.std), int(path.stem.split("_")[1])


def loader(folder: Path, mean, std, batch_size: int, shuffle: bool, seed: int = 0):
    return torch.utils.data.DataLoader(PngFolder(folder, mean, std), batch_size=batch_size,
                                       shuffle=shuffle, num_workers=0,
                                       generator=torch.Generator().manual_seed(seed))


def on_model(model, batches):
    """The loader's batches, moved to the model's device (the GPU, where it has one)."""
    on = next(model.parameters()).device
    for x, y in batches:
        yield x.to(on), y.to(on)


def train_epoch(model, batches, optimizer, schedule=None) -> tuple[float, float, int]:
    model.train()
    loss_sum, correct, seen = 0.0, 0, 0
    for x, y in on_model(model, batches):
        logits = model(x)
        loss = F.cross_entropy(logits, y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        if schedule:
            schedule.step()
        loss_sum += loss.item() * len(y)
        correct += (logits.argmax(1) == y).sum().item()
        seen += len(y)
    return loss_sum / seen, 100.0 * correct / seen, seen


@torch.no_grad()
def evaluate(model, batches) -> tuple[float, float]:
    model.eval()
    loss_sum, correct, seen = 0.0, 0, 0
    for x, y in on_model(model, batches):
        logits = model(x)
        loss_sum += F.cross_entropy(logits, y, reduction="sum").item()
        correct += (logits.argmax(1) == y).sum().item()
        seen += len(y)
    return loss_sum / seen, 100.0 * correct / seen


def reference_trial(config: dict) -> None:
    """One trial in the reference style (runs inside a fresh Ray worker process)."""
    config = config["run"]
    cfg = TrialConfig.from_dict(config["trial"])
    torch.set_num_threads(1)
    torch.manual_seed(cfg.seed)
    pngs = Path(config["pngs"]) / cfg.task
    model = create_backbone(cfg.backbone, config["num_classes"], cfg.cache_dir)
    mean, std = normalization(model, cfg.backbone)
    train = loader(pngs / cfg.train_split, mean, std, cfg.recipe.batch_size, True, cfg.seed)
    val = loader(pngs / cfg.eval_split, mean, std, 256, False)
    epoch = 0
    for phase, recipe in phases(cfg):
        model = phase.prepare(model, cfg)
        optimizer = make_optimizer(
            [(n, p) for n, p in model.named_parameters() if p.requires_grad], recipe)
        schedule = make_schedule(optimizer, recipe, math.ceil(len(train.dataset) /
                                                              recipe.batch_size))
        for _ in range(recipe.epochs):
            epoch += 1
            lr = optimizer.param_groups[0]["lr"]
            train_loss, train_acc, _ = train_epoch(model, train, optimizer, schedule)
            val_loss, val_acc = evaluate(model, val)
            tune.report({"epoch": epoch, "lr": lr, "train_loss": train_loss,
                         "train_acc": train_acc, "val_loss": val_loss, "val_acc": val_acc})


class _TimedMLflowLogger(MLflowLoggerCallback):
    """Ray's callback, unchanged, with the driver time of its calls added up (and a progress
    line per finished trial)."""
    seconds = 0.0
    ended = 0

    def _timed(self, method, *args):
        began = time.perf_counter()
        method(*args)
        type(self).seconds += time.perf_counter() - began

    def log_trial_start(self, trial):
        self._timed(super().log_trial_start, trial)

    def log_trial_result(self, iteration, trial, result):
        self._timed(super().log_trial_result, iteration, trial, result)

    def log_trial_end(self, trial, failed=False):
        self._timed(super().log_trial_end, trial, failed)
        type(self).ended += 1
        print(f"[reference] {type(self).ended} trials done", flush=True)


def run_sweep(configs: list[TrialConfig], pngs: Path, num_classes: dict[str, int],
              tracking_uri: str, storage: Path) -> dict:
    """Run the grid the reference way; wall seconds, trial seconds, logging seconds."""
    began = time.perf_counter()
    _TimedMLflowLogger.seconds, _TimedMLflowLogger.ended = 0.0, 0
    try:
        ray.init(address="local", include_dashboard=False, log_to_driver=False,
                 configure_logging=False)
        space = [{"trial": c.to_dict(), "pngs": str(pngs), "num_classes": num_classes[c.task]}
                 for c in configs]
        tuner = tune.Tuner(
            tune.with_resources(reference_trial, {"cpu": 1}),
            param_space={"run": tune.grid_search(space)},
            tune_config=tune.TuneConfig(reuse_actors=False),
            run_config=tune.RunConfig(
                name="reference", storage_path=str(storage.resolve()), verbose=0,
                callbacks=[_TimedMLflowLogger(tracking_uri=tracking_uri,
                                              experiment_name="reference")]))
        results = tuner.fit()
    finally:
        ray.shutdown()
    errors = [r.error for r in results if r.error]
    if errors:
        raise RuntimeError(f"{len(errors)} reference trial(s) failed: {errors[0]}")
    return {"wall": time.perf_counter() - began, "logging": _TimedMLflowLogger.seconds,
            "trial": sum(r.metrics["time_total_s"] for r in results), "trials": len(configs)}
