"""Preparation of a task into the array cache, by where its images come from: the demo suite and
the upstream set are generated here; TFDS tasks go through `tasks.tfds_source`; an exported
image-folder layout through `tasks.folder_source`. Idempotent: a task whose manifest exists is
left alone unless `force`; processes preparing the same task at once take turns, so it is made
once."""
from __future__ import annotations

from pathlib import Path

from common.errors import StudyInputError
from common.files import exclusive
from tasks import demo
from tasks.cache import CacheError, is_prepared, task_dir, write_task
from tasks.spec import SUITES, TaskSpec


class TasksNotPrepared(CacheError):
    """Every task a study reads that the cache lacks, with the one command that prepares them
    (a suite's name when they are all of one suite)."""

    def __init__(self, slugs: list[str], cache_dir: str | Path, options: str = ""):
        suite = next((name for name, members in SUITES.items() if set(members) == set(slugs)),
                     None)
        self.slugs = slugs
        super().__init__(f"{len(slugs)} task{'s are' if len(slugs) > 1 else ' is'} not "
                         f"prepared in {cache_dir}: {', '.join(slugs)}; run `python -m tasks "
                         f"prepare {suite or ' '.join(slugs)} --cache-dir {cache_dir}{options}` "
                         f"(--data-dir DIR for TFDS data outside TFDS's own folder)")


def prepare(task: TaskSpec, cache_dir: str | Path, force: bool = False,
            data_dir: str | Path | None = None, from_folder: str | Path | None = None,
            image_size: int = 224, sweep: tuple[int, ...] = (), one_shot: bool = False,
            progress: bool = False) -> bool:
    """Build the cache of `task`; return True when something was written."""
    if is_prepared(cache_dir, task.slug) and not force:
        return False
    folder = task_dir(cache_dir, task.slug)
    with exclusive(folder.with_name(f".{task.slug}.lock")):
        if is_prepared(cache_dir, task.slug) and not force:    # made while this one waited
            return False
        _prepare(task, cache_dir, data_dir, from_folder, image_size, sweep, one_shot, progress)
    return True


def _prepare(task: TaskSpec, cache_dir, data_dir, from_folder, image_size: int,
             sweep: tuple[int, ...], one_shot: bool, progress: bool) -> None:
    kind, _, name = task.source.partition(":")
    if from_folder:
        from tasks.folder_source import prepare_folder
        prepare_folder(task, from_folder, cache_dir, image_size, progress)
    elif kind == "demo":
        pools = demo.generate(name)
        splits = {split: demo.select(pools, expr) for split, expr in task.splits.items()}
        write_task(cache_dir, task.slug, splits, task.num_classes,
                   info={"source": task.source, "generator_version": demo.GENERATOR_VERSION,
                         "encoding": "lossless uint8 (generated)", "interpolation": "bilinear"})
    elif kind == "import":
        raise StudyInputError(f"task '{task.slug}' was imported from the user's images: run "
                              f"`python -m tasks import {task.slug} --force` with its "
                              f"--from-folder or --from-csv again")
    elif kind == "tfds":
        from tasks.tfds_source import prepare_tfds
        prepare_tfds(task, data_dir, cache_dir, image_size, sweep=sweep, one_shot=one_shot,
                     progress=progress)
    else:
        raise StudyInputError(f"task '{task.slug}' comes from an image folder: run "
                              f"`python -m tasks prepare {task.slug} --from-folder DIR`")
