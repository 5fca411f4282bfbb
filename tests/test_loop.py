"""The training loop: schedule, lr scaling, divergence handling, determinism, reports."""
from __future__ import annotations

import math

import pytest

from tests.conftest import tiny_trial
from trainables.config import Recipe
from trainables.optimizers import step_warmup_cosine as lr_factor
from common.keys import SUMMARY
from trainables.trial import run_trial


def test_warmup_is_linear_then_cosine_decays_to_zero():
    warmup, total = 10, 110
    assert [lr_factor(s, warmup, total) for s in range(3)] == [0.1, 0.2, 0.3]
    assert lr_factor(warmup - 1, warmup, total) == 1.0
    assert lr_factor(warmup, warmup, total) == 1.0
    assert lr_factor(60, warmup, total) == pytest.approx(0.5)
    assert lr_factor(total, warmup, total) == pytest.approx(0.0, abs=1e-12)


def test_lr_is_scaled_by_batch_over_256():
    assert Recipe("sgd", 0.1, 0.0, 1, 0, batch_size=64).lr == pytest.approx(0.025)
    assert Recipe("sgd", 0.1, 0.0, 1, 0, batch_size=512).lr == pytest.approx(0.2)


def test_reports_one_entry_per_epoch_then_the_summary(cache_dir):
    reports = []
    summary = run_trial(tiny_trial(cache_dir, "vpt_deep"), reports.append)
    epochs = [r for r in reports if "epoch" in r]
    assert [r["epoch"] for r in epochs] == [1, 2]
    assert {"train_loss", "train_acc", "val_loss", "val_acc", "lr"} <= set(epochs[0])
    assert reports[-1] is summary and summary[SUMMARY] == 1
    assert summary["outcome"] == "finished"
    assert summary["final_val_acc"] == epochs[-1]["val_acc"]       # last epoch, never the best
    assert summary["train_size"] == 800 and summary["eval_size"] == 200
    assert 0 < summary["tuned_percent"] < 100
    assert summary["trainable_params"] < summary["total_params"]


def test_the_final_split_evaluates_on_test(cache_dir):
    reports = []
    run_trial(tiny_trial(cache_dir, "linear", train_split="train800val200", eval_split="test",
                         stage="final"), reports.append)
    assert "test_acc" in reports[0] and "final_test_acc" in reports[-1]
    assert reports[-1]["train_size"] == 1000


def test_same_seed_same_metrics_on_the_cpu(cache_dir):
    first, second = [], []
    run_trial(tiny_trial(cache_dir, "vpt_deep", seed=7), first.append)
    run_trial(tiny_trial(cache_dir, "vpt_deep", seed=7), second.append)
    strip = lambda rs: [{k: v for k, v in r.items() if k not in ("wall_seconds",
                                                                 "images_per_second")}
                        for r in rs]
    assert strip(first) == strip(second)
    other = []
    run_trial(tiny_trial(cache_dir, "vpt_deep", seed=8), other.append)
    assert strip(other) != strip(first)


def test_a_non_finite_loss_ends_the_trial_as_diverged(cache_dir):
    reports = []
    recipe = Recipe("sgd", 1e9, 0.0, epochs=3, warmup_epochs=0, batch_size=64)
    summary = run_trial(tiny_trial(cache_dir, "full_ft", recipe=recipe), reports.append)
    assert summary["outcome"] == "diverged"
    stopped_at = next(r["epoch"] for r in reports if r.get("diverged") == 1.0)
    assert stopped_at < recipe.epochs                       # training stopped there ...
    assert all(r["epoch"] <= stopped_at for r in reports if "epoch" in r)
    assert math.isnan(summary["final_val_acc"])             # ... with no accuracy to select
