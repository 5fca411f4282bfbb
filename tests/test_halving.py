"""Successive halving in the tune stage: the rung arithmetic `study plan` prices, the per-cell
ASHA scheduler's decisions (a prior's epochs are not judged, the last epoch never is), and a
study through real Ray Tune trials: stopped trials are FINISHED runs tagged outcome=stopped with
the epoch they reached, never selected, and a rerun runs nothing again."""
from __future__ import annotations

from dataclasses import replace
from types import MappingProxyType, SimpleNamespace

import pytest
from mlflow.tracking import MlflowClient
from ray.tune.schedulers import TrialScheduler

from common.errors import StudyInputError
from search_spaces import PROJECT_LENGTHS, Grid, SearchSpace
from study.__main__ import main as study_main
from study.halving import Halving
from study.protocol import run_study
from study.ray_runner import CellHalving, RayRunner
from study.spec import StudySpec
from study.tracking import StudyTracker
from tests.conftest import TINY_VIT, tiny_trial
from trainables.config import Recipe


def test_rungs_start_after_the_warm_up_and_stop_before_the_last_epoch():
    recipe = Recipe("sgd", 1.0, 0.0, epochs=100, warmup_epochs=10, batch_size=64)
    assert Halving().rungs(recipe) == [11, 33, 99]
    assert Halving(grace_epochs=1, reduction=4).rungs(recipe) == [1, 4, 16, 64]
    assert Halving(grace_epochs=100).rungs(recipe) == []            # no rung: the full grid
    # 12 points, rungs 11/33/99: 12 x 11 + 4 x 22 + 2 x 66 + 1 x 1 trial-epochs
    assert Halving().expected_epochs(12, recipe) == 12 * 11 + 4 * 22 + 2 * 66 + 1
    assert Halving(grace_epochs=100).expected_epochs(12, recipe) == 1200
    with pytest.raises(StudyInputError, match="reduction"):
        Halving(reduction=1.0)


def test_the_plan_prices_halving_beside_the_full_grid(capsys):
    assert study_main(["plan", "paper", "--scheduler", "halving"]) == 0
    out = capsys.readouterr().out
    assert "stage tune, halving:   2584 trials" in out and "halving GPU-h" in out
    assert "fewer trial-epochs" in out
    assert study_main(["plan", "demo", "--scheduler", "halving", "--reduction", "1"]) == 2


def _trial(trial_id: str, cfg) -> SimpleNamespace:
    return SimpleNamespace(trial_id=trial_id, config={"trial": cfg.to_dict()})


def test_each_cell_is_judged_on_its_own_phase_and_never_at_its_last_epoch():
    own = Recipe("sgd", 1.0, 0.0, epochs=9, warmup_epochs=0, batch_size=64)
    cfg = tiny_trial("", "ft_then_pt", recipe=own,
                     prior_recipe=Recipe("adamw", 0.001, 0.0, 3, 0, 64))
    scheduler = CellHalving(Halving(grace_epochs=1, reduction=3))
    trials = [_trial(name, replace(cfg, recipe=replace(own, base_lr=lr)))
              for name, lr in (("a", 1.0), ("b", 0.5), ("c", 0.1))]
    other_task = _trial("d", replace(cfg, task="count"))
    for trial in (*trials, other_task):
        scheduler.on_trial_add(None, trial)

    def result(trial, epoch, acc):
        return scheduler.on_trial_result(None, trial, {"epoch": epoch, "val_acc": acc})

    a, b, c = trials
    for epoch in (1, 2, 3):                          # the shared prior's epochs: never judged
        assert result(a, epoch, 50.0) == result(b, epoch, 10.0) == TrialScheduler.CONTINUE
    assert result(a, 4, 50.0) == TrialScheduler.CONTINUE       # own epoch 1: the first rung
    assert result(b, 4, 10.0) == TrialScheduler.STOP
    assert result(other_task, 4, 5.0) == TrialScheduler.CONTINUE    # another cell's rung
    assert result(c, 12, 1.0) == TrialScheduler.CONTINUE       # its last epoch: never stopped


SPACE = SearchSpace("halving", MappingProxyType({
    "prompt": Grid("halving_prompt", "sgd", (2.5, 0.5, 0.1, 0.02, 0.004, 0.0008), (0.0,)),
}), PROJECT_LENGTHS)
SPEC = StudySpec(name="halving", tasks=("digits", "count"), strategies=("linear",),
                 backbones=(TINY_VIT,), search_space=SPACE, epochs=6, warmup_epochs=0,
                 seeds=(42,))


def test_a_halved_study_records_stopped_trials_honestly_and_selects_among_finished(
        tmp_path, cache_dir):
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    tracker = StudyTracker(SPEC.name, uri)
    runner = RayRunner(tracker, storage_path=str(tmp_path / "ray"),
                       halving=Halving(grace_epochs=1, reduction=3))
    first, second = [], []
    try:
        run_study(SPEC, runner, tracker, cache_dir, log=first.append)
        run_study(SPEC, runner, tracker, cache_dir, log=second.append)
    finally:
        runner.shutdown()
    client = MlflowClient(uri)
    runs = client.search_runs([tracker.experiment_id], "tags.stage = 'tune'", max_results=100)
    assert len(runs) == 12 and {r.info.status for r in runs} == {"FINISHED"}
    stopped = [r for r in runs if r.data.tags["outcome"] == "stopped"]
    assert stopped, "no trial was stopped"
    for run in stopped:
        epoch = int(run.data.tags["stopped_at_epoch"])
        steps = [m.step for m in client.get_metric_history(run.info.run_id, "val_acc")]
        assert 1 <= epoch < SPEC.epochs and max(steps) == epoch
        assert "final_val_acc" not in run.data.metrics
    finals = client.search_runs([tracker.experiment_id], "tags.stage = 'final'")
    for task in SPEC.tasks:
        finished = {float(r.data.params["base_lr"]): r.data.metrics["final_val_acc"]
                    for r in runs if r.data.tags["task"] == task
                    and r.data.tags["outcome"] == "finished"}
        best = max(finished.items(), key=lambda kv: (kv[1], -kv[0]))[0]
        used = {float(r.data.params["base_lr"]) for r in finals if r.data.tags["task"] == task}
        assert used == {best}
    assert "[tune] 12 trials: 12 already finished, 0 to run" in second
