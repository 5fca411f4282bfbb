"""The project's side of each benchmark figure, measured in this process: the machine's matmul
peak, one training epoch through the project's loop (device-resident uint8, normalised on the
device) against the reference loop (PNG decoding DataLoader), the model FLOP utilisation of a
training step, the share of a CPU step in matrix products and the fp32 GEMM rate of PyTorch's
path against oneDNN's, the linear probe on cached features against the probe through the
backbone, and a trivial trial function for measuring the Ray driver's overhead per trial; and
the scratch helpers every section shares (a prepared cache, a fresh path, trials through the
project's Ray runner into a fresh MLflow store)."""
from __future__ import annotations

import os
import shutil
import time
import warnings
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from bench import reference
from common.keys import SUMMARY
from common.openmp import one_thread
from study.cost import flops_per_image
from study.studies import DEMO_BACKBONE
from tasks import load_split
from trainables.backbones import normalization
from trainables.config import BackboneSpec, Execution, Recipe, TrialConfig
from trainables.loop import Normalize, Split, train
from trainables.optimizers import make_optimizer
from trainables.strategy import get_strategy
from trainables.model import build_model, phases
from trainables.trial import run_trial

DEMO = replace(DEMO_BACKBONE, weights=None, label="demo-vit-32")   # speed does not need weights
VIT_S = BackboneSpec("vit_small_patch16_224", label="vit-s16-224")
VIT_B = BackboneSpec("vit_base_patch16_224", label="vit-b16-224")
RECIPES = {"full": Recipe("adamw", 0.001, 0.0, epochs=1, warmup_epochs=0, batch_size=64),
           "prompt": Recipe("sgd", 1.0, 0.0, epochs=1, warmup_epochs=0, batch_size=64)}


def config(backbone: BackboneSpec, strategy: str, cache_dir: str, task: str = "digits",
           recipe: Recipe | None = None, prompt_length: int = 8) -> TrialConfig:
    grid = get_strategy(strategy).grid
    return TrialConfig(study="bench", stage="bench", task=task, strategy=strategy,
                       backbone=backbone, recipe=recipe or RECIPES["prompt" if grid == "prompt" else "full"],
                       seed=0,
                       train_split="train800", eval_split="val200",
                       knobs=get_strategy(strategy).knob_values(prompt_length=prompt_length),
                       cache_dir=cache_dir)


CPU = torch.device("cpu")


def device() -> torch.device:
    """Where the benchmark's own models run: the GPU when there is one (a study's trial runs on
    one only when given a share of it: `trainables.devices`)."""
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def trainable_model(cfg: TrialConfig, num_classes: int = 10,
                    on: torch.device | None = None) -> torch.nn.Module:
    return build_model(cfg, num_classes, pretrained=False).to(on or device())


def synchronize() -> None:
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def matmul_size(on: torch.device) -> tuple[int, int]:
    """(n, products per timing) of the matmul peak: on a GPU twenty 8192^3 products between two
    syncs (about 20 ms of work on an H200, so neither the launches nor the sync show); on a CPU
    one 2048^3 product (tens of ms on a few cores)."""
    return (8192, 20) if on.type == "cuda" else (2048, 1)


def timed(work) -> float:
    """Seconds one call of `work` takes, the device synchronised before and after."""
    synchronize()
    began = time.perf_counter()
    work()
    synchronize()
    return time.perf_counter() - began


def matmul_peak(dtype: torch.dtype, reps: int = 10) -> float:
    """The best FLOP/s of n x n matmuls on this device in `dtype` (`matmul_size`)."""
    on = device()
    n, products = matmul_size(on)
    a = torch.randn(n, n, device=on, dtype=dtype)
    b = torch.randn(n, n, device=on, dtype=dtype)
    a @ b
    def products_once():
        for _ in range(products):
            a @ b
    best = min(timed(products_once) for _ in range(reps))
    return 2 * n ** 3 * products / best


