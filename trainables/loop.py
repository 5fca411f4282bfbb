"""The training loop, shared by every strategy: epochs over device-resident inputs (uint8 images
normalised per batch on the device, or features computed once), the recipe's optimiser and lr
schedule (`trainables.optimizers`), lr = base_lr * batch / 256, optional bf16 autocast and
`torch.compile`, per-epoch train and eval loss and accuracy sent through `report`. A non-finite
loss stops training and returns "diverged". Modules whose parameters are all frozen run in eval
mode, as the official VPT code keeps the frozen encoder, so only what trains (and prompt dropout)
sees train-mode behaviour."""
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
from trainables.optimizers import make_optimizer, make_schedule

MetricsSink = Callable[[dict], None]              # receives each epoch's metrics, then the summary
Inputs = Callable[[torch.Tensor], torch.Tensor]      # stored batch -> model input

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
    sizes: torch.Tensor | None = None   # (h, w) of each image in its canvas: train on random crops
    crop: int = 0

    def __len__(self) -> int:
        return len(self.labels)

    def take(self, index: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
        """Training images at `index`: a random crop and flip of each when the split has sizes."""
        if self.sizes is None:
            return self.images[index]
        return random_crops(self.images[index], self.sizes[index], self.crop, generator)

    def batch(self, start: int, stop: int) -> tuple[torch.Tensor, torch.Tensor]:
        labels = self.labels[start:stop]
        images = self.images[start:stop]
        if isinstance(images, np.ndarray):
            images = torch.from_numpy(np.array(images)).to(labels.device, non_blocking=True)
        return images, labels


def random_crops(images: torch.Tensor, sizes: torch.Tensor, crop: int,
                 generator: torch.Generator | None) -> torch.Tensor:
    """A random `crop` square of each image (whose content is its (h, w) of `sizes` at the top
    left of the canvas), flipped horizontally with probability 1/2: torchvision's RandomCrop and
    RandomHorizontalFlip as VPT applies them to FGVC images, batched in one gather on the
    device."""
    draws = torch.rand(len(images), 3, generator=generator, device=images.device)
    top = (draws[:, 0] * (sizes[:, 0] - crop + 1)).long()
    left = (draws[:, 1] * (sizes[:, 1] - crop + 1)).long()
    steps = torch.arange(crop, device=images.device)
    rows, cols = top[:, None] + steps, left[:, None] + steps
    cols = torch.where(draws[:, 2:] < 0.5, cols.flip(1), cols)
    batch = torch.arange(len(images), device=images.device)[:, None, None]
    return images[batch, rows[:, :, None], cols[:, None, :]]


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


def set_train_mode(module: nn.Module) -> None:
    """Train mode for a module whose parameters all train (with its dropout and drop-path), eval
    mode for one whose parameters are all frozen or that has none; a module that partly trains
    decides child by child. So a frozen backbone's dropouts stay off wherever they sit, as the
    official VPT code keeps its frozen encoder in eval mode; prompt dropout acts."""
    trains = [p.requires_grad for p in module.parameters()]
    if not any(trains):
        module.eval()
    elif all(trains):
        module.train(True)
    else:
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


RECOMPILE_LIMIT = 64


def compiled(model: nn.Module) -> nn.Module:
    """`torch.compile(model)`, with room for every graph a reused worker meets: each strategy,
    training and evaluation (no grad), and each epoch's partial last batch add one to the
    model's forward; past Dynamo's default limit of 8 it runs eager, saying so only in a log."""
    torch._dynamo.config.recompile_limit = max(torch._dynamo.config.recompile_limit,
                                               RECOMPILE_LIMIT)
    return torch.compile(model)


def train(model: nn.Module, train_split: Split, eval_split: Split, normalize: Inputs,
          recipe: Recipe, seed: int, report: MetricsSink, first_epoch: int = 1,
          dtype: torch.dtype | None = None, compile: bool = False,
          frozen_eval: bool = True) -> dict:
    """Train the parameters that require grad; return the last epoch's numbers and outcome.
    `frozen_eval=False` runs the whole model in train mode, frozen parts included.
    `dtype` (bf16) turns on autocast; `compile` runs the steps through `torch.compile`."""
    optimizer = make_optimizer([(n, p) for n, p in model.named_parameters() if p.requires_grad],
                               recipe)
    forward = compiled(model) if compile else model
    device = train_split.labels.device
    schedule = make_schedule(optimizer, recipe, math.ceil(len(train_split) / recipe.batch_size))
    generator = torch.Generator().manual_seed(seed)
    crops = torch.Generator(device).manual_seed(seed) if train_split.sizes is not None else None
    last = {"outcome": "finished", "train_seconds": 0.0, "train_images": 0}
    for epoch in range(first_epoch, first_epoch + recipe.epochs):
        if frozen_eval:
            set_train_mode(model)
        else:
            model.train(True)
        started = time.perf_counter()
        loss_sum = torch.zeros((), device=device)
        correct = torch.zeros((), dtype=torch.long, device=device)
        order = torch.randperm(len(train_split), generator=generator).to(device)
        lr = optimizer.param_groups[0]["lr"]
        for index in order.split(recipe.batch_size):    # no host sync inside an epoch
            x, y = normalize(train_split.take(index, crops)), train_split.labels[index]
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
        if recipe.evaluates_after(epoch - first_epoch + 1):
            eval_loss, eval_acc = evaluate(forward, eval_split, normalize, dtype=dtype)
            if not math.isfinite(eval_loss):
                report({"epoch": epoch, "diverged": 1.0})
                return {**last, "outcome": "diverged", "epoch": epoch}
            metrics.update({f"{eval_split.name}_loss": eval_loss,
                            f"{eval_split.name}_acc": eval_acc})
        report(metrics)
        last.update(metrics)
    return last
