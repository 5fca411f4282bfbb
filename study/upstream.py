"""Backbone weights before any trial: each backbone's weights file is loaded once here, so a
missing file or one for another architecture is refused up front. When the demo backbone's file
is missing and the study says how to make it, the project pretrains it itself on an upstream task
(crops of photographs that no downstream task uses), with the same loop as every trial, records
the run in MLflow (stage "pretrain"), saves safetensors into the cache with a card (what made it,
its upstream accuracy, its sha256, the machine) and prints its upstream accuracy. The project
ships the demo backbone it pretrained so (study/data/): a study copies that file instead when the
card says the same backbone and recipe made it, so every machine adapts the same weights."""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
from dataclasses import replace
from pathlib import Path
from typing import Callable

import torch

from common.errors import StudyInputError
from common.files import exclusive, write_atomically, write_text_atomically
from common.keys import Cell
from common.machine import machine
from study.spec import StudySpec, Upstream
from study.tracking import StudyTracker
from tasks import get_task
from tasks.prepare import prepare
from trainables.backbones import create_backbone, resolve_weights, save_weights
from trainables.config import BackboneSpec, Execution, TrialConfig
from trainables.model import build_model
from trainables.trial import on_device, train_model

SHIPPED = Path(__file__).parent / "data"       # weights the project ships, each with its card


def ensure_backbones(spec: StudySpec, cache_dir: str, tracker: StudyTracker,
                     log: Callable[[str], None] = print) -> None:
    for backbone in spec.backbones:
        _check_strategies_fit(spec, backbone)
        if backbone.weights:
            _ensure(spec.name, backbone, spec.upstream, cache_dir, tracker, log)
        elif backbone.hub_weights:
            _fetch(backbone)


def _fetch(backbone: BackboneSpec) -> None:
    """timm's hub weights fetched once, before any trial, into the hub cache that the trials of
    this host read; a machine that cannot reach the hub is told to give a file instead."""
    try:
        create_backbone(backbone, num_classes=2)
    except Exception as error:          # the hub's (network, auth, missing file) errors alike
        raise StudyInputError(
            f"backbone {backbone.tag}: timm cannot fetch {backbone.name}'s weights from its hub "
            f"({type(error).__name__}: {(str(error).splitlines() or [''])[0][:120]}); "
            f"give a weights file with --weights FILE (or `weights` in a study file)") from None


def _check_strategies_fit(spec: StudySpec, backbone: BackboneSpec) -> None:
    """Every strategy can adapt this architecture (built on the meta device: no memory)."""
    for strategy in spec.strategies:
        cell = Cell(backbone.tag, spec.settings[0], spec.tasks[0], strategy)
        with torch.device("meta"):
            build_model(spec.trial(stage="tune", cell=cell, point=spec.points(strategy)[0],
                                   seed=0), 2, pretrained=False)


def made_by(backbone: BackboneSpec, upstream: Upstream) -> dict:
    """What a pretrained weights file depends on, as its card records it. A recipe's empty
    fields (eval_at: none) are left out, so a card written before such a field existed still
    matches the recipe it was made with."""
    recipe = {k: v for k, v in upstream.recipe.__dict__.items() if v != ()}
    return json.loads(json.dumps({
        "architecture": backbone.name, "overrides": dict(backbone.overrides),
        "upstream_task": upstream.task, "seed": upstream.seed, "recipe": recipe}))


def read_card(weights: Path) -> dict | None:
    card = weights.with_suffix(".json")
    return json.loads(card.read_text()) if card.exists() else None


def weights_cards(spec: StudySpec, cache_dir: str) -> dict[str, str]:
    """The card of each backbone whose weights the project pretrained, by artifact file name."""
    cards = {}
    for backbone in spec.backbones:
        card = read_card(resolve_weights(backbone, cache_dir)) if backbone.weights else None
        if card:
            cards[f"backbone_{backbone.tag}.json"] = json.dumps(card, indent=1)
    return cards


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def shipped_copy(backbone: BackboneSpec, upstream: Upstream) -> Path | None:
    """The copy of this pretraining's weights that the project ships, if its card says this
    backbone and recipe made it and its bytes are the ones the card names; else None."""
    if upstream.shipped is None:
        return None
    path = SHIPPED / upstream.shipped
    card = read_card(path) if path.exists() else None
    if card is None or card.get("made_by") != made_by(backbone, upstream) \
            or card.get("sha256") != sha256(path):
        return None
    return path


