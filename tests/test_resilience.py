"""Failures and bad input: each bad input gives one line on stderr and exit status 2 before any
trial starts; failing trials are retried, then recorded FAILED with their error while the study
finishes the rest; diverged trials are never selected; weights never load through pickle."""
from __future__ import annotations

import ast
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from mlflow.tracking import MlflowClient

from results.selection import select_best
from search_spaces import PAPER_SGD
from common.errors import StudyInputError
from study.protocol import run_study
from study.ray_runner import RayRunner
from study.tracking import StudyTracker
from tasks.prepare import TasksNotPrepared
from tasks.cache import task_dir
from tasks.prepare import prepare
from tasks import get_task
from tests.conftest import TINY_VIT, tiny_trial
from tests.test_study_integration import SPEC
from trainables.backbones import create_backbone, save_weights
from trainables.config import Recipe
from trainables.faults import ENV as FAULTS_ENV
from trainables.trial import run_trial

ROOT = Path(__file__).resolve().parents[1]


def study_cli(tmp_path, *args, env=None):
    environment = {**os.environ, "MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path}/mlflow.db",
                   **(env or {})}
    return subprocess.run([sys.executable, "-m", "study", "run", "demo", "--smoke",
                           "--cache-dir", str(tmp_path / "cache"),
                           "--storage-path", str(tmp_path / "ray"), *args],
                          capture_output=True, text=True, timeout=300, cwd=ROOT, env=environment)


def one_line_refusal(result, message):
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], lines


def no_trial_runs(tmp_path):
    db = tmp_path / "mlflow.db"
    if not db.exists():
        return True
    client = MlflowClient(f"sqlite:///{db}")
    experiment = client.get_experiment_by_name("demo-smoke")
    return experiment is None or not client.search_runs([experiment.experiment_id],
                                                         "tags.stage != 'pretrain'")


def smoke_cache(tmp_path):
    for slug in ("digits", "count"):
        prepare(get_task(slug), tmp_path / "cache")


def test_checksum_mismatch_is_refused_before_any_trial(tmp_path):
    smoke_cache(tmp_path)
    path = task_dir(tmp_path / "cache", "digits") / "train800.labels.npy"
    data = bytearray(path.read_bytes())
    data[-1] ^= 1
    path.write_bytes(bytes(data))
    one_line_refusal(study_cli(tmp_path), "checksum mismatch")
    assert no_trial_runs(tmp_path)


def test_weights_of_another_architecture_are_refused_before_any_trial(tmp_path):
    smoke_cache(tmp_path)
    save_weights(create_backbone(TINY_VIT, 10),
                 tmp_path / "cache" / "backbones" / "demo_vit_upstream_smoke.safetensors")
    one_line_refusal(study_cli(tmp_path), "does not fit VisionTransformer")
    assert no_trial_runs(tmp_path)


@pytest.mark.parametrize("args, env, message", [
    ((), {"MLFLOW_TRACKING_URI": "http://127.0.0.1:9"}, "MLflow server http://127.0.0.1:9 "
                                                        "does not answer"),
    ((), {"MLFLOW_TRACKING_URI": "postgresql://postgres@127.0.0.1:9/mlflow"},
     "postgresql database at 127.0.0.1:9 does not answer"),
    (("--address", "127.0.0.1:9"), {}, "Ray address 127.0.0.1:9 does not answer"),
    (("--storage-path", "/dev/null/ray"), {}, "storage path /dev/null/ray cannot be written"),
])
def test_unreachable_services_and_unwritable_storage_are_refused(tmp_path, args, env, message):
    one_line_refusal(study_cli(tmp_path, *args, env=env), message)
    assert no_trial_runs(tmp_path)


def test_the_tasks_that_are_not_prepared_are_named_together_with_the_prepare_command(
        tmp_path, cache_dir):
    from dataclasses import replace
    spec = replace(SPEC, name="unprepared", tasks=("cifar100", "digits", "dtd", "svhn"))
    calls = []
    tracker = StudyTracker(spec.name, f"sqlite:///{tmp_path}/m.db")
    with pytest.raises(TasksNotPrepared, match=r"^3 tasks are not prepared in .*: cifar100, "
                       r"dtd, svhn; run `python -m tasks prepare cifar100 dtd svhn --cache-dir"):
        run_study(spec, lambda configs, stage: calls.append(stage), tracker, cache_dir,
                  log=lambda line: None)
    assert calls == []


