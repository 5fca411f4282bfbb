"""The GPU path, tested where there is no GPU: a trial's device follows the share Ray granted it
(a local Ray with fake GPUs: a trial without a share sees none and stays on the CPU), shares are
checked against each strategy's peak memory, counted without memory and equal to what a real
step saves, requests no node meets and GPUs torch cannot use are refused in one line before
anything runs, a prompted model dies with its last reference, and the benchmark's reference loop
feeds its model on the model's device."""
from __future__ import annotations

import gc
import json
import os
import subprocess
import sys
import weakref
from dataclasses import replace
from pathlib import Path

import pandas as pd
import pytest
import ray
import torch
import torch.nn.functional as F

from bench import reference
from common.errors import StudyInputError
from common.keys import SUMMARY
from common.memory import release
from study.protocol import execution_note
from study.ray_runner import RayRunner, worker_env
from study.spec import get_study
from study.tracking import StudyTracker
from tests.conftest import TINY_VIT, tiny_trial
from trainables.config import Execution
from trainables.devices import AUTO, GIB, Card, Shares, choose_device, fit_shares, \
    memory_fraction, smallest_share
from trainables.footprint import saved_bytes, trial_footprint
from trainables.loop import compiled, set_train_mode
from trainables.model import build_model
from trainables.trial import precision_run, run_trial

A100_40GB = Card("NVIDIA A100-SXM4-40GB", int(39.4 * GIB))


def test_a_trial_uses_cuda_only_when_given_a_share_of_a_gpu():
    assert choose_device(0.0, cuda_available=True) == "cpu"
    assert choose_device(0.0, cuda_available=False) == "cpu"
    assert choose_device(0.25, cuda_available=True) == "cuda"
    with pytest.raises(StudyInputError, match="given 0.25 of a GPU, but torch cannot use CUDA"):
        choose_device(0.25, cuda_available=False)


def test_the_memory_cap_leaves_the_cuda_context_out():
    card = 40 * GIB
    assert memory_fraction(0.25, card) == pytest.approx((10 - 0.75) / 40)
    assert memory_fraction(1.0, card) is None
    assert smallest_share(9 * GIB, card) == 0.25        # 10 GiB less the context holds 9
    assert smallest_share(9.5 * GIB, card) == 0.3333
    assert smallest_share(40 * GIB, card) is None


def test_a_share_too_small_for_full_ft_at_batch_128_on_a_40_gb_card_is_refused():
    paper = get_study("paper")
    full_ft = next(c for c in paper.tune_trials() if c.strategy == "full_ft")
    assert full_ft.recipe.batch_size == 128
    peak = trial_footprint(full_ft, torch.bfloat16).peak
    assert 10 * GIB < peak < 16 * GIB       # ~10 GiB of bf16 activations at batch 128
    with pytest.raises(StudyInputError) as refused:
        fit_shares(0.25, {"full_ft": peak, "vpt_deep": 2 * GIB}, A100_40GB)
    line = str(refused.value)
    assert "\n" not in line and "full_ft needs about" in line and "--gpus-per-trial 0.5" in line
    assert fit_shares(0.5, {"full_ft": peak}, A100_40GB) == Shares(default=0.5)
    auto = fit_shares(AUTO, {"full_ft": peak, "vpt_deep": 2 * GIB}, A100_40GB)
    assert auto.of("full_ft") == 0.5 and auto.of("vpt_deep") == 0.125
    with pytest.raises(StudyInputError, match="more than a whole"):
        fit_shares(AUTO, {"full_ft": 40 * GIB}, A100_40GB)


def _saved_in_a_real_step(model: torch.nn.Module, batch: int, size: int, dtype) -> int:
    parameters = {p.untyped_storage().data_ptr() for p in model.parameters()}
    saved = {}

    def pack(tensor):
        storage = tensor.untyped_storage()
        if storage.data_ptr() not in parameters:
            saved[storage.data_ptr()] = storage.nbytes()
        return tensor
    x, y = torch.randn(batch, 3, size, size), torch.randint(0, 10, (batch,))
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor), \
            torch.autocast("cpu", dtype=dtype or torch.bfloat16, enabled=dtype is not None):
        loss = F.cross_entropy(model(x).float(), y)
    loss.backward()                    # the step runs: what it saved was what backward needed
    return sum(saved.values())


@pytest.mark.parametrize("strategy", ["full_ft", "vpt_deep", "lora", "linear"])
@pytest.mark.parametrize("dtype", [None, torch.bfloat16])
def test_the_count_without_memory_equals_what_a_real_step_saves(cache_dir, strategy, dtype):
    cfg = tiny_trial(cache_dir, strategy, backbone=replace(TINY_VIT, dropout=0.1))
    real = build_model(cfg, 10, pretrained=False)
    set_train_mode(real)
    with torch.device("meta"):
        meta = build_model(cfg, 10, pretrained=False)
    set_train_mode(meta)
    counted = saved_bytes(meta, 16, 32, dtype)
    assert counted == _saved_in_a_real_step(real, 16, 32, dtype)
    assert counted > 0


def test_plan_prints_each_strategy_s_peak_memory_per_trial(capsys):
    from study.__main__ import main
    assert main(["plan", "demo"]) == 0
    out = capsys.readouterr().out
    assert "peak memory per trial" in out
    for strategy in get_study("demo").strategies:
        assert f"  {strategy:<12} batch  64: bf16 " in out


def test_a_prompted_model_is_freed_by_del_alone(cache_dir):
    gc.collect()
    gc.disable()                           # no cyclic collection may help
    try:
        for strategy in ("vpt_deep", "vpt_shallow", "mixed", "full_ft"):
            model = build_model(tiny_trial(cache_dir, strategy), 10, pretrained=False)
            model(torch.randn(2, 3, 32, 32)).sum().backward()
            alive = weakref.ref(model)
            del model
            assert alive() is None, strategy
    finally:
        gc.enable()


