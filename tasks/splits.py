"""Split strings as task_adaptation writes them, resolved against a source's split sizes:
`train[:800]`, `train[45000:45200]`, `train[90%:+200]` (200 examples from 90 %), `test[50%:]`,
`train+validation`; and the data-size sweeps: the slices the paper's code publishes for a task
(first-N training images, val from the task's own VTAB val source), else seeded 4:1 train/val
samples of its pool."""
from __future__ import annotations

import re
from typing import Mapping

import numpy as np

from common.errors import StudyInputError
from tasks.cache import CacheError, read_manifest
from tasks.demo import DEMO_POOL, DEMO_POOLS
from tasks.spec import ONE_SHOT, SOURCE_SIZES, SWEEP_SIZES, TaskSpec, sweep_split_names

_PART = re.compile(r"(\w+)(?:\[([^\]:]*):([^\]]*)\])?")


def _bound(text: str, size: int, start: int | None = None) -> int:
    if text == "":
        return size if start is not None else 0
    if text.startswith("+"):
        return start + int(text[1:])
    if text.endswith("%"):
        return size * int(text[:-1]) // 100
    return int(text)


def resolve_split(expression: str, sizes: Mapping[str, int]) -> list[tuple[str, int, int]]:
    """`train[:800]+train[90%:+200]` -> [("train", 0, 800), ("train", 2754, 2954)]."""
    parts, position = [], 0
    for match in _PART.finditer(expression):
        if expression[position:match.start()] not in ("", "+") or match.group(1) not in sizes:
            raise StudyInputError(f"cannot resolve split '{expression}' (sizes: {dict(sizes)})")
        position = match.end()
        name, size = match.group(1), sizes[match.group(1)]
        start = _bound(match.group(2) or "", size)
        stop = _bound(match.group(3) or "", size, start)
        if not 0 <= start < stop <= size:
            raise StudyInputError(f"split '{expression}' is out of range for {name} ({size})")
        parts.append((name, start, stop))
    if not parts or position != len(expression):
        raise StudyInputError(f"cannot resolve split '{expression}'")
    return parts


Parts = list[tuple[str, np.ndarray]]          # (source split, example indices)


def ranges(expression: str, sizes: Mapping[str, int]) -> Parts:
    return [(name, np.arange(a, b)) for name, a, b in resolve_split(expression, sizes)]


def sweep_indices(pool: tuple[str, int, int], train_size: int, seed: int = 0):
    """A seeded 4:1 train/val sample of the pool: (source split, train idx, val idx), or None
    when the pool is too small."""
    name, start, stop = pool
    val_size = train_size // 4
    if train_size + val_size > stop - start:
        return None
    order = start + np.random.default_rng([seed, train_size]).permutation(stop - start)
    return name, order[:train_size], order[train_size:train_size + val_size]


def _source_sizes(task: TaskSpec) -> Mapping[str, int] | None:
    kind, _, name = task.source.partition(":")
    return SOURCE_SIZES.get(name.split(":")[0]) if kind == "tfds" else None


def sweep_names(task: TaskSpec, train_size: int) -> tuple[str, str, str]:
    """A task's split names at a sweep size: train N, val V, train N val V, where V is the size
    of the val slice the paper's code publishes for it, or of the val split the task names
    itself at that size (VTAB-1k's val200, an imported task's), else N/4."""
    published = task.sweeps.get(train_size)
    if published is None:
        own = [re.fullmatch(rf"train{train_size}val(\d+)", split) for split in task.splits]
        val = next((int(match.group(1)) for match in own if match), None)
        return sweep_split_names(train_size, val)
    val = sum(b - a for _, a, b in resolve_split(published[1], _source_sizes(task)))
    return sweep_split_names(train_size, val)


def sweep_holds(task: TaskSpec, train_size: int) -> dict[str, str]:
    """What each split of a sweep size holds, as the task's manifest records it."""
    train, val, both = sweep_names(task, train_size)
    published = task.sweeps.get(train_size)
    if published:
        return {train: published[0], val: published[1], both: "+".join(published)}
    sample = f"a seeded 4:1 sample of {task.pool} (seed [0, {train_size}])"
    return {train: f"train of {sample}", val: f"val of {sample}", both: f"train + val of {sample}"}


