"""Backbone weights before any trial: each backbone's weights file is loaded once here, so a
missing file or one for another architecture is refused up front. When the demo backbone's file
is missing and the study says how to make it, the project pretrains it itself on an upstream task
(crops of photographs that no downstream task uses), with the same loop as every trial, records
the run in MLflow (stage "pretrain"), saves safetensors into the cache and prints its upstream
accuracy."""
from __future__ import annotations

import json
import os
from dataclasses import replace
from typing import Callable

import torch

from common.errors import StudyInputError
from common.files import write_text_atomically
from common.keys import Cell
from study.spec import StudySpec, Upstream
from study.tracking import StudyTracker
from tasks import get_task
from tasks.prepare import prepare
from trainables.backbones import create_backbone, resolve_weights, save_weights
from trainables.config import BackboneSpec, Execution, TrialConfig
from trainables.trial import build_model, train_model


def ensure_backbones(spec: StudySpec, cache_dir: str, tracker: StudyTracker,
                     log: Callable[[str], None] = print) -> None:
    for backbone in spec.backbones:
        _check_strategies_fit(spec, backbone)
        if backbone.weights:
            _ensure(spec.name, backbone, spec.upstream, cache_dir, tracker, log)


def _check_strategies_fit(spec: StudySpec, backbone: BackboneSpec) -> None:
    """Every strategy can adapt this architecture (built on the meta device: no memory)."""
    for strategy in spec.strategies:
        cell = Cell(backbone.tag, spec.settings[0], spec.tasks[0], strategy)
        with torch.device("meta"):
            build_model(spec.trial(stage="tune", cell=cell, base_lr=1.0, weight_decay=0.0,
                                   seed=0), 2, pretrained=False)


def _ensure(study: str, backbone: BackboneSpec, upstream: Upstream | None, cache_dir: str,
            tracker: StudyTracker, log: Callable[[str], None]) -> None:
    path = resolve_weights(backbone, cache_dir)
    card = path.with_suffix(".json")
    if path.exists():
        create_backbone(backbone, num_classes=2, cache_dir=cache_dir)   # refuses a misfit
        if card.exists():
            log(f"backbone: {path} (pretrained here; upstream val acc "
                f"{json.loads(card.read_text())['upstream_val_acc']:.1f}%)")
        return
    if upstream is None:
        raise StudyInputError(f"weights file {path} does not exist"
                              + (f": {backbone.obtain}" if backbone.obtain else ""))
    prepare(get_task(upstream.task), cache_dir)
    cfg = TrialConfig(study=study, stage="pretrain", task=upstream.task, strategy="full_ft",
                      backbone=replace(backbone, weights=None), recipe=upstream.recipe,
                      seed=upstream.seed, train_split="train", eval_split="val",
                      setting="upstream", cache_dir=cache_dir,
                      execution=Execution(threads=os.cpu_count() or 1))
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
    tracker.finish(run_id, "FINISHED")
    save_weights(model, path)
    write_text_atomically(card, json.dumps({
        "upstream_task": upstream.task, "upstream_val_acc": summary["final_val_acc"],
        "mlflow_run_id": run_id, "recipe": upstream.recipe.__dict__}, indent=1))
    log(f"backbone: upstream val acc {summary['final_val_acc']:.1f}% "
        f"({summary['wall_seconds']:.0f} s)")