def images(cache_dir: str, task: str, count: int, size: int | None) -> tuple[np.ndarray, ...]:
    """The first `count` training images of a task, resized as `export_pngs` resizes them."""
    pixels, labels = load_split(cache_dir, task, "train800")
    pixels, labels = np.asarray(pixels[:count]), np.asarray(labels[:count])
    if size:
        pixels = np.stack([np.asarray(Image.fromarray(p).resize((size, size), Image.BILINEAR))
                           for p in pixels])
    return pixels, labels


def project_epoch(cfg: TrialConfig, pixels: np.ndarray, labels: np.ndarray,
                  dtype: torch.dtype | None, epochs: int = 2, compile: bool = False,
                  sizes: np.ndarray | None = None, crop: int = 0) -> float:
    """Images/s of the last of `epochs` training epochs through the project's loop (a
    compiled model is compiled once, in the first); with `sizes`, on random crops of canvases."""
    model = trainable_model(cfg)
    on = device()
    split = Split(torch.tensor(pixels, device=on), torch.tensor(labels, device=on), "train",
                  None if sizes is None else torch.tensor(sizes, device=on), crop)
    probe = Split(split.images[:8, :crop or None, :crop or None], split.labels[:8], "val")
    mean, std = normalization(model, cfg.backbone)
    seconds = []
    for _ in range(epochs):
        result = train(model, split, probe, Normalize.of(mean, std, on), cfg.recipe, 0,
                       lambda r: None, dtype=dtype, compile=compile)
        seconds.append(result["train_seconds"])
    return len(labels) / seconds[-1]


def reference_epoch(cfg: TrialConfig, pngs: Path, epochs: int = 2) -> tuple[float, float]:
    """Images/s of the last of `epochs` reference epochs, and images/s of its data loading
    alone (decoding and collating, no model)."""
    model = trainable_model(cfg)
    mean, std = normalization(model, cfg.backbone)
    batches = reference.loader(pngs, mean, std, cfg.recipe.batch_size, shuffle=True)
    optimizer = make_optimizer([(n, p) for n, p in model.named_parameters() if p.requires_grad],
                               replace(cfg.recipe, weight_decay=0.0))
    for _ in range(epochs):
        began = time.perf_counter()
        _, _, seen = reference.train_epoch(model, batches, optimizer)
        seconds = time.perf_counter() - began
    began = time.perf_counter()
    decoded = sum(len(y) for _, y in batches)
    return seen / seconds, decoded / (time.perf_counter() - began)


def project_data_rate(pixels: np.ndarray, batch_size: int = 64) -> float:
    """Images/s of the project's data path alone: index the resident uint8 tensor, normalise."""
    on = device()
    split = torch.tensor(pixels, device=on)
    normalize = Normalize.of((0.5,) * 3, (0.5,) * 3, on)
    synchronize()
    began = time.perf_counter()
    for index in torch.randperm(len(split), device=on).split(batch_size):
        normalize(split[index])
    synchronize()
    return len(split) / (time.perf_counter() - began)