def test_a_task_cached_at_another_size_than_the_backbone_takes_is_refused(tmp_path, cache_dir):
    from dataclasses import replace
    from study.protocol import prepare_tasks
    wider = replace(SPEC.backbones[0], overrides=(*SPEC.backbones[0].overrides, ("img_size", 48)))
    spec = replace(SPEC, name="resized", backbones=(wider,))
    with pytest.raises(StudyInputError, match=r"task 'digits' is cached at 32 px but backbone "
                       r"\S+ takes 48 px: prepare it again with `python -m tasks prepare digits "
                       r"--image-size 48 --force`"):
        prepare_tasks(spec, cache_dir, log=lambda line: None)
    prepare_tasks(SPEC, cache_dir, log=lambda line: None)          # the sizes that fit pass


def test_a_whole_suite_not_prepared_is_prepared_by_its_name():
    from tasks import SUITES
    error = TasksNotPrepared(list(SUITES["vtab1k"]), "/data/cache", " --sweep 400")
    assert "19 tasks are not prepared" in str(error)
    assert "`python -m tasks prepare vtab1k --cache-dir /data/cache --sweep 400`" in str(error)


def test_full_ft_at_the_paper_grid_top_diverges_and_is_never_selected(cache_dir):
    top = Recipe("sgd", max(PAPER_SGD.base_lrs), 0.0, epochs=2, warmup_epochs=0, batch_size=64)
    summary = run_trial(tiny_trial(cache_dir, "full_ft", recipe=top), lambda m: None)
    assert summary["outcome"] == "diverged"
    runs = pd.DataFrame([
        dict(trial_id="a", start_time=1, base_lr=50.0, outcome=summary["outcome"],
             final_val_acc=summary["final_val_acc"]),
        dict(trial_id="b", start_time=2, base_lr=0.05, outcome="finished", final_val_acc=11.0)])
    runs = runs.assign(backbone="b", setting="800", task="digits", strategy="full_ft",
                       weight_decay=0.0, status="FINISHED", run_id=["ra", "rb"])
    assert select_best(runs)["base_lr"].tolist() == [0.05]


def test_weights_never_load_through_unrestricted_pickle():
    for path in ROOT.glob("[!.]*/**/*.py"):
        if ".venv" in path.parts:
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call) and getattr(node.func, "attr", "") == "load" and \
                    getattr(node.func.value, "id", "") == "torch":
                keywords = {k.arg: getattr(k.value, "value", None) for k in node.keywords}
                assert keywords.get("weights_only") is True, f"{path}:{node.lineno}"


def test_failing_trials_are_retried_then_recorded_failed_and_the_study_finishes(
        tmp_path, cache_dir, monkeypatch):
    monkeypatch.setenv(FAULTS_ENV, "digits/linear:oom,count/full_ft:exit")
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    tracker = StudyTracker(SPEC.name, uri)
    runner = RayRunner(tracker, storage_path=str(tmp_path / "ray"), max_failures=1)
    try:
        table = run_study(SPEC, runner, tracker, cache_dir, log=lambda line: None).single
    finally:
        runner.shutdown()
    runs = MlflowClient(uri).search_runs([tracker.experiment_id], max_results=1000)
    frame = pd.DataFrame([{**r.data.tags, "status": r.info.status} for r in runs])
    assert "RUNNING" not in set(frame["status"])

    oom = frame[(frame["task"] == "digits") & (frame["strategy"] == "linear")]
    assert set(oom["status"]) == {"FAILED"}
    assert len(oom) == 2 * 2               # two lrs, each tried twice (max_failures=1)
    assert oom["error"].str.contains("injected out of memory").all()
    assert table.cells.loc["linear", "digits"] == "n/a (tune failed)"

    killed = frame[(frame["task"] == "count") & (frame["strategy"] == "full_ft")]
    per_trial = killed.groupby("trial_id")["status"].apply(sorted)
    assert all(statuses == ["FAILED", "FINISHED"] for statuses in per_trial)   # retried once
    assert table.seeds.loc["full_ft", "count"] == 2

    finished = frame[(frame["status"] == "FINISHED") & frame["trial_id"].notna()]    # trials
    assert finished["trial_id"].is_unique
    assert table.seeds.loc["vpt_deep"].tolist() == [2, 2]      # the other cells are complete


def test_an_empty_grid_is_refused():
    from search_spaces import Grid
    with pytest.raises(StudyInputError, match="grid 'empty' is empty"):
        Grid("empty", "sgd", (), (0.0,))
