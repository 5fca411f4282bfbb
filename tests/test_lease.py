"""One driver per study and store (`study.lease`): a second driver is refused while the first
lives, without touching its runs; a killed driver's lease is taken over; a lease of another host
is taken over only once it has expired; the holder renews it and releases it at the end."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from common.errors import StudyInputError
from study.lease import TAG, DriverLease, Holder
from study.tracking import StudyTracker

ROOT = Path(__file__).resolve().parents[1]
HOLD = """
import sys, time
from study.lease import DriverLease
from study.tracking import StudyTracker
tracker = StudyTracker(sys.argv[2], sys.argv[1])
with DriverLease(tracker.uri, tracker.experiment_id, sys.argv[2], "python -m study run demo"):
    print("held", flush=True)
    time.sleep(600)
"""


@pytest.fixture
def store(tmp_path) -> str:
    return f"sqlite:///{tmp_path}/mlflow.db"


@pytest.fixture
def holder(store):
    """Another driver process holding the lease of study 'demo' in `store`."""
    process = subprocess.Popen([sys.executable, "-c", HOLD, store, "demo"], cwd=ROOT,
                               stdout=subprocess.PIPE, text=True)
    assert process.stdout.readline().strip() == "held"
    yield process
    process.kill()
    process.wait()


def lease(store: str, **kwargs) -> DriverLease:
    tracker = StudyTracker("demo", store)
    return DriverLease(store, tracker.experiment_id, "demo", "pytest", log=lambda line: None,
                       **kwargs)


def test_a_second_driver_is_refused_while_the_first_lives(store, holder):
    with pytest.raises(StudyInputError, match=f"'demo' is being run by pid {holder.pid} on "):
        lease(store).acquire()


def test_the_command_line_refuses_in_one_line_and_leaves_the_live_drivers_runs(store, holder,
                                                                              tmp_path):
    tracker = StudyTracker("demo-smoke", store)
    live = tracker.client.create_run(tracker.experiment_id, tags={"stage": "tune"}).info.run_id
    with DriverLease(store, tracker.experiment_id, "demo-smoke", "first"):
        done = subprocess.run(
            [sys.executable, "-m", "study", "run", "demo", "--smoke", "--cache-dir",
             str(tmp_path / "cache"), "--storage-path", str(tmp_path / "ray")],
            cwd=ROOT, env={**os.environ, "MLFLOW_TRACKING_URI": store}, capture_output=True,
            text=True, timeout=120)
    assert done.returncode == 2
    assert done.stderr.count("\n") == 1
    assert done.stderr.startswith(f"error: study 'demo-smoke' is being run by pid {os.getpid()}")
    assert tracker.client.get_run(live).info.status == "RUNNING"     # not closed as KILLED
    assert not (tmp_path / "cache").exists()                         # refused before any work


def test_a_killed_drivers_lease_is_taken_over_on_its_host(store, holder):
    holder.send_signal(signal.SIGKILL)
    holder.wait()
    said = []
    taker = lease(store)
    taker.log = said.append
    with taker:
        assert f"taking over from pid {holder.pid}" in said[0]
        assert json.loads(taker.client.get_experiment(taker.experiment_id).tags[TAG])[
            "token"] == taker.holder.token


def test_another_hosts_lease_is_taken_over_only_once_expired(store):
    first = lease(store)
    elsewhere = replace(first.holder, host="gpu-node-7", pid=1, until=time.time() + 60)
    first._write(elsewhere)
    with pytest.raises(StudyInputError, match="pid 1 on gpu-node-7"):
        lease(store).acquire()
    first._write(replace(elsewhere, until=time.time() - 1))
    with lease(store):
        pass


def test_the_holder_renews_then_releases(store):
    held = lease(store, ttl=3.0)                # renewed every second
    client = MlflowClient(store)

    def holder() -> Holder:
        return Holder(**json.loads(client.get_experiment(held.experiment_id).tags[TAG]))
    with held:
        first = holder()
        deadline = time.time() + 10
        while (renewed := holder()).until == first.until and time.time() < deadline:
            time.sleep(0.1)
        assert renewed.until > first.until and renewed.token == first.token
        assert not renewed.gone()
    assert TAG not in client.get_experiment(held.experiment_id).tags
