"""Optimisers by name, built from a model's named trainable parameters, and the lr schedules.

- "sgd", "adamw": torch's, with the recipe's weight decay on every trained tensor.
- "vpt_sgd": the official VPT code's SGD (KMnP/vpt src/solver/optimizer.py:50-88, copied
  unchanged into the paper's code ChengHan111/VPT-or-FT): momentum 0.9, the recipe's weight
  decay on every trained tensor except the classifier's bias (`last_layer.bias` there, `head.*bias`
  here); without decay when the recipe's is 0 (optimizer.py:104-136).
- "vpt_adamw": that code's `--train-type finetune` optimiser. With weight decay > 0 it is its own
  AdamW (optimizer.py:139-214, HuggingFace's: eps 1e-6 added to the uncorrected sqrt of the second
  moment, the bias corrections folded into the step size, decoupled decay applied after the update)
  with the decay hard-coded to 0.01 on every tensor whose name lacks "bias" and 0 on the biases,
  whatever the grid's value (optimizer.py:36-48); with weight decay 0 it is SGD with momentum 0.9
  and no decay at the same lr (optimizer.py:100-136). So its wd grid {0.01, 0.001, 1e-4, 0} runs
  two distinct optimisers, not four decays.

Schedules (factor of the recipe's lr by optimiser step): "step" warms up linearly per step from
(step + 1) / W, then decays by a cosine per step; "vpt_epoch" is VPT's WarmupCosineSchedule
(src/solver/lr_scheduler.py:41-66) stepped once per epoch (src/engine/trainer.py:235): epoch e of
the warm-up runs at e / W, so the first epoch runs at lr 0, then a cosine over epochs; "petl_epoch"
is timm's CosineLRScheduler as PETL_Vision builds and steps it (`timm_cosine`)."""
from __future__ import annotations

import math
from typing import Callable, Iterable

import torch
from torch import nn

from trainables.config import Recipe

Named = list[tuple[str, nn.Parameter]]
VPT_ADAMW_DECAY = 0.01          # optimizer.py:42, whatever the grid's weight decay


def is_head_bias(name: str) -> bool:
    return name.startswith("head.") and name.endswith("bias")


class VptAdamW(torch.optim.Optimizer):
    """The official VPT code's AdamW (src/solver/optimizer.py:139-214), step for step."""

    def __init__(self, params: Iterable, lr: float, betas=(0.9, 0.999), eps: float = 1e-6,
                 weight_decay: float = 0.0):
        super().__init__(params, {"lr": lr, "betas": betas, "eps": eps,
                                  "weight_decay": weight_decay})

    @torch.no_grad()
    def step(self, closure: Callable | None = None):
        loss = closure() if closure is not None else None
        for group in self.param_groups:
            params = [p for p in group["params"] if p.grad is not None]
            if not params:
                continue
            beta1, beta2 = group["betas"]
            states = [self.state[p] for p in params]
            for p, state in zip(params, states):
                if not state:
                    state.update(step=0, exp_avg=torch.zeros_like(p),
                                 exp_avg_sq=torch.zeros_like(p))
                state["step"] += 1
            grads = [p.grad for p in params]
            exp_avg = [s["exp_avg"] for s in states]
            exp_avg_sq = [s["exp_avg_sq"] for s in states]
            torch._foreach_mul_(exp_avg, beta1)
            torch._foreach_add_(exp_avg, grads, alpha=1.0 - beta1)
            torch._foreach_mul_(exp_avg_sq, beta2)
            torch._foreach_addcmul_(exp_avg_sq, grads, grads, value=1.0 - beta2)
            denom = torch._foreach_sqrt(exp_avg_sq)
            torch._foreach_add_(denom, group["eps"])
            step_sizes = [-group["lr"] * math.sqrt(1.0 - beta2 ** s["step"])
                          / (1.0 - beta1 ** s["step"]) for s in states]
            torch._foreach_addcdiv_(params, exp_avg, denom, step_sizes)
            if group["weight_decay"] > 0.0:
                torch._foreach_add_(params, params, alpha=-group["lr"] * group["weight_decay"])
        return loss


def _kernel(named: Named) -> dict:
    return {"fused": True} if named[0][1].is_cuda else {"foreach": True}


def _sgd(named: Named, lr: float, wd: float, **kernel) -> torch.optim.Optimizer:
    return torch.optim.SGD([p for _, p in named], lr=lr, momentum=0.9, weight_decay=wd,
                           **kernel)


def _vpt_sgd(named: Named, lr: float, wd: float, **kernel) -> torch.optim.Optimizer:
    groups = [{"params": [p for n, p in named if not is_head_bias(n)], "weight_decay": wd},
              {"params": [p for n, p in named if is_head_bias(n)], "weight_decay": 0.0}]
    return torch.optim.SGD([g for g in groups if g["params"]], lr=lr, momentum=0.9, **kernel)


