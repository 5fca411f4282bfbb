"""Successive halving judges where it says it does: its tune trials evaluate val after each rung
epoch and the last only, so ASHA decides every rung at its own epoch, not at the next
`eval_every`; `study plan` prices the same rung epochs, and a real halved study (Ray Tune + ASHA
through the project's runner, on a tiny grid of the demo smoke study) trains the trial-epochs
the plan says."""
from __future__ import annotations

import re
from dataclasses import replace

import ray
from mlflow.tracking import MlflowClient

from search_spaces import Grid
from study.__main__ import cmd_plan
from study.halving import Halving
from study.protocol import run_study
from study.ray_runner import RayRunner
from study.spec import get_study
from study.tracking import StudyTracker
from tests.conftest import TINY_VIT, tiny_trial
from trainables.config import Recipe


def test_a_recipe_evaluates_at_its_rungs_or_every_eval_every_and_after_the_last():
    every = Recipe("sgd", 1.0, 0.0, epochs=100, warmup_epochs=10, batch_size=64, eval_every=10)
    assert [e for e in range(1, 101) if every.evaluates_after(e)] == list(range(10, 101, 10))
    assert every.evaluations(100) == 10 and every.evaluations(45) == 4
    rungs = replace(every, eval_at=Halving().rung_epochs(every))
    assert rungs.eval_at == (11, 33, 99)
    assert [e for e in range(1, 101) if rungs.evaluates_after(e)] == [11, 33, 99, 100]
    assert rungs.evaluations(33) == 2
    assert Halving(grace_epochs=2, reduction=2.5).rung_epochs(every) == (2, 5, 13, 32, 79)


def test_the_rung_epochs_change_no_trial_id_and_no_kept_prior():
    cfg = tiny_trial("", "ft_then_pt")
    judged = Halving(grace_epochs=1).judged(cfg)
    assert judged.recipe.eval_at == (1,) and judged.recipe != cfg.recipe
    assert judged.trial_id == cfg.trial_id
    assert judged.recipe.identity() == cfg.recipe.identity()
    assert type(cfg).from_dict(judged.to_dict()) == judged


def test_the_plan_prices_the_epochs_a_halved_run_trains(tmp_path, cache_dir, capsys):
    smoke = get_study("demo", smoke=True)
    grid = Grid("rungs_prompt", "sgd", (2.5, 1e-9, 1e-10), (0.0,))
    spec = replace(smoke, name="rungs", tasks=("digits",), strategies=("linear",),
                   backbones=(TINY_VIT,), upstream=None, epochs=9, warmup_epochs=0,
                   eval_every=4, search_space=replace(
                       smoke.search_space, grids={**smoke.search_space.grids, "prompt": grid}))
    halving = Halving()                                  # rungs at epochs 1 and 3 of 9
    cmd_plan(spec, halving)
    planned = re.search(r"stage tune, halving: +3 trials, +([\d,]+) trial-epochs",
                        capsys.readouterr().out)
    assert planned and int(planned[1]) == 9 + 1 + 1      # judged at epoch 1: one continues

    uri = f"sqlite:///{tmp_path}/mlflow.db"
    tracker = StudyTracker(spec.name, uri)
    # one trial at a time, in order
    ray.init(address="local", num_cpus=1, include_dashboard=False, log_to_driver=False)
    runner = RayRunner(tracker, storage_path=str(tmp_path / "ray"), halving=halving)
    try:
        run_study(spec, runner, tracker, cache_dir, log=lambda line: None)
    finally:
        runner.shutdown()
    client = MlflowClient(uri)
    runs = client.search_runs([tracker.experiment_id], "tags.stage = 'tune'")
    trained = {float(run.data.params["base_lr"]): [
        m.step for m in client.get_metric_history(run.info.run_id, "train_loss")]
        for run in runs}
    evaluated = {float(run.data.params["base_lr"]): [
        m.step for m in client.get_metric_history(run.info.run_id, "val_acc")]
        for run in runs}
    assert evaluated[2.5] == [1, 3, 9]                   # at the rungs and after the last only
    assert evaluated[1e-9] == evaluated[1e-10] == [1]    # stopped at the first rung
    real = sum(len(steps) for steps in trained.values())
    assert abs(real - int(planned[1])) <= 0.05 * real