def training_step(cfg: TrialConfig, batch: int, dtype: torch.dtype | None,
                  on: torch.device | None = None):
    """One training step of the trial's model on a random batch, as a function, run once."""
    on = on or device()
    model = trainable_model(cfg, on=on)
    size = model.patch_embed.img_size[0]
    x = torch.randn(batch, 3, size, size, device=on)
    y = torch.randint(0, 10, (batch,), device=on)
    optimizer = make_optimizer([(n, p) for n, p in model.named_parameters() if p.requires_grad],
                               cfg.recipe)
    model.train()

    def step():
        with torch.autocast(on.type, dtype=torch.bfloat16, enabled=dtype is not None):
            loss = torch.nn.functional.cross_entropy(model(x).float(), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    step()
    synchronize()
    return step


def step_utilisation(cfg: TrialConfig, batch: int, dtype: torch.dtype | None,
                     steps: int = 3) -> tuple[float, float]:
    """(model FLOP/s achieved by the training step, step seconds) at one batch."""
    step = training_step(cfg, batch, dtype)
    began = time.perf_counter()
    for _ in range(steps):
        step()
    synchronize()
    seconds = (time.perf_counter() - began) / steps
    last_phase = len(phases(cfg)) - 1
    return flops_per_image(replace(cfg, cache_dir=""), last_phase)[0] * batch / seconds, seconds


GEMMS = ("aten::mm", "aten::addmm", "aten::bmm")


def gemm_share(cfg: TrialConfig, batch: int, steps: int = 5) -> float:
    """The share of a CPU training step's time on one thread spent in matrix products
    (torch.profiler's self CPU time of mm, addmm and bmm over all operators')."""
    from torch.profiler import ProfilerActivity, profile
    os.environ.setdefault("KINETO_LOG_LEVEL", "6")      # no notices of its own on stderr
    with one_thread():
        step = training_step(cfg, batch, None, on=CPU)
        with profile(activities=[ProfilerActivity.CPU]) as profiled:
            for _ in range(steps):
                step()
    events = profiled.key_averages()
    return (sum(e.self_cpu_time_total for e in events if e.key in GEMMS)
            / sum(e.self_cpu_time_total for e in events))


def gemm_rates(rows: int, inner: int, columns: int, reps: int) -> tuple[float, float]:
    """fp32 FLOP/s of a linear layer (rows x inner inputs, columns outputs) on one CPU thread:
    through PyTorch's own path (its BLAS, MKL in x86 builds) and through oneDNN (torch.utils.
    mkldnn's layer), which PyTorch does not use for fp32 matrix products."""
    with warnings.catch_warnings():     # its layers are TorchScript, which warns it is deprecated
        warnings.simplefilter("ignore", FutureWarning)
        from torch.utils.mkldnn import to_mkldnn
        onednn = to_mkldnn(torch.nn.Linear(inner, columns).eval())
    layer = torch.nn.Linear(inner, columns).eval()
    x = torch.randn(rows, inner)
    rates = []
    with one_thread(), torch.no_grad():
        for forward, inputs in ((layer, x), (onednn, x.to_mkldnn())):
            forward(inputs)
            began = time.perf_counter()
            for _ in range(reps):
                forward(inputs)
            rates.append(2 * rows * inner * columns * reps / (time.perf_counter() - began))
    return rates[0], rates[1]


def linear_probe(cache_dir: str, task: str, epochs: int, seed: int, cached: bool) -> dict:
    """A demo-backbone linear-probe trial through the project's `run_trial`."""
    recipe = Recipe("sgd", 1.0, 0.0, epochs=epochs, warmup_epochs=min(10, epochs // 10),
                    batch_size=64)
    cfg = replace(config(DEMO, "linear", cache_dir, task=task, recipe=recipe), seed=seed,
                  execution=Execution(threads=torch.get_num_threads(), cache_features=cached))
    return run_trial(cfg, lambda r: None)


def trivial_trial(cfg: TrialConfig, report) -> dict:
    """A trial that trains nothing: one epoch report and a summary, as a real trial sends."""
    report({"epoch": 1, "lr": cfg.recipe.lr, "train_loss": 1.0, "train_acc": 50.0,
            "val_loss": 1.0, "val_acc": 50.0})
    summary = {SUMMARY: 1, "outcome": "finished", "final_val_acc": 50.0, "wall_seconds": 0.0}
    report(summary)
    return summary


def prepared_cache(work: Path, tasks) -> str:
    from tasks import get_task
    from tasks.prepare import prepare
    cache = work / "cache"
    for slug in tasks:
        prepare(get_task(slug), cache)
    return str(cache)


def fresh(path: Path) -> Path:
    if path.is_dir():
        shutil.rmtree(path)
    elif path.exists():
        path.unlink()
    return path


def run_project(configs, study: str, stage: str, work: Path, label: str, **runner):
    """Run trials through the project's Ray runner into a fresh MLflow store; return the
    tracker, the wall seconds (Ray's start included) and the driver's MLflow seconds."""
    from study.ray_runner import RayRunner
    from study.tracking import StudyTracker
    tracker = StudyTracker(study, f"sqlite:///{fresh(work / f'{label}.db')}")
    ray_runner = RayRunner(tracker, storage_path=str(fresh(work / f"ray-{label}")), **runner)
    began = time.perf_counter()
    try:
        logging = ray_runner(configs, stage)
    finally:
        ray_runner.shutdown()
    return tracker, time.perf_counter() - began, logging
