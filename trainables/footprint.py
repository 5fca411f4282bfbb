"""The memory one trial holds on its device at its peak, counted without memory or a GPU: the
trial's model is built on the meta device and given fake CPU tensors (`FakeTensorMode`), and one
forward pass at the recipe's batch, in the trial's precision and train/eval modes, counts every
tensor autograd saves for the backward pass (each storage once, parameters apart). To those
activations come the weights, the gradients and optimiser state of what trains
(`trainables.optimizers.STATE_COPIES`), times `PEAK_MARGIN` for what the count leaves out (the
backward pass's transient buffers, the allocator's rounding), and the training split the process
keeps resident on the device (FGVC's 384 px canvases make that large). A trial with a prior phase
takes the larger phase's. Autocast is CPU's here: CUDA's op lists differ in a few ops, so the
count is an estimate of the GPU's, not a measurement."""
from __future__ import annotations

import functools
from dataclasses import dataclass, replace
from typing import Iterable

import torch
import torch.nn.functional as F
from torch._subclasses.fake_tensor import FakeTensorMode

from tasks import get_task
from tasks.cache import is_prepared, read_manifest
from tasks.splits import split_size
from tasks.views import layout
from trainables.backbones import input_size
from trainables.config import TrialConfig
from trainables.loop import set_train_mode
from trainables.model import build_model, phases
from trainables.optimizers import STATE_COPIES

PEAK_MARGIN = 1.1
HEAD_CLASSES = 1000        # an upper bound of every task's head here (a small share of a ViT)


@dataclass(frozen=True)
class Footprint:
    weights: int
    grads: int
    optimizer: int
    activations: int
    data: int = 0

    @property
    def peak(self) -> int:
        step = self.weights + self.grads + self.optimizer + self.activations
        return int(PEAK_MARGIN * step) + self.data


def saved_bytes(model: torch.nn.Module, batch: int, size: int,
                dtype: torch.dtype | None) -> int:
    """Bytes of the tensors autograd saves in one training forward of `batch` images (the loss
    included), each storage once, parameters excluded. `model`, on the meta device, is given
    fake CPU tensors in place (it is spent), so the count costs no memory."""
    with FakeTensorMode(allow_non_fake_inputs=True):
        fake = model.to_empty(device="cpu")
        x = torch.empty(batch, 3, size, size)
        y = torch.zeros(batch, dtype=torch.long)
        parameters = {p.untyped_storage()._cdata for p in fake.parameters()}
        saved: dict[int, int] = {}

        def pack(tensor: torch.Tensor) -> torch.Tensor:
            storage = tensor.untyped_storage()
            if storage._cdata not in parameters:
                saved[storage._cdata] = storage.nbytes()
            return tensor

        with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor), \
                torch.autocast("cpu", dtype=dtype or torch.bfloat16, enabled=dtype is not None):
            F.cross_entropy(fake(x).float(), y)
    return sum(saved.values())


def resident_bytes(task: str, split: str, image_size: int, cache_dir: str = "") -> int:
    """The training split a process keeps on its device: uint8 images (canvases for an augmented
    task), int64 labels and, with canvases, each image's int32 (h, w). A folder task's size is
    read from the cache where it is prepared; 0 when it is not known."""
    spec = get_task(task)
    count = split_size(spec, split)
    if count is None and cache_dir and is_prepared(cache_dir, task):
        count = read_manifest(cache_dir, task)["splits"].get(split, {}).get("count")
    count = count or 0
    shape = layout(spec.augment, split, image_size)
    side = shape["shape"][0]
    return count * (side * side * 3 + 8 + (8 if shape["sized"] else 0))


@functools.lru_cache(maxsize=None)
def _model_footprint(key: TrialConfig, dtype: torch.dtype | None) -> tuple[Footprint, int]:
    """The larger phase's footprint without data, and the model's input size."""
    found, size = None, 224
    for index, (strategy, recipe) in enumerate(phases(key)):
        with torch.device("meta"):
            model = build_model(key, HEAD_CLASSES, pretrained=False, phase=index)
        size = input_size(model, key.backbone)
        if strategy.frozen_eval:
            set_train_mode(model)
        else:
            model.train(True)
        trained = sum(p.numel() * p.element_size() for p in model.parameters() if p.requires_grad)
        footprint = Footprint(
            weights=sum(p.numel() * p.element_size() for p in model.parameters()),
            grads=trained, optimizer=trained * STATE_COPIES[recipe.optimizer],
            activations=saved_bytes(model, recipe.batch_size, size, dtype))
        if found is None or footprint.peak > found.peak:
            found = footprint
    return found, size


def trial_footprint(cfg: TrialConfig, dtype: torch.dtype | None,
                    data_of: Iterable[TrialConfig] = ()) -> Footprint:
    """A trial's peak memory on its device (`dtype`: the autocast dtype, None for fp32), with
    the largest training split of its task and `data_of`'s."""
    def plain(recipe):
        return recipe and replace(recipe, base_lr=0.0, weight_decay=0.0)
    key = replace(cfg, study="", stage="", task="", seed=0, train_split="", eval_split="",
                  setting="", cache_dir="", recipe=plain(cfg.recipe),
                  prior_recipe=plain(cfg.prior_recipe))
    model, size = _model_footprint(key, dtype)
    return replace(model, data=max(resident_bytes(c.task, c.train_split, size, c.cache_dir)
                                   for c in (cfg, *data_of)))
