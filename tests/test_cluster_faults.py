"""Faults of a cluster's services, on the real thing: the MLflow tracking server (over
PostgreSQL) stopped for 30 s in the middle of a stage and started again, and the disk under the
task cache filling up. Each ends with the same table as an uninterrupted run, nothing lost and
nothing written twice. `make test-cluster`."""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import threading
import time
from pathlib import Path

import pytest
import safetensors.torch

from tests.servers import (ROOT, assert_every_epoch_once, assert_same_table, run_study,
                           study_command, table, trials_of)

pytestmark = pytest.mark.cluster


def test_an_mlflow_server_away_for_30_s_mid_stage_loses_and_doubles_nothing(
        smoke_reference, postgres_mlflow, tmp_path):
    cache, reference_uri = smoke_reference
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
        smoke_reference, small_disk, tmp_path):
    cache, reference_uri = smoke_reference
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