def sweep_parts(task: TaskSpec, train_size: int, sizes: Mapping[str, int]) -> dict[str, Parts]:
    """The examples of each split of a sweep size, against the source's split `sizes`: the
    slices the paper's code publishes for the task, else a seeded 4:1 sample of its pool; {}
    when the pool is too small for the sample."""
    train, val, both = sweep_names(task, train_size)
    published = task.sweeps.get(train_size)
    if published:
        parts = [ranges(expression, sizes) for expression in published]
    else:
        sample = sweep_indices(resolve_split(task.pool, sizes)[0], train_size)
        if sample is None:
            return {}
        parts = [[(sample[0], sample[1])], [(sample[0], sample[2])]]
    return {train: parts[0], val: parts[1], both: parts[0] + parts[1]}


def check_sweep(cache_dir, task: TaskSpec, train_size: int) -> None:
    """Refuse a cached sweep split that holds other examples than the task now reads (one
    prepared as a seeded sample where the paper's code's own slices are read now)."""
    if sweep_names(task, train_size)[0] in task.splits:      # canonical: never a sweep's
        return
    held = read_manifest(cache_dir, task.slug).get("splits_hold", {})
    for split, holds in sweep_holds(task, train_size).items():
        if split in held and held[split] != holds:
            raise CacheError(f"task '{task.slug}': its cached {split} holds {held[split]}, where "
                             f"it now reads {holds}: prepare it again with `python -m tasks "
                             f"prepare {task.slug} --sweep {train_size} --force`")


def supported_sweeps(task: TaskSpec) -> tuple[int, ...]:
    """The sweep sizes whose slices the paper's code publishes for the task, and those whose
    train + val (4:1) fit in its pool, by TFDS's split sizes."""
    sizes = _source_sizes(task)
    if not task.pool or sizes is None:
        return ()
    _, start, stop = resolve_split(task.pool, sizes)[0]
    return tuple(sorted({n for n in SWEEP_SIZES if n + n // 4 <= stop - start} | set(task.sweeps)))


def setting_splits(setting: str, task: TaskSpec | None = None
                   ) -> tuple[tuple[str, str], tuple[str, str]]:
    """(tune train, tune eval), (final train, final eval) split names of a data setting:
    "800" (VTAB-1k), another train size of the sweep (whose val size can depend on the task),
    "1shot", or "full" (FGVC)."""
    if setting == "1shot":
        return (ONE_SHOT[0], ONE_SHOT[1]), (ONE_SHOT[2], "test")
    if setting == "full":                       # FGVC: the final model trains on train only
        return ("train", "val"), ("train", "test")
    if not setting.isdigit():
        raise StudyInputError(f"unknown data setting '{setting}'; valid: a train size such as "
                              f"800, 1shot, full")
    train, val, both = (sweep_names(task, int(setting)) if task
                        else sweep_split_names(int(setting)))
    return (train, val), (both, "test")


def supports(task: TaskSpec, setting: str) -> bool:
    """Whether the task can be run in a data setting (its splits exist or can be made)."""
    (train, _), _ = setting_splits(setting, task)
    if train in task.splits:
        return True
    if setting == "1shot":                      # sampled inside train800 / val200
        return task.source.startswith("tfds:") and "train800" in task.splits
    return setting.isdigit() and int(setting) in supported_sweeps(task)


def split_size(task: TaskSpec, split: str) -> int | None:
    """Images in a split of a task, from the split string and the source's known sizes; None
    when they are not known before preparation (folder tasks)."""
    kind, _, name = task.source.partition(":")
    if split.startswith("train") and split[5:].isdigit():
        return int(split[5:])
    if split.startswith("val") and split[3:].isdigit():
        return int(split[3:])
    sweep = re.fullmatch(r"train(\d+)val(\d+)", split)
    if sweep:
        return int(sweep.group(1)) + int(sweep.group(2))
    if split in ONE_SHOT:
        return task.num_classes * (2 if split == ONE_SHOT[2] else 1)
    name = name.split(":")[0]
    sizes = {"tfds": SOURCE_SIZES.get(name),
             "demo": DEMO_POOLS.get(name, DEMO_POOL)}.get(kind)
    if sizes is None or split not in task.splits:
        return None
    return sum(b - a for _, a, b in resolve_split(task.splits[split], sizes))
