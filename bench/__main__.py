"""`python -m bench [--quick] [--sections ...]`: measure, side by side in one run, what the
project's harness gains over the reference harness (bench/reference.py) and how close its
training step runs to this machine's matmul peak, print each figure as it is measured, and add
the figures (with the date, the machine and the command) to the top of bench/RESULTS.md. Every
model is randomly initialised: speed does not depend on the weights."""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

import torch

from bench.measure import fresh, prepared_cache, run_project
from common.machine import machine

# environment variables that choose PyTorch's CPU kernels, recorded with the command when set
KERNEL_SETTINGS = ("ATEN_CPU_CAPABILITY", "ONEDNN_MAX_CPU_ISA", "MKL_ENABLE_INSTRUCTIONS",
                   "OMP_NUM_THREADS", "GOMP_SPINCOUNT")
DENSE_BF16_PEAKS = {"H200": 989e12, "H100": 989e12, "A100": 312e12}     # datasheets, FLOP/s
HERE = Path(__file__).resolve().parent


@dataclass
class Figures:
    lines: list[str] = field(default_factory=list)

    def add(self, line: str) -> None:
        self.lines.append(line)
        print(f"  {line}", flush=True)


@dataclass(frozen=True)
class Size:
    """How big each measurement is: the full run, or --quick (every code path, small)."""
    grid_tasks: tuple[str, ...] = ("digits", "photos", "count")
    grid_strategies: tuple[str, ...] = ("full_ft", "vpt_deep", "vpt_shallow", "linear",
                                        "mixed", "ft_then_pt", "lora")
    grid_epochs: int = 10
    vit_s_images: int = 128
    vit_b_batch: int = 8
    probe_epochs: int = 100
    driver_trials: int = 1000
    gpu_batches: tuple[int, ...] = (64, 128)
    gemm_reps: int = 500
    contention_steps: int = 40
    strategy_steps: int = 5


QUICK = Size(grid_tasks=("digits",), grid_strategies=("full_ft", "vpt_deep", "linear"),
             grid_epochs=2, vit_s_images=16, vit_b_batch=2, probe_epochs=5, driver_trials=20,
             gpu_batches=(8,), gemm_reps=20, contention_steps=5, strategy_steps=1)


def ratio(a: float, b: float) -> str:
    return f"{a / b:.2f}x"


def demo_grid(size: Size, name: str):
    """The demo study cut to the size's tasks, strategies and epochs, on the untrained demo ViT."""
    from bench.measure import DEMO
    from study.spec import get_study
    return replace(get_study("demo"), name=name, tasks=size.grid_tasks,
                   strategies=size.grid_strategies, backbones=(DEMO,), epochs=size.grid_epochs,
                   warmup_epochs=min(2, size.grid_epochs - 1))


def every_tune_trial(spec, **where) -> list:
    """Both tune waves at once, FT-then-PT's prior at the first FT grid point (speed does not
    depend on which one the selection picks)."""
    return spec.tune_trials(**where) + spec.tune_trials(spec.first_points(), **where)


