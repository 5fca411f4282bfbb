"""A small study on a simulated two-node Ray cluster (`ray.cluster_utils.Cluster`: a head that
runs no trials and two worker nodes), with a shared storage path and an MLflow tracking server
process on loopback, as `cluster.yaml` sets it up. Slow (about a minute): `pytest -m slow`."""
from __future__ import annotations

import socket
import subprocess
import sys
import time
import urllib.request

import pytest
from mlflow.tracking import MlflowClient
from ray.cluster_utils import Cluster

from study.protocol import run_study
from study.ray_runner import RayRunner
from study.tracking import StudyTracker
from tests.test_study_integration import FINAL_TRIALS, SPEC, TUNE_TRIALS

pytestmark = pytest.mark.slow


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def mlflow_server(tmp_path):
    port = _free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "mlflow", "server", "--host", "127.0.0.1", "--port", str(port),
         "--backend-store-uri", f"sqlite:///{tmp_path}/server.db",
         "--artifacts-destination", str(tmp_path / "artifacts"), "--workers", "1"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    uri = f"http://127.0.0.1:{port}"
    for _ in range(120):
        try:
            urllib.request.urlopen(f"{uri}/health", timeout=1).close()
            break
        except OSError:
            time.sleep(0.5)
    else:
        server.kill()
        pytest.fail("the MLflow server did not start")
    yield uri
    server.terminate()
    server.wait(timeout=30)


def test_a_study_spreads_over_two_worker_nodes_and_logs_to_the_server(tmp_path, cache_dir,
                                                                       mlflow_server):
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 0})
    workers = [cluster.add_node(num_cpus=1) for _ in range(2)]
    cluster.wait_for_nodes()
    tracker = StudyTracker(SPEC.name, mlflow_server)
    runner = RayRunner(tracker, address=cluster.address, storage_path=str(tmp_path / "shared"))
    try:
        table = run_study(SPEC, runner, tracker, cache_dir, log=lambda line: None).single
    finally:
        runner.shutdown()
        cluster.shutdown()
    runs = [r for r in MlflowClient(mlflow_server).search_runs([tracker.experiment_id],
                                                               max_results=1000)
            if r.data.tags.get("stage") in ("tune", "final")]       # trials, not the stage
                                                                    # parents or the card
    assert len(runs) == TUNE_TRIALS + FINAL_TRIALS
    assert {r.info.status for r in runs} == {"FINISHED"}
    nodes = {r.data.params["node"] for r in runs}
    assert nodes == {w.node_id for w in workers}          # both workers, never the head
    assert (table.seeds == 2).all().all()
    assert any((tmp_path / "shared").iterdir())            # Tune wrote to the shared path
