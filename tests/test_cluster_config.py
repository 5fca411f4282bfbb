"""cluster.yaml is valid for Ray's own autoscaler schema and keeps its promises: a head that
runs no trials, only SSH open to the outside, dashboard and MLflow bound to 127.0.0.1, and no
credentials in the file."""
from __future__ import annotations

import re
from pathlib import Path

import yaml
from ray.autoscaler._private.util import prepare_config, validate_config

CLUSTER = Path(__file__).resolve().parents[1] / "cluster.yaml"


def load():
    return yaml.safe_load(CLUSTER.read_text())


def test_cluster_yaml_passes_rays_autoscaler_schema():
    config = prepare_config(load())
    validate_config(config)
    assert config["head_node_type"] == "head"
    assert config["available_node_types"]["gpu_a100"]["node_config"]["InstanceType"] == \
        "p4d.24xlarge"


def test_head_runs_no_trials_and_only_ssh_is_open():
    config = load()
    assert config["available_node_types"]["head"]["resources"] == {"CPU": 0}
    ports = [(p["FromPort"], p["ToPort"]) for p in
             config["provider"]["security_group"]["IpPermissions"]]
    assert ports == [(22, 22)]


def test_dashboard_and_mlflow_bind_to_loopback_and_no_secrets_in_the_file():
    config = load()
    head = " ".join(config["head_start_ray_commands"])
    assert "--dashboard-host=127.0.0.1" in head
    mlflow = " ".join(config["head_setup_commands"])
    assert "mlflow server --host 127.0.0.1" in mlflow
    text = CLUSTER.read_text()
    assert not re.search(r"AKIA[0-9A-Z]{16}|aws_secret|password\s*[:=]|postgres(ql)?://\S+:\S+@",
                         text, re.IGNORECASE)
