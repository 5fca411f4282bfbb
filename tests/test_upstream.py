"""The demo backbone: the project ships the weights its upstream recipe made (study/data/, with a
card), and a study copies them into the cache instead of pretraining, unless the card names
another recipe or backbone, the bytes are not the card's, or `python -m study pretrain` asks
for a pretraining here. (The pretraining itself runs in every `study run demo --smoke`, as in
tests/test_resilience.py.)"""
from __future__ import annotations

import json
import shutil
from dataclasses import replace

import pytest
from mlflow.tracking import MlflowClient
from safetensors.torch import load_file

import study.upstream as upstream
from study.spec import get_study
from study.studies import DEMO_BACKBONE, DEMO_UPSTREAM
from study.tracking import StudyTracker
from trainables.backbones import create_backbone


def test_the_shipped_demo_backbone_is_the_one_its_recipe_made():
    shipped = upstream.shipped_copy(DEMO_BACKBONE, DEMO_UPSTREAM)
    assert shipped is not None, ("study/data/ holds weights another recipe made: run `python -m "
                                 "study pretrain demo` into an empty cache, copy what it makes "
                                 "there (docs/contributing.md)")
    card = upstream.read_card(shipped)
    assert card["made_by"]["recipe"]["epochs"] == DEMO_UPSTREAM.recipe.epochs
    assert 60.0 < card["upstream_val_acc"] <= 100.0
    model = create_backbone(replace(DEMO_BACKBONE, weights=str(shipped)), num_classes=10)
    state = load_file(str(shipped))
    assert all((model.state_dict()[k] == v).all() for k, v in state.items()
               if not k.startswith("head."))


@pytest.mark.parametrize("change", [
    lambda backbone, up: (backbone, replace(up, recipe=replace(up.recipe, epochs=14))),
    lambda backbone, up: (backbone, replace(up, seed=1)),
    lambda backbone, up: (replace(backbone, overrides=(("img_size", 32), ("patch_size", 4))), up),
])
def test_shipped_weights_that_another_recipe_made_are_not_used(change):
    assert upstream.shipped_copy(*change(DEMO_BACKBONE, DEMO_UPSTREAM)) is None


def test_shipped_weights_whose_bytes_are_not_the_card_s_are_not_used(tmp_path, monkeypatch):
    for name in ("demo_vit_upstream.safetensors", "demo_vit_upstream.json"):
        shutil.copy(upstream.SHIPPED / name, tmp_path / name)
    monkeypatch.setattr(upstream, "SHIPPED", tmp_path)
    assert upstream.shipped_copy(DEMO_BACKBONE, DEMO_UPSTREAM) is not None
    with open(tmp_path / "demo_vit_upstream.safetensors", "r+b") as f:
        f.seek(-4, 2)
        f.write(b"\0\0\0\1")
    assert upstream.shipped_copy(DEMO_BACKBONE, DEMO_UPSTREAM) is None


def test_the_demo_starts_from_the_shipped_weights_without_pretraining(tmp_path):
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    tracker = StudyTracker("demo", uri)
    lines: list[str] = []
    upstream.ensure_backbones(get_study("demo"), str(tmp_path / "cache"), tracker, lines.append)
    copied = tmp_path / "cache" / "backbones" / "demo_vit_upstream.safetensors"
    assert copied.read_bytes() == (upstream.SHIPPED / copied.name).read_bytes()
    assert upstream.read_card(copied)["sha256"] == upstream.sha256(copied)
    assert len(lines) == 1 and "as the project pretrained it" in lines[0], lines
    assert "study pretrain demo" in lines[0]
    runs = MlflowClient(uri).search_runs([tracker.experiment_id])
    assert not [r for r in runs if r.data.tags.get("stage") == "pretrain"]
    upstream.ensure_backbones(get_study("demo"), str(tmp_path / "cache"), tracker, lines.append)
    assert "upstream val acc" in lines[-1]                     # the second time: the cache's copy
    cards = upstream.weights_cards(get_study("demo"), str(tmp_path / "cache"))  # MLflow artifacts
    assert json.loads(cards["backbone_demo-vit-32.json"])["sha256"] == upstream.sha256(copied)


def test_study_pretrain_drops_the_shipped_copy_and_a_smoke_study_has_none():
    assert get_study("demo").pretraining_here().upstream.shipped is None
    assert get_study("demo", smoke=True).upstream.shipped is None
    assert get_study("demo-scale").upstream.shipped == DEMO_UPSTREAM.shipped
