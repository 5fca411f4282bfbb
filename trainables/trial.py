"""One trial from config to summary: the task's training split is put on the device once per
worker process (kept for the next trial a reused actor runs), the timm backbone is built with its
weights, then for the strategy's prior (if any; trained once and shared, see `trainables.priors`)
and the strategy itself: adapt the model, set `requires_grad` by name, train. When only the
classifier head trains, every image passes the frozen backbone once and the head trains on those
features. Per-epoch metrics and a final summary (outcome, last-epoch accuracy, parameter counts,
tuned %, wall time, images/s) leave through `report`; the summary is also returned."""
from __future__ import annotations

import functools
import time
from collections import OrderedDict

import numpy as np
import torch

from common.keys import SUMMARY
from common.machine import machine
from tasks import get_task, load_split
from tasks.cache import load_sizes
from trainables.backbones import create_backbone, normalization
from trainables.checkpoint import save_trained
from trainables.config import Execution, Recipe, TrialConfig
from trainables.devices import choose_device, memory_fraction
from trainables.faults import inject
from trainables.priors import prior_path, replay, shares_prior, store
from trainables.loop import Inputs, MetricsSink, Normalize, Split, autocast, train
from trainables.model import phases
from trainables.strategy import Strategy


BF16_ON_CPU_FROM = 5_000_000     # parameters; below this bf16 autocast was slower on the CPU


def set_up(execution: Execution, seed: int) -> torch.device:
    """Threads, seeds, the device (CUDA only with a share of a GPU: `trainables.devices`), this
    process's share of the GPU's memory and its fp32 matrix products (TF32 or IEEE)."""
    torch.set_num_threads(max(1, execution.threads))
    torch.manual_seed(seed)
    np.random.seed(seed)
    on = torch.device(choose_device(execution.gpu_share, torch.cuda.is_available()))
    if on.type == "cuda":
        fraction = memory_fraction(execution.gpu_share,
                                   torch.cuda.get_device_properties(on).total_memory)
        if fraction is not None:
            torch.cuda.set_per_process_memory_fraction(fraction)
        tf32 = "tf32" if execution.precision == "tf32" else "ieee"
        torch.backends.cuda.matmul.fp32_precision = torch.backends.cudnn.conv.fp32_precision = tf32
    if execution.compile:            # Inductor's compile workers: the trial's CPUs, not the node's
        import torch._inductor.config as inductor
        inductor.compile_threads = max(1, execution.threads)
    return on


def autocast_dtype(execution: Execution, on: torch.device,
                   model: torch.nn.Module) -> torch.dtype | None:
    """bf16 when asked, or by default on CUDA and on a CPU with native bf16 for models large
    enough to gain from it (`python -m bench` measured 2x at ViT-S/16 and 0.5x at the demo
    ViT); otherwise None (fp32)."""
    if execution.precision != "auto":
        return torch.bfloat16 if execution.precision == "bf16" else None
    if on.type == "cuda":
        return torch.bfloat16
    large = sum(p.numel() for p in model.parameters()) >= BF16_ON_CPU_FROM
    return torch.bfloat16 if large and torch.ops.mkldnn._is_mkldnn_bf16_supported() else None


def precision_run(execution: Execution, on: torch.device, dtype: torch.dtype | None) -> str:
    """What the trial's matrix products ran in: bf16, tf32 (fp32 storage on CUDA) or fp32."""
    if dtype is not None:
        return "bf16"
    return "tf32" if execution.precision == "tf32" and on.type == "cuda" else "fp32"


def metric_prefix(split: str) -> str:
    return "val" if split.startswith("val") else "test" if split.startswith("test") else "eval"


@functools.lru_cache(maxsize=2)
def on_device(cache_dir: str, task: str, split: str, on: torch.device) -> tuple[torch.Tensor, ...]:
    """A split's arrays copied to the device once per process: images, labels and, for a
    training split kept in canvases for random crops, each image's size."""
    arrays = [*load_split(cache_dir, task, split)]
    sizes = load_sizes(cache_dir, task, split)
    return tuple(torch.tensor(a, device=on) for a in arrays + ([] if sizes is None else [sizes]))


