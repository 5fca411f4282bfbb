"""A small study on a simulated two-node Ray cluster (`ray.cluster_utils.Cluster`: a head that
runs no trials and two worker nodes), with a shared storage path and an MLflow tracking server
over PostgreSQL on loopback, as `cluster.yaml` sets it up. `make test-cluster`."""
from __future__ import annotations

import pytest
from mlflow.tracking import MlflowClient
from ray.cluster_utils import Cluster

from study.protocol import run_study
from study.ray_runner import RayRunner
from study.tracking import StudyTracker
from tests.test_study_integration import FINAL_TRIALS, SPEC, TUNE_TRIALS

pytestmark = pytest.mark.cluster


def test_a_study_spreads_over_two_worker_nodes_and_logs_to_the_server(tmp_path, cache_dir,
                                                                       postgres_mlflow):
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 0})
    workers = [cluster.add_node(num_cpus=1) for _ in range(2)]
    cluster.wait_for_nodes()
    mlflow_server = postgres_mlflow.uri
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