def grid(size: Size, work: Path, figures: Figures) -> None:
    """The demo study's tune grid, run by the project and by the reference harness."""
    from bench import reference
    from tasks import get_task
    cache = prepared_cache(work, size.grid_tasks)
    spec = demo_grid(size, "bench-grid")
    configs = every_tune_trial(spec, cache_dir=cache)
    print(f"[grid] {len(configs)} trials of the demo grid ({', '.join(size.grid_tasks)}; "
          f"{size.grid_epochs} epochs), project harness", flush=True)
    tracker, project, logging = run_project(configs, spec.name, "tune", work, "project")
    runs = tracker.runs("tune", "FINISHED")
    trial_seconds = sum(run.data.metrics["wall_seconds"] for run in runs)
    if len(runs) != len(configs):
        raise RuntimeError(f"project: {len(runs)} of {len(configs)} trials finished")

    print("[grid] the same trials, reference harness", flush=True)
    pngs = work / "pngs"
    for task in size.grid_tasks:
        for split in ("train800", "val200"):
            reference.export_pngs(cache, task, split, pngs)
    ref = reference.run_sweep(configs, pngs, {t: get_task(t).num_classes for t in size.grid_tasks},
                              f"sqlite:///{fresh(work / 'reference.db')}",
                              fresh(work / "ray-reference"))
    figures.add(f"study grid wall time, project vs reference ({len(configs)} trials, demo ViT, "
                f"1 CPU per trial): {ratio(ref['wall'], project)} (project {project:.0f} s, "
                f"reference {ref['wall']:.0f} s)")
    figures.add(f"MLflow logging share of trial time, project: "
                f"{100 * logging / trial_seconds:.2f}% ({1000 * logging / len(configs):.0f} ms "
                f"of driver time per trial)")
    figures.add(f"MLflow logging share of trial time, reference (Ray's MLflowLoggerCallback): "
                f"{100 * ref['logging'] / ref['trial']:.2f}% "
                f"({1000 * ref['logging'] / len(configs):.0f} ms per trial)")
    figures.add(f"MLflow driver time per trial, reference vs project: "
                f"{ratio(ref['logging'], logging)}")


def epoch(size: Size, work: Path, figures: Figures) -> None:
    """Images/s of one training epoch, data included: project loop vs reference loop."""
    from bench import reference
    from bench.measure import DEMO, VIT_S, config, images, project_data_rate, project_epoch, \
        reference_epoch
    cache = prepared_cache(work, ("digits",))
    for backbone, count, px in ((DEMO, 800, None), (VIT_S, size.vit_s_images, 224)):
        pixels, labels = images(cache, "digits", count, px)
        pngs = reference.export_pngs(cache, "digits", "train800", work / "pngs", size=px,
                                     limit=count)
        resolution = px or pixels.shape[1]
        eager = {}
        for strategy in ("full_ft", "vpt_deep"):
            cfg = config(backbone, strategy, cache)
            print(f"[epoch] {backbone.tag} {strategy}: {count} images at {resolution} px",
                  flush=True)
            ref, decoded = reference_epoch(cfg, pngs)
            fp32 = project_epoch(cfg, pixels, labels, None)
            bf16 = project_epoch(cfg, pixels, labels, torch.bfloat16)
            best, eager[strategy] = max(fp32, bf16), fp32
            figures.add(f"epoch images/s, project vs reference, {backbone.tag} {strategy}: "
                        f"{ratio(best, ref)} (project fp32 {fp32:.0f}, bf16 {bf16:.0f}; "
                        f"reference fp32 {ref:.0f} img/s; its PNG decoding alone {decoded:.0f} "
                        f"img/s = {100 * ref / decoded:.0f}% of its epoch)")
            figures.add(f"bf16 autocast vs fp32, project, {backbone.tag} {strategy}: "
                        f"{ratio(bf16, fp32)}")
        if backbone is DEMO:
            compiled = project_epoch(config(DEMO, "full_ft", cache), pixels, labels, None,
                                     compile=True)
            figures.add(f"torch.compile vs eager, project, {DEMO.tag} full_ft: "
                        f"{ratio(compiled, eager['full_ft'])} ({compiled:.0f} vs "
                        f"{eager['full_ft']:.0f} img/s after the "
                        f"compiling epoch)")
        data = project_data_rate(pixels)
        figures.add(f"data path alone, project vs reference, {backbone.tag}: "
                    f"{ratio(data, decoded)} ({data:.0f} vs {decoded:.0f} img/s)")


def augment(size: Size, work: Path, figures: Figures) -> None:
    """FGVC's random crop and flip, taken on the device each step from 384 px canvases (as the
    cache keeps training images of an augmented task), against training on stored 224 px
    images: the cost per epoch of the augmentation."""
    import numpy as np
    from bench.measure import VIT_S, config, images, project_epoch
    cache = prepared_cache(work, ("digits",))
    cfg = config(VIT_S, "full_ft", cache)
    plain, labels = images(cache, "digits", size.vit_s_images, 224)
    canvases, _ = images(cache, "digits", size.vit_s_images, 384)
    widths = np.random.default_rng(0).integers(256, 385, len(labels))
    sizes = np.stack([np.full(len(labels), 256), widths], axis=1)     # shorter side 256
    print(f"[augment] {VIT_S.tag} full_ft: {len(labels)} images, 224 px stored vs 384 px "
          f"canvases cropped on the device", flush=True)
    stored = project_epoch(cfg, plain, labels, None)
    cropped = project_epoch(cfg, canvases, labels, None, sizes=sizes, crop=224)
    figures.add(f"training epoch with random crop + flip on the device vs without, {VIT_S.tag} "
                f"full_ft: {ratio(cropped, stored)} ({cropped:.1f} vs {stored:.1f} img/s)")


