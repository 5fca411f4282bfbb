"""How a trial runs, apart from what it computes: the head-only probe on features computed once
matches training through the frozen backbone, bf16 autocast and torch.compile train to finite
losses, the training split is put on the device once per process, none of these settings
change a trial's identity, and a reused process hands back what a trial's thread freed."""
from __future__ import annotations

import math
import os
import shutil
import threading
from dataclasses import replace

import numpy as np
import pytest
import torch

from common import memory
from tests.conftest import tiny_trial
from trainables.config import Execution, Recipe, TrialConfig
from trainables.model import build_model
from trainables.trial import load, only_head_trains, run_trial

PROBE = Recipe("sgd", 1.0, 0.0, epochs=3, warmup_epochs=1, batch_size=64)


def test_the_probe_on_cached_features_matches_the_probe_through_the_backbone(cache_dir):
    through, cached = [], []
    slow = run_trial(tiny_trial(cache_dir, "linear", recipe=PROBE,
                                execution=Execution(cache_features=False)), through.append)
    fast = run_trial(tiny_trial(cache_dir, "linear", recipe=PROBE), cached.append)
    assert slow["outcome"] == fast["outcome"] == "finished"
    for a, b in zip(through[:-1], cached[:-1]):           # every epoch, not only the last
        assert a["train_loss"] == pytest.approx(b["train_loss"], rel=1e-4)
        assert a["val_loss"] == pytest.approx(b["val_loss"], rel=1e-4)
        assert abs(a["val_acc"] - b["val_acc"]) <= 0.5    # one image of 200 may flip on a tie
    assert slow["trainable_params"] == fast["trainable_params"]


def test_only_the_linear_probe_takes_the_feature_path(cache_dir):
    for name, expected in (("linear", True), ("vpt_deep", False), ("full_ft", False),
                           ("lora", False)):
        cfg = tiny_trial(cache_dir, name)
        model = build_model(cfg, num_classes=10, pretrained=False)
        assert only_head_trains(model) is expected, name


def test_bf16_autocast_trains_like_fp32(cache_dir):
    recipe = Recipe("adamw", 0.004, 0.0, epochs=2, warmup_epochs=1, batch_size=64)
    fp32, bf16 = (run_trial(tiny_trial(cache_dir, "full_ft", recipe=recipe,
                                       execution=Execution(precision=p)), lambda r: None)
                  for p in ("fp32", "bf16"))
    assert math.isfinite(bf16["final_train_loss"])
    assert bf16["final_train_loss"] == pytest.approx(fp32["final_train_loss"], rel=0.05)
    assert bf16["final_train_loss"] != fp32["final_train_loss"]      # autocast did run


@pytest.mark.slow
def test_compiled_steps_match_eager_steps(cache_dir):
    eager = run_trial(tiny_trial(cache_dir, "full_ft"), lambda r: None)
    compiled = run_trial(tiny_trial(cache_dir, "full_ft", execution=Execution(compile=True)),
                         lambda r: None)
    assert compiled["final_train_loss"] == pytest.approx(eager["final_train_loss"], rel=1e-3)


def test_the_training_split_is_put_on_the_device_once_per_process(cache_dir):
    cfg = tiny_trial(cache_dir)
    first = load(cfg, cfg.train_split, "train", torch.device("cpu"), resident=True)
    again = load(replace(cfg, strategy="vpt_deep"), cfg.train_split, "train",
                 torch.device("cpu"), resident=True)
    assert again.images is first.images and again.labels is first.labels
    assert isinstance(first.images, torch.Tensor) and first.images.dtype == torch.uint8


def test_execution_round_trips_and_stays_out_of_the_trial_identity(cache_dir):
    cfg = tiny_trial(cache_dir)
    other = replace(cfg, execution=Execution(threads=4, precision="bf16", compile=True,
                                             gpu_share=0.25, cache_features=False))
    assert TrialConfig.from_dict(other.to_dict()) == other
    assert TrialConfig.from_dict(other.to_dict()).execution.gpu_share == 0.25
    assert other.trial_id == cfg.trial_id


def test_an_unknown_precision_is_refused():
    with pytest.raises(ValueError, match="precision"):
        Execution(precision="fp8")


def test_auto_precision_is_fp32_for_small_models_on_the_cpu(cache_dir):
    from trainables.trial import autocast_dtype
    small = build_model(tiny_trial(cache_dir), 10, pretrained=False)
    assert autocast_dtype(Execution(), torch.device("cpu"), small) is None
    assert autocast_dtype(Execution(precision="bf16"), torch.device("cpu"), small) \
        is torch.bfloat16
    assert autocast_dtype(Execution(), torch.device("cuda"), small) is torch.bfloat16
    summary = run_trial(tiny_trial(cache_dir, "linear"), lambda r: None)
    assert summary["precision"] == "fp32"


