"""Preparation of tasks into the array cache. The demo suite and the upstream set are generated
here; VTAB-1k and FGVC builders read TFDS (`tfds:` sources) and arrive with the real-data
preparer. Preparation is idempotent: a task whose manifest exists is left alone."""
from __future__ import annotations

from pathlib import Path

from study.errors import StudyInputError
from tasks import demo
from tasks.cache import is_prepared, write_task
from tasks.spec import TaskSpec


def prepare(task: TaskSpec, cache_dir: str | Path, force: bool = False) -> bool:
    """Build the cache of `task`; return True when something was written."""
    if is_prepared(cache_dir, task.slug) and not force:
        return False
    kind, _, name = task.source.partition(":")
    if kind != "demo":
        raise StudyInputError(f"task '{task.slug}' comes from {task.source}; this version "
                              f"prepares only the offline demo suite (tasks with a demo: source)")
    pools = demo.generate(name)
    splits = {split: demo.select(pools, expression) for split, expression in task.splits.items()}
    write_task(cache_dir, task.slug, splits, task.num_classes,
               info={"source": task.source, "generator_version": demo.GENERATOR_VERSION,
                     "encoding": "lossless uint8 (generated)", "interpolation": "bilinear"})
    return True