def mfu(size: Size, work: Path, figures: Figures) -> None:
    """Model FLOP/s of the training step as a share of the measured matmul peak."""
    from bench.measure import DEMO, VIT_B, config, device, matmul_peak, matmul_size, \
        step_utilisation
    peaks = {"fp32": matmul_peak(torch.float32), "bf16": matmul_peak(torch.bfloat16)}
    n, products = matmul_size(device())
    where = torch.cuda.get_device_name() if device().type == "cuda" else \
        f"{torch.get_num_threads()} threads"
    figures.add(f"measured {n}x{n} matmul peak ({products} per sync): fp32 "
                f"{peaks['fp32'] / 1e9:.0f} GFLOP/s, bf16 {peaks['bf16'] / 1e9:.0f} GFLOP/s "
                f"({where})")
    for backbone, batch in ((DEMO, 64), (VIT_B, size.vit_b_batch)):
        cfg = config(backbone, "full_ft", "")
        for name, dtype in (("fp32", None), ("bf16", torch.bfloat16)):
            achieved, seconds = step_utilisation(cfg, batch, dtype)
            figures.add(f"MFU of the full_ft step, {backbone.tag} batch {batch}, {name}: "
                        f"{100 * achieved / peaks[name]:.1f}% of the {name} matmul peak "
                        f"({achieved / 1e9:.0f} GFLOP/s, {seconds * 1000:.0f} ms per step)")


def kernels(size: Size, work: Path, figures: Figures) -> None:
    """Where a CPU training step's time goes: its share in matrix products, and the fp32 GEMM
    rate PyTorch's path gets on one core against oneDNN's on the same core."""
    from bench.measure import DEMO, config, gemm_rates, gemm_share
    share = gemm_share(config(DEMO, "full_ft", ""), 64)
    figures.add(f"matrix products' share of the {DEMO.tag} full_ft step (batch 64, fp32, "
                f"torch.profiler's self CPU time): {100 * share:.0f}%")
    held = os.environ.get("ONEDNN_MAX_CPU_ISA")
    demo_shape = (64 * 17, 64, 256)     # batch 64 x 17 tokens, width 64 -> the MLP's 256
    rates = {}
    for shape, reps in ((demo_shape, size.gemm_reps), ((2048, 2048, 2048), 5)):
        ours, onednn = rates[shape] = gemm_rates(*shape, reps)
        figures.add(f"fp32 linear {shape[0]}x{shape[1]} -> {shape[2]}, one thread: PyTorch's "
                    f"path ({'MKL' if torch.backends.mkl.is_available() else 'its BLAS'}) "
                    f"{ours / 1e9:.0f} GFLOP/s, oneDNN"
                    f"{f' held to {held}' if held else ''} {onednn / 1e9:.0f} GFLOP/s: "
                    f"{ratio(onednn, ours)}")
    ours, onednn = rates[demo_shape]
    figures.add(f"the {DEMO.tag} step if its matrix products ran at oneDNN's rate: "
                f"{1 / (1 - share + share * ours / onednn):.2f}x faster (an estimate from the "
                f"two figures above)")


