"""The benchmark's parts, not its timings: the reference harness decodes exactly the cached
images and trains, results are added on top of bench/RESULTS.md, bad input is refused, and (slow)
a --quick run measures every figure."""
from __future__ import annotations

import re
import subprocess
import sys

import numpy as np
import pytest

from bench import reference
from bench.__main__ import Figures, write_results
from bench.measure import DEMO, config, trainable_model
from tasks import load_split
from trainables.config import Recipe
from trainables.optimizers import make_optimizer


def test_the_reference_decodes_the_cached_images(cache_dir, tmp_path):
    folder = reference.export_pngs(cache_dir, "digits", "val200", tmp_path, limit=20)
    images, labels = load_split(cache_dir, "digits", "val200")
    dataset = reference.PngFolder(folder, (0.0,) * 3, (1.0,) * 3)
    assert len(dataset) == 20
    for i in (0, 7, 19):
        x, y = dataset[i]
        assert y == labels[i]
        assert np.array_equal((x.permute(1, 2, 0).numpy() * 255).round().astype(np.uint8),
                              images[i])
    assert reference.export_pngs(cache_dir, "digits", "val200", tmp_path, limit=20) == folder


def test_the_reference_loop_trains(cache_dir, tmp_path):
    folder = reference.export_pngs(cache_dir, "digits", "train800", tmp_path, limit=128)
    model = trainable_model(config(DEMO, "full_ft", cache_dir))
    batches = reference.loader(folder, (0.5,) * 3, (0.5,) * 3, 32, shuffle=True)
    optimizer = make_optimizer(list(model.named_parameters()),
                               Recipe("adamw", 0.001 * 256 / 32, 0.0, 1, 0, batch_size=32))
    first, _, seen = reference.train_epoch(model, batches, optimizer)
    for _ in range(3):
        last, _, _ = reference.train_epoch(model, batches, optimizer)
    assert seen == 128 and last < first


def test_results_go_on_top_with_date_machine_and_command(tmp_path):
    path = tmp_path / "RESULTS.md"
    write_results(path, "python -m bench", Figures(["figure one: 2.00x (a vs b)"]))
    write_results(path, "python -m bench --sections epoch", Figures(["figure two: 3.00x"]), 754.2)
    text = path.read_text()
    assert text.startswith("# Benchmark results")
    assert text.index("figure two") < text.index("figure one")
    assert text.count("## ") == 2
    assert "Command: `python -m bench --sections epoch` (took 12 min 34 s)" in text
    assert "Command: `python -m bench`\n" in text
    assert re.search(r"## \d{4}-\d\d-\d\d \d\d:\d\d UTC: .*cores", text)


def test_an_unknown_section_is_refused():
    result = subprocess.run([sys.executable, "-m", "bench", "--sections", "grid,nope"],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 2
    assert result.stderr.strip() == ("error: unknown section(s) nope; valid: grid, epoch, "
                                     "augment, mfu, kernels, contention, probe, driver, "
                                     "halving, halving-long, strategies, gpu")


@pytest.mark.slow
@pytest.mark.timeout(1500)          # every section: 10.5 min here with the cores shared
def test_a_quick_run_measures_every_figure(tmp_path):
    results = tmp_path / "RESULTS.md"
    subprocess.run([sys.executable, "-m", "bench", "--quick", "--work-dir", str(tmp_path),
                    "--results", str(results)], check=True, timeout=1400,
                   capture_output=True, text=True)
    lines = [line for line in results.read_text().splitlines() if line.startswith("- ")]
    ratios = [line for line in lines if re.search(r": \d+\.\d\dx", line)]
    assert len(ratios) >= 12
    for needle in ("study grid wall time", "MLflow logging share", "epoch images/s",
                   "torch.compile vs eager", "MFU of the full_ft step",
                   "linear probe trial wall time", "Ray driver throughput",
                   "random crop + flip on the device", "halving vs full grid",
                   "same (lr, wd) selected", "matrix products' share", "fp32 linear",
                   "one core busy"):
        assert any(needle in line for line in lines), needle