def test_release_collects_what_only_a_cycle_holds():
    class Node:
        pass
    node = Node()
    node.self = node
    alive = weakref.ref(node)
    del node
    gc.disable()
    try:
        assert alive() is not None
        release()
        assert alive() is None
    finally:
        gc.enable()


def test_the_reference_loop_feeds_batches_on_the_model_s_device(cache_dir):
    """The meta device stands in for a GPU: a batch left on the CPU would reach the model
    there."""
    with torch.device("meta"):
        model = build_model(tiny_trial(cache_dir), 10, pretrained=False)
    seen = []
    model.register_forward_pre_hook(lambda module, args: seen.append(args[0].device))
    batches = [(torch.zeros(4, 3, 32, 32), torch.zeros(4, dtype=torch.long))]
    with pytest.raises(RuntimeError, match="item.. cannot be called on meta"):   # no value
        reference.train_epoch(model, batches, torch.optim.SGD(model.parameters(), lr=0.1))
    assert seen == [torch.device("meta")]


def test_tf32_is_a_precision_recorded_as_run(cache_dir):
    assert precision_run(Execution(precision="tf32"), torch.device("cuda"), None) == "tf32"
    assert precision_run(Execution(precision="tf32"), torch.device("cpu"), None) == "fp32"
    summary = run_trial(tiny_trial(cache_dir, "linear", execution=Execution(precision="tf32")),
                        lambda metrics: None)
    assert summary["precision"] == "fp32" and summary["device"] == "cpu"


def test_compiling_leaves_room_for_every_graph_of_a_reused_worker():
    torch._dynamo.config.recompile_limit = 8
    compiled(torch.nn.Linear(2, 2))
    assert torch._dynamo.config.recompile_limit >= 64


def test_a_stage_mixing_devices_or_precisions_says_so():
    runs = pd.DataFrame({"status": "FINISHED", "outcome": "finished", "start_time": [1, 2, 3],
                         "trial_id": ["a", "b", "c"], "device": ["cuda:0", "cuda", "cpu"],
                         "precision": ["bf16", "bf16", "fp32"]})
    note = execution_note("tune", runs)
    assert note.startswith("[tune] note:") and "cuda/bf16 (2)" in note and "cpu/fp32 (1)" in note
    assert execution_note("tune", runs.iloc[:2]) is None


def report_device(cfg, report) -> dict:
    """A trial that records what its worker sees: the GPUs Ray left visible and the device it
    would choose on a node whose GPUs torch can use (torch itself sees none here)."""
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    seen = {"visible": visible, "share": cfg.execution.gpu_share,
            "device": choose_device(cfg.execution.gpu_share, cuda_available=bool(visible))}
    Path(cfg.cache_dir, f"{cfg.strategy}.json").write_text(json.dumps(seen))
    summary = {SUMMARY: 1, "outcome": "finished", "final_val_acc": 50.0, "wall_seconds": 0.0}
    report(summary)
    return summary


@pytest.fixture
def fake_gpus(monkeypatch):
    """A local Ray with two GPUs that do not exist, its workers started as the runner starts
    them, CUDA_VISIBLE_DEVICES unset."""
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    ray.init(address="local", num_gpus=2, include_dashboard=False, log_to_driver=False,
             runtime_env={"env_vars": worker_env({})})
    try:
        yield
    finally:
        ray.shutdown()


def test_on_a_node_with_gpus_a_trial_without_a_share_neither_sees_nor_picks_one(
        fake_gpus, tmp_path):
    tracker = StudyTracker("gpus", f"sqlite:///{tmp_path}/mlflow.db")
    runner = RayRunner(tracker, storage_path=str(tmp_path / "ray"), trial=report_device,
                       shares=Shares(by_strategy=(("full_ft", 0.5),)))
    configs = [tiny_trial(str(tmp_path), strategy) for strategy in ("full_ft", "linear")]
    runner(configs, "tune")
    seen = {c.strategy: json.loads(Path(tmp_path, f"{c.strategy}.json").read_text())
            for c in configs}
    assert seen["linear"] == {"visible": "", "share": 0.0, "device": "cpu"}
    assert seen["full_ft"]["visible"] in ("0", "1")
    assert seen["full_ft"]["share"] == 0.5 and seen["full_ft"]["device"] == "cuda"

    cpu_only = RayRunner(tracker, gpus_per_trial=0.0).fit_resources(dict, log=lambda line: None)
    assert cpu_only.shares == Shares(0.0)
    with pytest.raises(StudyInputError, match="torch cannot use CUDA on node"):
        RayRunner(tracker, gpus_per_trial=None).fit_resources(dict)   # auto: it has GPUs
    with pytest.raises(StudyInputError, match=r"no node took a trial's 0.5 GPU and 64 CPU\(s\) "
                                              r"in 1 s: the cluster has 1 node\(s\)"):
        RayRunner(tracker, cpus_per_trial=64)._probe(0.5, seconds=1)   # an autoscaler's wait


def test_a_gpu_request_no_node_meets_fails_in_one_line_before_anything_runs(tmp_path):
    env = {**os.environ, "MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path}/mlflow.db"}
    result = subprocess.run([sys.executable, "-m", "study", "run", "demo", "--smoke",
                             "--gpus-per-trial", "1", "--cache-dir", str(tmp_path / "cache"),
                             "--storage-path", str(tmp_path / "ray")], cwd=tmp_path, env=env,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: a trial asks 1 CPU(s) and 1 GPU, and no node has them: "
                               "the cluster has 1 node(s)")
    assert not (tmp_path / "cache").exists()       # nothing was prepared