def contention(size: Size, work: Path, figures: Figures) -> None:
    """The pretraining's step on 2 threads with every core idle and with one core busy (another
    process spinning), under libgomp's default spin and the project's (common/openmp.py); one
    thread for comparison. Each in a fresh process, since libgomp reads its settings at load."""
    from bench.measure import DEMO
    from common.openmp import SPIN

    def step_ms(threads: int, spin: str | None, busy: bool) -> float:
        env = {k: v for k, v in os.environ.items() if k != "GOMP_SPINCOUNT"}
        env.update({"GOMP_SPINCOUNT": spin} if spin else {})
        hog = subprocess.Popen([sys.executable, "-c", "while True: pass"]) if busy else None
        try:
            done = subprocess.run([sys.executable, "-m", "bench.step", str(threads), "128",
                                   str(size.contention_steps)], env=env, check=True,
                                  capture_output=True, text=True)
        finally:
            if hog:
                hog.kill()
                hog.wait()
        return float(done.stdout.split()[-1])

    for busy in (False, True):
        default, ours, one = step_ms(2, None, busy), step_ms(2, SPIN, busy), step_ms(1, SPIN, busy)
        figures.add(f"{DEMO.tag} step at batch 128 (the pretraining's) on 2 threads, "
                    f"{'one core busy' if busy else 'cores idle'}: GOMP_SPINCOUNT={SPIN} "
                    f"{ours:.0f} ms vs libgomp's default {default:.0f} ms: "
                    f"{ratio(default, ours)} (one thread: {one:.0f} ms)")


def probe(size: Size, work: Path, figures: Figures) -> None:
    """The linear probe on features computed once vs through the frozen backbone each epoch."""
    from bench.measure import linear_probe
    cache = prepared_cache(work, ("digits",))
    print(f"[probe] linear probe on digits, {size.probe_epochs} epochs", flush=True)
    through = linear_probe(cache, "digits", size.probe_epochs, 42, cached=False)
    cached = linear_probe(cache, "digits", size.probe_epochs, 42, cached=True)
    other_seed = linear_probe(cache, "digits", size.probe_epochs, 44, cached=True)
    figures.add(f"linear probe trial wall time, through the backbone vs cached features "
                f"({size.probe_epochs} epochs): "
                f"{ratio(through['wall_seconds'], cached['wall_seconds'])} "
                f"({through['wall_seconds']:.1f} s vs {cached['wall_seconds']:.2f} s)")
    figures.add(f"linear probe val accuracy: cached {cached['final_val_acc']:.1f}%, through the "
                f"backbone {through['final_val_acc']:.1f}% (difference "
                f"{abs(cached['final_val_acc'] - through['final_val_acc']):.1f} points; seed "
                f"42 vs 44 differ by "
                f"{abs(cached['final_val_acc'] - other_seed['final_val_acc']):.1f} points)")


def driver(size: Size, work: Path, figures: Figures) -> None:
    """Trials per second the Ray driver sustains, MLflow included, on trials that do nothing."""
    from bench.measure import DEMO, config, trivial_trial
    configs = [replace(config(DEMO, "linear", ""), seed=seed) for seed in
               range(size.driver_trials)]
    print(f"[driver] {len(configs)} trivial trials", flush=True)
    _, wall, logging = run_project(configs, "bench-driver", "bench", work, "driver",
                                   trial=trivial_trial)
    figures.add(f"Ray driver throughput on {len(configs)} trivial trials: "
                f"{len(configs) / wall:.1f} trials/s ({1000 * wall / len(configs):.0f} ms per "
                f"trial, Ray start included; MLflow {1000 * logging / len(configs):.0f} ms of it)")


