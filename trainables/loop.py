"""The training loop, shared by every strategy: epochs over device-resident inputs (uint8 images
normalised per batch on the device, or features computed once), linear warm-up then cosine decay
per step, lr = base_lr * batch / 256, SGD (momentum 0.9) or AdamW from the recipe (fused kernels
on CUDA, foreach on the CPU), optional bf16 autocast and `torch.compile`, per-epoch train and eval
loss and accuracy sent through `report`. A non-finite loss stops training and returns "diverged".
Modules whose parameters are all frozen run in eval mode, as the official VPT code keeps the
frozen encoder, so only what trains (and prompt dropout) sees train-mode behaviour."""
from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from trainables.config import Recipe

Report = Callable[[dict], None]
Inputs = Callable[[torch.Tensor], torch.Tensor]      # stored batch -> model input

OPTIMIZERS = {
    "sgd": lambda params, lr, wd, **kernel: torch.optim.SGD(
        params, lr=lr, momentum=0.9, weight_decay=wd, **kernel),
    "adamw": lambda params, lr, wd, **kernel: torch.optim.AdamW(
        params, lr=lr, weight_decay=wd, **kernel),
}


def optimizer_for(params: list[torch.Tensor], recipe: Recipe) -> torch.optim.Optimizer:
    kernel = {"fused": True} if params[0].is_cuda else {"foreach": True}
    return OPTIMIZERS[recipe.optimizer](params, recipe.lr, recipe.weight_decay, **kernel)


def autocast(device: torch.device, dtype: torch.dtype | None):
    return torch.autocast(device.type, dtype=dtype or torch.bfloat16, enabled=dtype is not None)


@dataclass(frozen=True)
class Split:
    """One split: uint8 NHWC images and int64 labels, either resident on the device (training
    data, indexed every step) or memory-mapped on the host and moved per batch (evaluation sets,
    which can be tens of thousands of images)."""
    images: torch.Tensor | np.ndarray
    labels: torch.Tensor
    name: str                         # metric prefix: "train", "val" or "test"

    def __len__(self) -> int:
        return len(self.labels)

    def batch(self, start: int, stop: int) -> tuple[torch.Tensor, torch.Tensor]:
        labels = self.labels[start:stop]
        images = self.images[start:stop]
        if isinstance(images, np.ndarray):
            images = torch.from_numpy(np.array(images)).to(labels.device, non_blocking=True)
        return images, labels


@dataclass(frozen=True)
class Normalize:
    mean: torch.Tensor
    std: torch.Tensor

    @classmethod
    def of(cls, mean, std, device) -> "Normalize":
        shape = (1, 3, 1, 1)
        return cls(torch.tensor(mean, device=device).view(shape),
                   torch.tensor(std, device=device).view(shape))

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        x = images.permute(0, 3, 1, 2).float().div_(255.0)
        return (x - self.mean) / self.std


def lr_factor(step: int, warmup_steps: int, total_steps: int) -> float:
    if step < warmup_steps:
        return (step + 1) / warmup_steps
    progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
    return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))


def set_train_mode(module: nn.Module) -> None:
    """Train mode where something trains; eval mode for every fully frozen submodule."""
    params = list(module.parameters(recurse=True))
    if params and not any(p.requires_grad for p in params):
        module.eval()
        return
    module.train(True)
    for child in module.children():
        set_train_mode(child)


@torch.no_grad()
def evaluate(model: nn.Module, split: Split, normalize: Inputs, batch_size: int = 256,
             dtype: torch.dtype | None = None):
    model.eval()
    device = split.labels.device
    loss_sum = torch.zeros((), dtype=torch.float64, device=device)
    correct = torch.zeros((), dtype=torch.long, device=device)
    for start in range(0, len(split), batch_size):        # no host sync until the end
        images, y = split.batch(start, start + batch_size)
        with autocast(device, dtype):
            logits = model(normalize(images)).float()
        loss_sum += F.cross_entropy(logits, y, reduction="sum")
        correct += (logits.argmax(1) == y).sum()
    return loss_sum.item() / len(split), 100.0 * correct.item() / len(split)


def train(model: nn.Module, train_split: Split, eval_split: Split, normalize: Inputs,
          recipe: Recipe, seed: int, report: Report, first_epoch: int = 1,
          dtype: torch.dtype | None = None, compile: bool = False) -> dict:
    """Train the parameters that require grad; return the last epoch's numbers and outcome.
    `dtype` (bf16) turns on autocast; `compile` runs the steps through `torch.compile`."""
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = optimizer_for(params, recipe)
    forward = torch.compile(model) if compile else model
    device = train_split.labels.device
    steps_per_epoch = math.ceil(len(train_split) / recipe.batch_size)
    total, warmup = recipe.epochs * steps_per_epoch, recipe.warmup_epochs * steps_per_epoch
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: lr_factor(step, warmup, total))
    generator = torch.Generator().manual_seed(seed)
    last = {"outcome": "finished", "train_seconds": 0.0, "train_images": 0}
    for epoch in range(first_epoch, first_epoch + recipe.epochs):
        set_train_mode(model)
        started = time.perf_counter()
        loss_sum = torch.zeros((), device=device)
        correct = torch.zeros((), dtype=torch.long, device=device)
        order = torch.randperm(len(train_split), generator=generator).to(device)
        lr = optimizer.param_groups[0]["lr"]
        for index in order.split(recipe.batch_size):    # no host sync inside an epoch
            x, y = normalize(train_split.images[index]), train_split.labels[index]
            with autocast(device, dtype):
                logits = forward(x).float()
            loss = F.cross_entropy(logits, y)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            schedule.step()
            loss_sum += loss.detach() * len(y)
            correct += (logits.detach().argmax(1) == y).sum()
        train_loss = loss_sum.item() / len(train_split)
        last["train_seconds"] += time.perf_counter() - started
        last["train_images"] += len(train_split)
        if not math.isfinite(train_loss):
            report({"epoch": epoch, "diverged": 1.0})
            return {**last, "outcome": "diverged", "epoch": epoch}
        metrics = {"epoch": epoch, "lr": lr, "train_loss": train_loss,
                   "train_acc": 100.0 * correct.item() / len(train_split)}
        final = epoch == first_epoch + recipe.epochs - 1
        if final or (epoch - first_epoch + 1) % recipe.eval_every == 0:
            eval_loss, eval_acc = evaluate(forward, eval_split, normalize, dtype=dtype)
            if not math.isfinite(eval_loss):
                report({"epoch": epoch, "diverged": 1.0})
                return {**last, "outcome": "diverged", "epoch": epoch}
            metrics.update({f"{eval_split.name}_loss": eval_loss,
                            f"{eval_split.name}_acc": eval_acc})
        report(metrics)
        last.update(metrics)
    return last
