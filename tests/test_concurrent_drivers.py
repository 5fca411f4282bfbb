"""Drivers started at the same moment on one fresh sqlite store, as a new user starts them in two
terminals: of two drivers of one study, one runs and the other is refused in one line; a driver
of another study started with them runs as well; nothing in the store is lost or left RUNNING.
The race was MLflow making a fresh store's tables, which it does without a lock (`open_client`
takes one), then the experiment and the lease. Fast: the start-up race itself, through the
tracker and the lease; slow (`-m slow`): the smoke studies through the command line."""
from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from study.spec import get_study

ROOT = Path(__file__).resolve().parents[1]
START = """
import sys, time
from common.errors import StudyInputError
from study.lease import DriverLease
from study.tracking import StudyTracker
uri, study, start = sys.argv[1], sys.argv[2], float(sys.argv[3])
time.sleep(max(0.0, start - time.time()))          # every driver opens the store at once
tracker = StudyTracker(study, uri)
try:
    with DriverLease(uri, tracker.experiment_id, study, "test", log=lambda line: None):
        print("held", flush=True)
        sys.stdin.read()                           # until the test lets go
except StudyInputError as error:
    print(f"refused: {error}", flush=True)
"""


def test_drivers_opening_a_fresh_store_together_one_study_refused_the_other_runs(tmp_path):
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    start = time.time() + 15                       # after every process has imported
    studies = ("demo-smoke", "demo-smoke", "demo-scale-smoke")
    drivers = [subprocess.Popen([sys.executable, "-c", START, uri, study, str(start)], cwd=ROOT,
                                stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True) for study in studies]
    try:
        said = [driver.stdout.readline().strip() for driver in drivers]
    finally:
        for driver in drivers:
            driver.stdin.close()
    for driver in drivers:
        driver.wait(timeout=120)
    errors = [driver.stderr.read() for driver in drivers]
    assert [driver.returncode for driver in drivers] == [0, 0, 0], errors
    assert sorted(said[:2])[0] == "held" and said[2] == "held", said
    refused = sorted(said[:2])[1]
    assert refused.startswith("refused: study 'demo-smoke' is being run by pid "), said
    client = MlflowClient(uri)
    assert sorted(e.name for e in client.search_experiments()) == \
        ["Default", "demo-scale-smoke", "demo-smoke"]


def run_together(commands: list[list[str]], env: dict) -> list[subprocess.CompletedProcess]:
    drivers = [subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True) for command in commands]
    outputs = [driver.communicate(timeout=1200) for driver in drivers]
    return [subprocess.CompletedProcess(driver.args, driver.returncode, *output)
            for driver, output in zip(drivers, outputs)]


@pytest.mark.slow
@pytest.mark.timeout(1200)
def test_smoke_studies_started_together_on_a_fresh_store_and_cache(tmp_path):
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    env = {**os.environ, "MLFLOW_TRACKING_URI": uri}
    where = ["--cache-dir", str(tmp_path / "cache"), "--storage-path", str(tmp_path / "ray")]
    run = [sys.executable, "-m", "study", "run"]
    first, second, other = run_together([[*run, "demo", "--smoke", *where],
                                         [*run, "demo", "--smoke", *where],
                                         [*run, "demo-scale", "--smoke", *where]], env)
    ran, refused = sorted((first, second), key=lambda done: done.returncode)
    assert (ran.returncode, refused.returncode, other.returncode) == (0, 2, 0), \
        (ran.stderr[-2000:], refused.stderr, other.stderr[-2000:])
    assert refused.stderr.count("\n") == 1
    assert refused.stderr.startswith("error: study 'demo-smoke' is being run by pid ")
    client = MlflowClient(uri)
    pretrained = 0
    for name in ("demo-smoke", "demo-scale-smoke"):
        spec = get_study(name.removesuffix("-smoke"), smoke=True)
        experiment = client.get_experiment_by_name(name)
        runs = client.search_runs([experiment.experiment_id], max_results=1000)
        assert not [r for r in runs if r.info.status == "RUNNING"]
        trials = [r for r in runs if r.data.tags.get("stage") in ("tune", "final")]
        expected = len(spec.tune_trials()) + len(spec.final_trials(spec.first_points()))
        assert len(trials) == expected
        assert {r.info.status for r in trials} == {"FINISHED"}
        assert len({r.data.tags["trial_id"] for r in trials}) == expected     # once each
        pretrained += sum(r.data.tags.get("stage") == "pretrain" for r in runs)
    assert pretrained == 1          # the backbone both need was pretrained once, then shared