def load(cfg: TrialConfig, split: str, name: str, on: torch.device, resident: bool) -> Split:
    """A split of the task's cache: on the device if `resident` (kept for later trials of this
    process), else memory-mapped on the host and moved per batch."""
    if resident:
        images, labels, *sizes = on_device(str(cfg.cache_dir), cfg.task, split, on)
        crop = get_task(cfg.task, cfg.cache_dir or None).augment.crop if sizes else 0
        return Split(images, labels, name, *sizes, crop=crop)
    images, labels = load_split(cfg.cache_dir, cfg.task, split)
    return Split(images, torch.tensor(labels, device=on), name)


def only_head_trains(model: torch.nn.Module) -> bool:
    head = {id(p) for p in model.get_classifier().parameters()}
    return all(id(p) in head for p in model.parameters() if p.requires_grad)


@torch.no_grad()
def features(model: torch.nn.Module, split: Split, normalize: Inputs, dtype: torch.dtype | None,
             batch_size: int = 256) -> Split:
    """The frozen backbone's pre-logits features of every image, on the device, in fp32."""
    model.eval()
    out = []
    for start in range(0, len(split), batch_size):
        images, labels = split.batch(start, start + batch_size)
        with autocast(labels.device, dtype):
            out.append(model.forward_head(model.forward_features(normalize(images)),
                                          pre_logits=True).float())
    return Split(torch.cat(out), split.labels, split.name)







def train_phase(model: torch.nn.Module, train_split: Split, eval_split: Split,
                normalize: Normalize, strategy: Strategy, recipe: Recipe, cfg: TrialConfig,
                dtype: torch.dtype | None, report: MetricsSink, first_epoch: int) -> dict:
    """Train one phase; a model whose head alone trains does so on features computed once."""
    extracted = time.perf_counter()
    if cfg.execution.cache_features and only_head_trains(model) and train_split.sizes is None:
        # named as in the model ("head.*"), so that optimisers see which tensor is the head's bias
        trained = torch.nn.Sequential(OrderedDict(head=model.get_classifier()))
        inputs = torch.nn.Identity()
        splits = [features(model, s, normalize, dtype) for s in (train_split, eval_split)]
    else:
        trained, inputs, splits = model, normalize, [train_split, eval_split]
    extracted = time.perf_counter() - extracted
    result = train(trained, *splits, inputs, recipe, cfg.seed, report, first_epoch=first_epoch,
                   dtype=dtype, compile=cfg.execution.compile, frozen_eval=strategy.frozen_eval)
    result["train_seconds"] += extracted
    return result


def run_trial(cfg: TrialConfig, report: MetricsSink) -> dict:
    """Train one trial; its summary is the last report and the return value."""
    return train_model(cfg, report)[1]


def train_model(cfg: TrialConfig, report: MetricsSink) -> tuple[torch.nn.Module, dict]:
    started = time.perf_counter()
    inject(cfg)
    on = set_up(cfg.execution, cfg.seed)
    task = get_task(cfg.task, cfg.cache_dir or None)
    train_split = load(cfg, cfg.train_split, "train", on, resident=True)
    eval_split = load(cfg, cfg.eval_split, metric_prefix(cfg.eval_split), on, resident=False)
    model = create_backbone(cfg.backbone, task.num_classes, cfg.cache_dir)
    mean, std = normalization(model, cfg.backbone)
    normalize = Normalize.of(mean, std, on)
    dtype = autocast_dtype(cfg.execution, on, model)

    epoch, result, prior = 1, {}, {}
    ordered = phases(cfg)
    for index, (phase, recipe) in enumerate(ordered):
        model = phase.prepare(model, cfg).to(on)
        model.zero_grad(set_to_none=True)       # no gradient of an earlier phase survives
        last = index == len(ordered) - 1
        shared = not last and shares_prior(cfg)
        path = (prior_path(cfg, phase.name, recipe, dtype)
                if shared or (last and cfg.kept_as_prior) else None)
        result = replay(path, model, report) if shared else None
        if result is None:
            reports = []
            result = train_phase(model, train_split, eval_split, normalize, phase, recipe, cfg,
                                 dtype, lambda metrics: (reports.append(metrics), report(metrics)),
                                 first_epoch=epoch)
            if path and result["outcome"] == "finished":
                store(path, model, reports, result)
        if shared:
            prior = {"prior": "replayed" if result.get("replayed") else "trained"}
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
        "device": str(on), "machine": machine(),
        "precision": precision_run(cfg.execution, on, dtype),
        "normalization": f"mean={mean} std={std}", "saved_weights": saved, **prior,
    }
    report(summary)
    return model, summary
