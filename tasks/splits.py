"""Split strings as task_adaptation writes them, resolved against a source's split sizes:
`train[:800]`, `train[45000:45200]`, `train[90%:+200]` (200 examples from 90 %), `test[50%:]`,
`train+validation`; and the seeded 4:1 train/val samples of the data-size sweeps."""
from __future__ import annotations

import re
from typing import Mapping

import numpy as np

from study.errors import StudyInputError
from tasks.spec import SOURCE_SIZES, SWEEP_SIZES, TaskSpec

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


def sweep_indices(pool: tuple[str, int, int], train_size: int, seed: int = 0):
    """A seeded 4:1 train/val sample of the pool: (source split, train idx, val idx), or None
    when the pool is too small."""
    name, start, stop = pool
    val_size = train_size // 4
    if train_size + val_size > stop - start:
        return None
    order = start + np.random.default_rng([seed, train_size]).permutation(stop - start)
    return name, order[:train_size], order[train_size:train_size + val_size]


def supported_sweeps(task: TaskSpec) -> tuple[int, ...]:
    """The sweep sizes whose train + val (4:1) fit in the task's pool, by TFDS's split sizes."""
    builder = task.source.split(":")[1]
    if not task.pool or builder not in SOURCE_SIZES:
        return ()
    _, start, stop = resolve_split(task.pool, SOURCE_SIZES[builder])[0]
    return tuple(n for n in SWEEP_SIZES if n + n // 4 <= stop - start)
