"""The cluster path a user takes, on one machine: `cluster.local.yaml` (cluster.yaml's node types
on Ray's fake multi-node provider) started as Ray starts it, the smoke study submitted with
`ray job submit` (the driver on the head, in its own working directory) and recorded by an MLflow
server over PostgreSQL. The autoscaler adds GPU-typed workers because trials queue, the trials run
on them, idle workers go; a worker node SIGKILLed mid-trial costs one FAILED attempt, retried
elsewhere, and the same table. `make test-cluster`."""
from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import psutil
import pytest
from mlflow.tracking import MlflowClient

from tests.servers import (ROOT, assert_same_table, dump_dom, table, trials_of,
                           wait_until)

pytestmark = pytest.mark.cluster
RAY = str(Path(sys.executable).with_name("ray"))
WORKER_NODE = re.compile(r"^f{51}\d{5}$")        # the fake provider's ids for the nodes it adds
ENV = {**os.environ, "RAY_AUTH_MODE": "disabled",            # as in a shell with the venv active
       "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}


@pytest.fixture
def local_cluster(tmp_path):
    """`RAY_FAKE_CLUSTER=1 ray start --head --autoscaling-config cluster.local.yaml`, then
    `ray stop --force` (what `ray down` does to every node). Yields the autoscaler's log."""
    subprocess.run([RAY, "stop", "--force"], env=ENV, capture_output=True)
    subprocess.run([RAY, "start", "--head", "--num-cpus", "0", "--dashboard-host", "127.0.0.1",
                    "--autoscaling-config", str(ROOT / "cluster.local.yaml")],
                   env={**ENV, "RAY_FAKE_CLUSTER": "1", "AUTOSCALER_UPDATE_INTERVAL_S": "1"},
                   check=True, capture_output=True, cwd=tmp_path)
    try:
        yield Path("/tmp/ray/session_latest/logs/monitor.log")
    finally:
        subprocess.run([RAY, "stop", "--force"], env=ENV, capture_output=True)


def submit(cache: Path, storage: Path, uri: str, folder: Path, *flags: str,
           **env: str) -> subprocess.Popen:
    """`ray job submit` of the smoke study, as docs/cluster.md does it."""
    folder.mkdir()
    study = (f"cd {folder} && python -m study run demo --smoke --address auto "
             f"--cpus-per-trial 1 --gpus-per-trial 0 --cache-dir {cache} "
             f"--storage-path {storage} {' '.join(flags)}")
    return subprocess.Popen(
        [RAY, "job", "submit", "--address", "http://127.0.0.1:8265", "--runtime-env-json",
         json.dumps({"env_vars": {"MLFLOW_TRACKING_URI": uri, **env}}), "--", "bash", "-c",
         study],
        env=ENV, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def ended(job: subprocess.Popen, said: list[str]) -> str:
    said.extend(job.stdout)
    job.wait(timeout=600)
    log = "".join(said)
    assert job.returncode == 0 and "succeeded" in log, log
    return log


def cluster_status() -> str:
    return subprocess.run([RAY, "status"], env=ENV, capture_output=True, text=True).stdout


def test_a_submitted_study_scales_workers_up_runs_on_them_and_they_go_when_idle(
        smoke_reference, postgres_mlflow, local_cluster, tmp_path):
    cache, reference_uri = smoke_reference
    job = submit(cache, tmp_path / "ray", postgres_mlflow.uri, tmp_path / "job")
    ended(job, [])

    runs = assert_same_table(postgres_mlflow.uri, reference_uri)
    trials = trials_of(runs)
    assert set(trials["status"]) == {"FINISHED"} and trials["trial_id"].is_unique
    client = MlflowClient(postgres_mlflow.uri)
    nodes = {client.get_run(r).data.params["node"] for r in trials["run_id"]}
    assert len(nodes) >= 2 and all(WORKER_NODE.match(n) for n in nodes)   # added workers only
    monitor = local_cluster.read_text()
    assert re.search(r"Adding [12] node\(s\) of type gpu_a100", monitor), monitor[-3000:]
    wait_until(lambda: "gpu_a100" not in cluster_status(), "idle worker removal", 90)
    assert re.search(r"Removing [12] nodes of type gpu_a100 \(idle\)",
                     local_cluster.read_text())

    page = dump_dom(                            # the MLflow UI on that server lists the runs
        f"{postgres_mlflow.uri}/#/experiments/"
        f"{client.get_experiment_by_name('demo-smoke').experiment_id}/runs"
        f"?workflowType=machine_learning", tmp_path / "browser")
    assert "demo-smoke: final stage" in page and "demo-smoke: tune stage" in page


def test_a_worker_node_killed_mid_trial_costs_one_attempt_and_no_result(
        smoke_reference, postgres_mlflow, local_cluster, tmp_path):
    cache, reference_uri = smoke_reference
    job = submit(cache, tmp_path / "ray", postgres_mlflow.uri, tmp_path / "job",
                 "--max-failures", "2", VPT_INJECT_FAULTS="count/full_ft:stall")
    markers = cache / "faults"
    wait_until(lambda: any(markers.glob("*.stall")), "a trial to stall", 120)
    worker = psutil.Process(int(next(markers.glob("*.stall")).read_text()))
    raylet = worker.parent()                    # a Ray worker is its node's raylet's child
    assert raylet.name() == "raylet"
    node = raylet.environ()["RAY_OVERRIDE_NODE_ID_FOR_TESTING"]
    raylet.send_signal(signal.SIGKILL)          # mid-trial: the worker is in its stall
    said = []
    log = ended(job, said)
    assert "retrying" in log

    runs = assert_same_table(postgres_mlflow.uri, reference_uri)
    trials = trials_of(runs)
    finished = trials[trials["status"] == "FINISHED"]
    failed = trials[trials["status"] == "FAILED"]
    assert finished["trial_id"].is_unique
    assert len(finished) == len(trials_of(table(reference_uri)[1]))
    assert len(failed) >= 1 and set(failed["trial_id"]) <= set(finished["trial_id"])
    client = MlflowClient(postgres_mlflow.uri)
    for run_id in failed["run_id"]:
        error = client.get_run(run_id).data.tags["error"]
        assert "(retried)" in error and "actor" in error           # it died with its actor
    retried = finished[finished["trial_id"].isin(failed["trial_id"])]
    assert all(client.get_run(r).data.params["node"] != node     # and ran again elsewhere
               for r in retried["run_id"])
