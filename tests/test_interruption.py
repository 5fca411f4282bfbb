"""The driver is SIGKILLed during tune, between the stages and during final; rerunning the same
command each time finishes the study with the same table as an uninterrupted run, and MLflow holds
exactly one FINISHED run per trial, the interrupted ones closed as KILLED. Slow (about 2 minutes):
`pytest -m slow`."""
from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from mlflow.tracking import MlflowClient

from results.runs import load_runs
from results.table import paper_tables

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow


def start(cache: Path, store: Path) -> subprocess.Popen:
    env = {**os.environ, "MLFLOW_TRACKING_URI": f"sqlite:///{store}/mlflow.db"}
    return subprocess.Popen(
        [sys.executable, "-m", "study", "run", "demo", "--smoke", "--cache-dir", str(cache),
         "--storage-path", str(store / "ray")], cwd=ROOT, env=env, text=True,
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)


def run_to_end(cache: Path, store: Path) -> str:
    process = start(cache, store)
    out, _ = process.communicate(timeout=600)
    assert process.returncode == 0, out
    return out


def kill_driver_when(cache: Path, store: Path, pattern: str) -> None:
    process = start(cache, store)
    for line in process.stdout:
        if re.search(pattern, line):
            process.send_signal(signal.SIGKILL)          # the driver only, mid-flight
            break
    else:
        pytest.fail(f"the study ended before '{pattern}'")
    process.wait(timeout=60)
    try:                                                 # then clear what it left behind
        os.killpg(process.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def table_of(store: Path):
    runs = load_runs("demo-smoke", f"sqlite:///{store}/mlflow.db")
    return paper_tables(runs[runs["stage"] == "final"]).single, runs


def test_three_kills_lose_nothing_and_count_nothing_twice(tmp_path):
    cache, reference, interrupted = tmp_path / "cache", tmp_path / "ref", tmp_path / "int"
    run_to_end(cache, reference)

    kill_driver_when(cache, interrupted, r"^\[tune\] 2/\d+ trials")
    kill_driver_when(cache, interrupted, r"^\[select\]")             # between the stages
    kill_driver_when(cache, interrupted, r"^\[final\] 2/\d+ trials")
    last = run_to_end(cache, interrupted)
    assert re.search(r"\[tune\] 6 trials: 6 already finished, 0 to run", last)
    assert re.search(r"\[final\] 6 trials: [2-6] already finished", last)

    expected, _ = table_of(reference)
    got, runs = table_of(interrupted)
    pd.testing.assert_frame_equal(got.mean, expected.mean)
    pd.testing.assert_frame_equal(got.cells, expected.cells)

    assert "RUNNING" not in set(runs["status"])
    trials = runs[runs["trial_id"].notna()]           # not the stage parents or the card
    finished = trials[trials["status"] == "FINISHED"]
    assert finished["trial_id"].is_unique
    assert (finished["stage"].value_counts()[["tune", "final"]] == [6, 6]).all()
    assert (trials["status"] == "KILLED").any()        # interrupted trials were closed, not lost
    client = MlflowClient(f"sqlite:///{interrupted}/mlflow.db")
    killed = runs[runs["status"] == "KILLED"]
    assert all(client.get_run(r).info.end_time for r in killed["run_id"])
