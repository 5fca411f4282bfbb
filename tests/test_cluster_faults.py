"""Faults of a cluster's services, on the real thing: the MLflow tracking server (over
PostgreSQL) stopped for 30 s in the middle of a stage and started again, and the storage path
filling up. Each ends with the same table as an uninterrupted run, nothing lost and nothing
written twice. `make test-cluster`."""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import pandas as pd
import pytest
import safetensors.torch
from mlflow.tracking import MlflowClient

from results.runs import load_runs
from results.table import paper_tables

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.cluster
STUDY = "demo-smoke"


def study_command(cache: Path, storage: Path) -> list[str]:
    return [sys.executable, "-m", "study", "run", "demo", "--smoke", "--cache-dir", str(cache),
            "--storage-path", str(storage)]


def run_study(cache: Path, storage: Path, uri: str) -> subprocess.CompletedProcess:
    return subprocess.run(study_command(cache, storage), cwd=ROOT, capture_output=True,
                          text=True, timeout=600, env={**os.environ, "MLFLOW_TRACKING_URI": uri})


def table(uri: str):
    runs = load_runs(STUDY, uri)
    return paper_tables(runs[runs["stage"] == "final"]).single, runs


def trials_of(runs):
    return runs[runs["stage"].isin(["tune", "final"])]


def assert_same_table(uri: str, reference: str):
    got, runs = table(uri)
    expected, _ = table(reference)
    pd.testing.assert_frame_equal(got.mean, expected.mean)
    pd.testing.assert_frame_equal(got.cells, expected.cells)
    return runs


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> tuple[Path, str]:
    """An uninterrupted run of the smoke study: its cache (reused) and its store."""
    folder = tmp_path_factory.mktemp("reference")
    uri = f"sqlite:///{folder}/mlflow.db"
    done = run_study(folder / "cache", folder / "ray", uri)
    assert done.returncode == 0, done.stderr
    return folder / "cache", uri


def test_an_mlflow_server_away_for_30_s_mid_stage_loses_and_doubles_nothing(
        reference, postgres_mlflow, tmp_path):
    cache, reference_uri = reference
    process = subprocess.Popen(study_command(cache, tmp_path / "ray"), cwd=ROOT, text=True,
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                               env={**os.environ, "MLFLOW_TRACKING_URI": postgres_mlflow.uri})
    said = []
    for line in process.stdout:
        said.append(line)
        if re.match(r"\[tune\] 2/\d+ trials", line):
            break
    postgres_mlflow.stop()
    down = time.monotonic()
    rest = threading.Thread(target=lambda: said.extend(process.stdout))
    rest.start()
    time.sleep(30)
    postgres_mlflow.start()
    process.wait(timeout=600)
    rest.join()
    log = "".join(said)
    assert process.returncode == 0, log
    assert time.monotonic() - down > 30
    assert log.count("does not answer; holding the study's writes") == 1, log
    assert log.count("answers again after") == 1, log

    runs = assert_same_table(postgres_mlflow.uri, reference_uri)
    trials = trials_of(runs)
    assert set(trials["status"]) == {"FINISHED"}                   # none failed or killed
    assert trials["trial_id"].is_unique                             # none created twice
    assert len(trials) == len(trials_of(table(reference_uri)[1]))
    assert_every_epoch_once(postgres_mlflow.uri, trials, reference_uri)


def assert_every_epoch_once(uri: str, trials, reference_uri: str) -> None:
    """Each trial's per-epoch history holds the same steps as the uninterrupted run's: none
    missing, none twice."""
    ref = trials_of(table(reference_uri)[1]).set_index("trial_id")["run_id"]
    client, ref_client = MlflowClient(uri), MlflowClient(reference_uri)

    def steps(c, run_id):
        return sorted(m.step for m in c.get_metric_history(run_id, "train_loss"))
    for row in trials.itertuples():
        assert steps(client, row.run_id) == steps(ref_client, ref[row.trial_id]), row.trial_id


@pytest.fixture
def small_disk(tmp_path):
    """A tmpfs at tmp_path/disk that a test can fill and then grow (`mount -o remount`)."""
    disk = tmp_path / "disk"
    disk.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(disk)], check=True)
    yield disk
    subprocess.run(["umount", "-l", str(disk)], check=True)


def resize(disk: Path, size: int) -> None:
    subprocess.run(["mount", "-o", f"remount,size={size}", str(disk)], check=True)


def test_a_full_cache_disk_stops_in_one_line_corrupts_nothing_and_a_rerun_finishes(
        reference, small_disk, tmp_path):
    cache, reference_uri = reference
    prepared = sum(f.stat().st_size for f in cache.rglob("*")
                   if f.is_file() and f.parts[-3:-2] != ("weights",))
    resize(small_disk, prepared + 600_000)        # the data fits, the trials' outputs do not
    for part in ("tasks", "backbones"):
        shutil.copytree(cache / part, small_disk / part)
    store = f"sqlite:///{tmp_path}/mlflow.db"

    full = run_study(small_disk, tmp_path / "ray", store)
    assert full.returncode == 2, full.stderr
    error = full.stderr.splitlines()[-1]
    assert re.match(r"error: (tune|final) stopped, a trial found no space left: .*No space left "
                    rf"on device: '{small_disk}/.*'; free space there", error), error
    assert sum(line.startswith("error:") for line in full.stderr.splitlines()) == 1
    assert not list(small_disk.rglob("*.partial"))                   # nothing half-written
    for path in small_disk.rglob("*.safetensors"):                   # what is there is whole
        safetensors.torch.load_file(path)
    _, runs = table(store)
    assert "RUNNING" not in set(runs["status"])

    resize(small_disk, 256 * 2 ** 20)
    again = run_study(small_disk, tmp_path / "ray", store)
    assert again.returncode == 0, again.stderr
    runs = assert_same_table(store, reference_uri)
    finished = trials_of(runs).query("status == 'FINISHED'")
    assert finished["trial_id"].is_unique and len(finished) == len(
        trials_of(table(reference_uri)[1]))
