"""The demo backbone: when a study's weights file is missing and the study says how to make it,
the project pretrains the backbone itself on an upstream task (for the demo, crops of
photographs that no downstream task uses), with the same loop as every trial, records the run in
MLflow (stage "pretrain"), saves safetensors into the cache and prints its upstream accuracy.
An existing weights file is loaded once here, so a file for another architecture is refused
before any trial starts."""
from __future__ import annotations

import json
import os
from dataclasses import replace
from pathlib import Path
from typing import Callable

from study.errors import StudyInputError
from study.spec import StudySpec
from study.tracking import StudyTracker
from tasks import get_task
from tasks.prepare import prepare
from trainables.backbones import create_backbone, resolve_weights, save_weights
from trainables.config import TrialConfig
from trainables.trial import train_model


def ensure_backbone(spec: StudySpec, cache_dir: str, tracker: StudyTracker,
                    log: Callable[[str], None] = print) -> Path | None:
    if not spec.backbone.weights:
        return None
    path = resolve_weights(spec.backbone, cache_dir)
    card = path.with_suffix(".json")
    if path.exists():
        create_backbone(spec.backbone, num_classes=2, cache_dir=cache_dir)  # refuses a misfit
        if card.exists():
            info = json.loads(card.read_text())
            log(f"backbone: {path} (pretrained here; upstream val acc "
                f"{info['upstream_val_acc']:.1f}%)")
        return path
    if spec.upstream is None:
        raise StudyInputError(f"weights file {path} does not exist and study '{spec.name}' "
                              f"does not say how to pretrain it")
    upstream = spec.upstream
    prepare(get_task(upstream.task), cache_dir)
    cfg = TrialConfig(study=spec.name, stage="pretrain", task=upstream.task, strategy="full_ft",
                      backbone=replace(spec.backbone, weights=None), recipe=upstream.recipe,
                      seed=upstream.seed, train_split="train", eval_split="val",
                      cache_dir=cache_dir, threads=os.cpu_count() or 1)
    log(f"backbone: pretraining {spec.backbone.tag} on '{upstream.task}' "
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
    card.write_text(json.dumps({"upstream_task": upstream.task,
                                "upstream_val_acc": summary["final_val_acc"],
                                "mlflow_run_id": run_id, "recipe": upstream.recipe.__dict__},
                               indent=1))
    log(f"backbone: upstream val acc {summary['final_val_acc']:.1f}% "
        f"({summary['wall_seconds']:.0f} s)")
    return path