def test_the_tune_stage_shares_ft_then_pt_s_prior_and_replaying_it_changes_nothing(
        cache_dir, tmp_path):
    import os
    fresh_cache = tmp_path / "cache"
    fresh_cache.mkdir()
    os.symlink(os.path.join(cache_dir, "tasks"), fresh_cache / "tasks")
    first = tiny_trial(str(fresh_cache), "ft_then_pt")
    second = replace(first, recipe=replace(first.recipe, base_lr=0.25))
    own = []                             # `second` trains its own FT phase, ...
    solo = run_trial(second, own.append)
    for kept in fresh_cache.joinpath("priors").iterdir():
        kept.unlink()
    run_trial(first, lambda r: None)     # ... then replays the one `first` kept
    assert len(list(fresh_cache.joinpath("priors").glob("*.safetensors"))) == 1
    replayed = []
    shared = run_trial(second, replayed.append)
    assert [r for r in replayed if "epoch" in r] == [r for r in own if "epoch" in r]
    assert shared["final_val_acc"] == solo["final_val_acc"]
    assert shared["final_train_loss"] == pytest.approx(solo["final_train_loss"], rel=1e-6)


def test_ft_then_pt_s_final_run_replays_full_ft_s_final_run_of_its_seed(cache_dir, tmp_path):
    import os
    from trainables.priors import discard_final_priors
    fresh_cache = tmp_path / "cache"
    fresh_cache.mkdir()
    os.symlink(os.path.join(cache_dir, "tasks"), fresh_cache / "tasks")
    final = dict(stage="final", train_split="train800val200", eval_split="test")
    consumer = tiny_trial(str(fresh_cache), "ft_then_pt", **final)
    producer = tiny_trial(str(fresh_cache), "full_ft", recipe=consumer.prior_recipe,
                          kept_as_prior=True, **final)
    assert producer.trial_id == replace(producer, kept_as_prior=False).trial_id
    own = []                                   # with no prior there, it trains its own FT
    solo = run_trial(consumer, own.append)
    kept = fresh_cache / "priors" / "final" / "test"
    shutil.rmtree(kept)
    ft = []
    run_trial(producer, ft.append)             # full_ft's own run keeps itself as the prior
    assert len(list(kept.glob("*.safetensors"))) == 1
    replayed = []
    shared = run_trial(consumer, replayed.append)
    epochs = [r for r in replayed if "epoch" in r]
    assert epochs[:producer.recipe.epochs] == [r for r in ft if "epoch" in r]
    assert epochs == [r for r in own if "epoch" in r]       # bit for bit
    assert shared["final_test_acc"] == solo["final_test_acc"]
    assert shared["final_train_loss"] == solo["final_train_loss"]
    assert (solo["prior"], shared["prior"]) == ("trained", "replayed")
    fresh_cache.joinpath("priors", "tune-kept").touch()
    discard_final_priors(fresh_cache, "test")
    assert not kept.parent.exists() and fresh_cache.joinpath("priors", "tune-kept").exists()


def test_attention_runs_through_pytorch_s_fused_sdpa(cache_dir):
    for name in ("full_ft", "vpt_deep", "lora"):
        model = build_model(tiny_trial(cache_dir, name), 10, pretrained=False)
        assert all(block.attn.fused_attn for block in model.blocks), name


def test_what_a_trial_thread_freed_goes_back_to_the_system():
    def resident_mb() -> float:
        return int(open(f"/proc/{os.getpid()}/statm").read().split()[1]) * os.sysconf(
            "SC_PAGE_SIZE") / 2**20

    kept_small = []                  # what outlives a trial (a logged metric, a cache entry)

    def trial_thread():              # as Tune runs a reused actor's trial: in a thread of its own
        blocks = []
        for _ in range(3_000):       # 375 MB in heap-sized blocks, each followed by a small one
            blocks.append(np.ones(16_000))
            kept_small.append(bytes(1_000))   # that stays, so free() alone cannot trim the heap
        del blocks
    assert memory.MALLOC_TRIM is not None                     # glibc (Linux)
    before = resident_mb()
    thread = threading.Thread(target=trial_thread)
    thread.start()
    thread.join()
    kept = resident_mb() - before
    memory.release()
    assert kept > 200 and resident_mb() - before < 50