def _vpt_adamw(named: Named, lr: float, wd: float, **kernel) -> torch.optim.Optimizer:
    if wd <= 0:
        return _vpt_sgd(named, lr, 0.0, **kernel)
    groups = [{"params": [p for n, p in named if "bias" not in n],
               "weight_decay": VPT_ADAMW_DECAY},
              {"params": [p for n, p in named if "bias" in n], "weight_decay": 0.0}]
    return VptAdamW([g for g in groups if g["params"]], lr=lr)


OPTIMIZERS = {
    "sgd": _sgd,
    "adamw": lambda named, lr, wd, **kernel: torch.optim.AdamW(
        [p for _, p in named], lr=lr, weight_decay=wd, **kernel),
    "vpt_sgd": _vpt_sgd,
    "vpt_adamw": _vpt_adamw,
}
# parameter-sized tensors an optimiser holds per trained tensor, at most (`trainables.footprint`):
# SGD's momentum; AdamW's two moments; VptAdamW's two and the `denom` it allocates every step
STATE_COPIES = {"sgd": 1, "adamw": 2, "vpt_sgd": 1, "vpt_adamw": 3}


def make_optimizer(named: Named, recipe: Recipe) -> torch.optim.Optimizer:
    """The recipe's optimiser over named trainable parameters (fused kernels on CUDA, foreach on
    the CPU)."""
    return OPTIMIZERS[recipe.optimizer](named, recipe.lr, recipe.weight_decay, **_kernel(named))


def step_warmup_cosine(step: int, warmup_steps: int, total_steps: int) -> float:
    if step < warmup_steps:
        return (step + 1) / warmup_steps
    progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
    return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))


def vpt_warmup_cosine(epoch: int, warmup_epochs: int, total_epochs: int) -> float:
    """lr_scheduler.py:57-66, verbatim in effect."""
    if epoch < warmup_epochs:
        return float(epoch) / float(max(1.0, warmup_epochs))
    progress = float(epoch - warmup_epochs) / float(max(1, total_epochs - warmup_epochs))
    return max(0.0, 0.5 * (1.0 + math.cos(math.pi * progress)))


PETL_WARMUP_LR_INIT = 1e-6     # PETL_Vision experiment/config/default_vtab_processed.yml:9
PETL_LR_MIN = 1e-5             # default_vtab_processed.yml:8


def timm_cosine(epoch: int, lr: float, warmup_epochs: int, total_epochs: int,
                warmup_lr_init: float = PETL_WARMUP_LR_INIT,
                lr_min: float = PETL_LR_MIN) -> float:
    """The lr of an epoch under timm's CosineLRScheduler(t_initial=total, warmup_t=warmup,
    lr_min, warmup_lr_init) (timm/scheduler/cosine_lr.py, per epoch, one cycle, no warm-up
    prefix) stepped as PETL_Vision's trainer steps it: `scheduler.step(e)` after epoch e
    (engine/trainer.py:151; its per-step `step_update` changes nothing when t_in_epochs), so epoch
    0 runs at the lr the constructor set (warmup_lr_init, or lr without warm-up) and epoch e at
    the schedule's value for e - 1. Without a warm-up prefix the cosine counts from epoch 0, so
    it is already past its top when the warm-up ends."""
    t = epoch - 1
    if t < 0:
        return warmup_lr_init if warmup_epochs else lr
    if t < warmup_epochs:
        return warmup_lr_init + t * (lr - warmup_lr_init) / warmup_epochs
    if t >= total_epochs:
        return lr_min
    return lr_min + 0.5 * (lr - lr_min) * (1 + math.cos(math.pi * t / total_epochs))


SCHEDULES: dict[str, Callable[[int, int, Recipe], float]] = {
    "step": lambda step, per_epoch, r: step_warmup_cosine(
        step, r.warmup_epochs * per_epoch, r.epochs * per_epoch),
    "vpt_epoch": lambda step, per_epoch, r: vpt_warmup_cosine(
        step // per_epoch, r.warmup_epochs, r.epochs),
    "petl_epoch": lambda step, per_epoch, r: timm_cosine(
        step // per_epoch, r.lr, r.warmup_epochs, r.epochs) / r.lr if r.lr else 0.0,
}


def make_schedule(optimizer: torch.optim.Optimizer, recipe: Recipe, steps_per_epoch: int):
    """A LambdaLR stepped after every optimiser step."""
    return torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: SCHEDULES[recipe.schedule](step, steps_per_epoch, recipe))