def gpu(size: Size, work: Path, figures: Figures) -> None:
    """On an NVIDIA GPU: ViT-B/16 at 224 in bf16, images/s and MFU of the full_ft and vpt_deep
    (100 prompts) steps; the demo grid's throughput at 1, 2 and 4 trials per GPU."""
    from bench.measure import VIT_B, config, matmul_peak, step_utilisation
    if not torch.cuda.is_available():
        figures.add("gpu: skipped, this machine has no CUDA device")
        return
    name = torch.cuda.get_device_name()
    sheet = next((peak for key, peak in DENSE_BF16_PEAKS.items() if key in name), None)
    measured = matmul_peak(torch.bfloat16)
    figures.add(f"{name}: measured 8192x8192 bf16 matmul (20 per sync) {measured / 1e12:.0f} "
                f"TFLOP/s"
                + (f", datasheet dense bf16 {sheet / 1e12:.0f} TFLOP/s" if sheet else ""))
    for strategy in ("full_ft", "vpt_deep"):
        cfg = config(VIT_B, strategy, "", prompt_length=100)
        for batch in size.gpu_batches:
            achieved, seconds = step_utilisation(cfg, batch, torch.bfloat16, steps=10)
            figures.add(f"{VIT_B.tag} {strategy} bf16 batch {batch}: {batch / seconds:.0f} img/s, "
                        f"MFU {100 * achieved / (sheet or measured):.1f}% of the "
                        f"{'datasheet' if sheet else 'measured'} bf16 peak "
                        f"({achieved / 1e12:.0f} TFLOP/s)")
    cache = prepared_cache(work, size.grid_tasks)
    spec = demo_grid(size, "bench-gpu")
    rates = {}
    for per_gpu in (1, 2, 4):
        configs = every_tune_trial(spec, cache_dir=cache)      # the runner gives each its share
        _, wall, _ = run_project(configs, spec.name, "tune", work, f"gpu-{per_gpu}",
                                 gpus_per_trial=1 / per_gpu)
        rates[per_gpu] = len(configs) / wall
        figures.add(f"demo grid on one GPU, {per_gpu} trial(s) at a time: "
                    f"{3600 * rates[per_gpu]:.0f} trials/hour "
                    f"({ratio(rates[per_gpu], rates[1])} of one at a time)")


def halving(size: Size, work: Path, figures: Figures) -> None:
    """The tune stage by successive halving against the full grid (bench/halving.py)."""
    from bench import halving as section
    section.measure(size is QUICK, work, figures)


def halving_long(size: Size, work: Path, figures: Figures) -> None:
    """Halving at the presets' grid sizes and 50 epochs (bench/halving.py); not run by default."""
    from bench import halving as section
    section.measure_long(size is QUICK, work, figures)


def strategies(size: Size, work: Path, figures: Figures) -> None:
    """Every registered strategy against full_ft, at its declared knob defaults: the CPU time of
    a training step (the least of `strategy_steps`) and its counted peak memory on the demo ViT
    (batch 64, fp32), and the FLOPs of a training step (meta device) and trainable parameters at
    ViT-B/16 224."""
    from bench.measure import DEMO, VIT_B, config, timed, training_step
    from study.cost import flops_per_image
    from trainables.footprint import trial_footprint
    from trainables.model import build_model
    from trainables.strategy import all_strategies
    names = ["full_ft", *sorted(n for n, s in all_strategies().items()
                                if n != "full_ft" and s.prior is None)]
    measured = {}
    for name in names:
        step = training_step(config(DEMO, name, ""), 64, None)
        seconds = min(timed(step) for _ in range(size.strategy_steps))   # the least disturbed
        peak = trial_footprint(config(DEMO, name, ""), None).peak
        vit_b = config(VIT_B, name, "")
        with torch.device("meta"):
            trained = sum(p.numel() for p in build_model(vit_b, 100, pretrained=False)
                          .parameters() if p.requires_grad)
        measured[name] = seconds, peak, flops_per_image(vit_b, 0)[0] * 64, trained
    base_seconds, base_peak, _, _ = measured["full_ft"]
    for name, (seconds, peak, flops, trained) in measured.items():
        figures.add(f"strategy {name}: demo ViT CPU step {1000 * seconds:.0f} ms "
                    f"({ratio(seconds, base_seconds)} full_ft's), counted peak "
                    f"{peak / 2 ** 20:.1f} MiB ({ratio(peak, base_peak)}); ViT-B/16 224: "
                    f"{flops / 1e12:.2f} TFLOP per step of 64, {trained / 1e6:.3f} M trainable "
                    f"parameters (100-class head)")


MEASURES = {"grid": grid, "epoch": epoch, "augment": augment, "mfu": mfu, "kernels": kernels,
            "contention": contention, "probe": probe, "driver": driver, "halving": halving,
            "halving-long": halving_long, "strategies": strategies,
            "gpu": gpu}