def copy_shipped(backbone: BackboneSpec, upstream: Upstream | None, path: Path) -> bool:
    """Copy the project's shipped weights of this pretraining, and their card, to `path`;
    False when none ship."""
    shipped = shipped_copy(backbone, upstream) if upstream else None
    if shipped is None:
        return False
    write_atomically(path, lambda partial: shutil.copyfile(shipped, partial))
    write_text_atomically(path.with_suffix(".json"), shipped.with_suffix(".json").read_text())
    return True


def _ensure(study: str, backbone: BackboneSpec, upstream: Upstream | None, cache_dir: str,
            tracker: StudyTracker, log: Callable[[str], None]) -> None:
    """The weights file checked, or made (copied or pretrained) once however many drivers of
    this host ask for it at the same time."""
    path = resolve_weights(backbone, cache_dir)
    if not path.exists() and upstream is None:
        raise StudyInputError(f"weights file {path} does not exist"
                              + (f": {backbone.obtain}" if backbone.obtain else ""))
    if not path.exists():
        with exclusive(path.with_name(f".{path.name}.lock")):
            if not path.exists():               # else made while this one waited
                return _make(study, backbone, upstream, path, cache_dir, tracker, log)
    create_backbone(backbone, num_classes=2, cache_dir=cache_dir)   # refuses a misfit
    card = read_card(path)
    if card:
        log(f"backbone: {path} (upstream val acc {card['upstream_val_acc']:.1f}%)")


def _make(study: str, backbone: BackboneSpec, upstream: Upstream, path: Path, cache_dir: str,
          tracker: StudyTracker, log: Callable[[str], None]) -> None:
    if not copy_shipped(backbone, upstream, path):
        prepare(get_task(upstream.task), cache_dir)
        _pretrain(study, backbone, upstream, path, cache_dir, tracker, log)
        return
    log(f"backbone: {backbone.tag} as the project pretrained it on '{upstream.task}' (upstream "
        f"val acc {read_card(path)['upstream_val_acc']:.1f}%; how and where: "
        f"{path.with_suffix('.json')}); `python -m study pretrain {study}` on a cache without it "
        f"pretrains it here")


def _pretrain(study: str, backbone: BackboneSpec, upstream: Upstream, path: Path,
              cache_dir: str, tracker: StudyTracker, log: Callable[[str], None]) -> None:
    cfg = TrialConfig(study=study, stage="pretrain", task=upstream.task, strategy="full_ft",
                      backbone=replace(backbone, weights=None), recipe=upstream.recipe,
                      seed=upstream.seed, train_split="train", eval_split="val",
                      setting="upstream", cache_dir=cache_dir,
                      execution=Execution(threads=os.cpu_count() or 1))   # no GPU share: on
                                                # the driver's CPU, outside Ray's GPU accounting
    log(f"backbone: pretraining {backbone.tag} on '{upstream.task}' "
        f"({upstream.recipe.epochs} epochs) -> {path}")
    run_id = tracker.start(cfg)

    def report(metrics: dict) -> None:
        tracker.record(run_id, metrics)
        if "val_acc" in metrics:
            log(f"  upstream epoch {metrics['epoch']}/{upstream.recipe.epochs}: "
                f"val acc {metrics['val_acc']:.1f}%")
    try:
        model, summary = train_model(cfg, report)
    except BaseException as error:
        tracker.finish(run_id, "FAILED" if isinstance(error, Exception) else "KILLED", repr(error))
        raise
    finally:
        on_device.cache_clear()            # the driver keeps no upstream split for the study
    tracker.finish(run_id, "FINISHED")
    save_weights(model, path)
    write_text_atomically(path.with_suffix(".json"), json.dumps({
        "made_by": made_by(backbone, upstream), "upstream_val_acc": summary["final_val_acc"],
        "sha256": sha256(path), "made_on": f"{machine()}, {time.strftime('%Y-%m-%d')}",
        "mlflow_run_id": run_id}, indent=1))
    log(f"backbone: upstream val acc {summary['final_val_acc']:.1f}% "
        f"({summary['wall_seconds']:.0f} s)")
