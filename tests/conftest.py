"""Shared fixtures: a session cache holding two real demo tasks, and a tiny random-init timm ViT
spec so that unit tests train in well under a second."""
from __future__ import annotations

import dataclasses
import os

import pytest

os.environ.setdefault("RAY_AUTH_MODE", "disabled")

from tasks import get_task  # noqa: E402
from tasks.prepare import prepare  # noqa: E402
from trainables.config import BackboneSpec, Recipe, TrialConfig  # noqa: E402
from trainables.strategy import get_strategy  # noqa: E402

TINY_VIT = BackboneSpec(name="vit_tiny_patch16_224", label="tiny-test-vit", overrides=(
    ("img_size", 32), ("patch_size", 8), ("embed_dim", 32), ("depth", 3), ("num_heads", 2)))


@pytest.fixture(scope="session")
def cache_dir(tmp_path_factory) -> str:
    folder = tmp_path_factory.mktemp("cache")
    for slug in ("digits", "count"):
        prepare(get_task(slug), folder)
    return str(folder)


TINY_KNOBS = {"prompt_length": 4, "prompt_dropout": 0.0, "lora_rank": 2}


def tiny_trial(cache_dir: str, strategy: str = "full_ft", **changes) -> TrialConfig:
    """A two-epoch trial on the tiny ViT; `changes` set TrialConfig fields or, by name, the
    strategy's knobs (small defaults in TINY_KNOBS, else the declared ones)."""
    recipe = changes.pop("recipe", Recipe("sgd", 0.5, 0.0, epochs=2, warmup_epochs=1,
                                          batch_size=64))
    names = {f.name for f in dataclasses.fields(TrialConfig)}
    knobs = {**TINY_KNOBS, **{k: changes.pop(k) for k in list(changes) if k not in names}}
    fields = dict(study="test", stage="tune", task="digits", strategy=strategy,
                  backbone=TINY_VIT, recipe=recipe, seed=42, train_split="train800",
                  eval_split="val200", knobs=get_strategy(strategy).knob_values(**knobs),
                  prior_recipe=Recipe("adamw", 0.004, 0.0, 1, 0, 64), cache_dir=cache_dir)
    fields.update(changes)
    return TrialConfig(**fields)


@pytest.fixture
def postgres_mlflow(tmp_path):
    """`mlflow server` on loopback over a PostgreSQL database of its own, as on the cluster's
    head; yields the server (its `uri`, `stop()`, `start()`)."""
    from tests.servers import MlflowServer, Postgres
    database = Postgres()
    server = MlflowServer(database.start(), tmp_path / "artifacts")
    try:
        server.start()
        yield server
    finally:
        server.stop()
        database.stop()


@pytest.fixture(scope="session")
def smoke_reference(tmp_path_factory):
    """An uninterrupted `study run demo --smoke`: its cache (which later runs reuse) and its
    store, the table every fault test must give back."""
    from tests.servers import run_study
    folder = tmp_path_factory.mktemp("reference")
    uri = f"sqlite:///{folder}/mlflow.db"
    done = run_study(folder / "cache", folder / "ray", uri)
    assert done.returncode == 0, done.stderr
    return folder / "cache", uri