def write_results(path: Path, command: str, figures: Figures, seconds: float | None = None) -> None:
    """The run's figures on top of `path`, with the date, the machine, the command and, given
    `seconds`, how long the run took (the one record of a bench run's duration)."""
    header = "# Benchmark results\n\nNewest first. Each section is one `python -m bench` run.\n"
    old = path.read_text() if path.exists() else header
    body = old[len(header):] if old.startswith(header) else "\n" + old
    took = "" if seconds is None else f" (took {seconds // 60:.0f} min {seconds % 60:.0f} s)"
    section = (f"\n## {time.strftime('%Y-%m-%d %H:%M')} UTC: {machine()}\n\n"
               f"Command: `{command}`{took}\n\n" +
               "".join(f"- {line}\n" for line in figures.lines))
    path.write_text(header + section + body)


def default_sections() -> str:
    return ",".join(s for s in MEASURES if s != "halving-long" and (
        s != "gpu" or torch.cuda.is_available()))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m bench", description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="sections: grid (project vs reference sweep, MLflow share), epoch (images/s), "
               "augment (random crop + flip on the device vs none), mfu (FLOP utilisation), "
               "kernels (a CPU step's share in matrix products; fp32 GEMM, PyTorch vs oneDNN), "
               "contention (the pretraining's 2-thread step with a core busy, by OpenMP spin), "
               "probe (linear probe on cached features), driver (trivial trials per second), "
               "halving (successive halving against the full grid: cost and what it selects), "
               "halving-long (the same at the presets' grid sizes and 50 epochs, about 90 min on "
               "2 cores; only when named), "
               "strategies (every strategy's step time, memory and FLOPs against full_ft), "
               "gpu (ViT-B/16 bf16 images/s and MFU, trials packed per GPU; skipped without CUDA)."
               " Where a GPU is, epoch, augment and mfu measure on it; grid, kernels, "
               "contention, probe, driver and halving on the CPU (a study's trials without a "
               "GPU share run there). How long "
               "a run takes: docs/speed.md, and each run's record in bench/RESULTS.md.")
    parser.add_argument("--quick", action="store_true",
                        help="every measurement, small; figures are not meaningful")
    parser.add_argument("--sections", help=f"comma-separated subset of {','.join(MEASURES)} "
                                           f"(default: {default_sections()})")
    parser.add_argument("--work-dir", default=str(HERE / "out"),
                        help="scratch: caches, PNGs, MLflow stores (default bench/out)")
    parser.add_argument("--results", help="file the figures go to (default bench/RESULTS.md; "
                                           "bench/out/RESULTS-quick.md with --quick)")
    return parser


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    sections = [s.strip() for s in (args.sections or default_sections()).split(",")
                if s.strip()]
    unknown = sorted(set(sections) - set(MEASURES))
    if unknown or not sections:
        print(f"error: unknown section(s) {', '.join(unknown) or '(none given)'}; valid: "
              f"{', '.join(MEASURES)}", file=sys.stderr)
        return 2
    os.environ.setdefault("MLFLOW_LOGGING_LEVEL", "WARNING")
    work = Path(args.work_dir).resolve()
    work.mkdir(parents=True, exist_ok=True)
    results = Path(args.results or (work / "RESULTS-quick.md" if args.quick
                                    else HERE / "RESULTS.md"))
    size = QUICK if args.quick else Size()
    torch.set_num_threads(os.cpu_count() or 1)
    figures, began = Figures(), time.perf_counter()
    for number, name in enumerate(sections, 1):
        print(f"== {number}/{len(sections)} {name} (elapsed {time.perf_counter() - began:.0f} s)",
              flush=True)
        MEASURES[name](size, work, figures)
    command = "".join(f"{k}={os.environ[k]} " for k in KERNEL_SETTINGS if k in os.environ) + \
        "python -m bench" + "".join(f" {a}" for a in (argv if argv is not None else sys.argv[1:]))
    write_results(results, command, figures, time.perf_counter() - began)
    print(f"done in {time.perf_counter() - began:.0f} s; figures added to {results}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
