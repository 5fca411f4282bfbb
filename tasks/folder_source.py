"""Import of the common exported VTAB-1k layout (`<root>/<task>/{train800,val200,train800val200,
test}.txt`, each line `relative/image/path label`, images beside them), and of image-folder
datasets such as NABirds in the same list layout. The exported images were JPEG-re-encoded, which
is known to cost accuracy on some tasks (CIFAR-100), so the manifest records it."""
from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
from PIL import Image

from common.errors import StudyInputError
from tasks.cache import task_dir, write_manifest, write_split
from tasks.spec import TaskSpec
from tasks.views import INTERPOLATION, layout, stored

CHUNK = 256


def _read_list(path: Path) -> list[tuple[Path, int]]:
    rows = []
    for number, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        try:
            name, label = line.rsplit(maxsplit=1)
            rows.append((path.parent / name, int(label)))
        except ValueError:
            raise StudyInputError(f"{path}:{number}: expected '<image path> <label>'") from None
    return rows


def prepare_folder(task: TaskSpec, root: str | Path, cache_dir: str | Path,
                   image_size: int = 224, progress: bool = True) -> Path:
    from tqdm import tqdm
    folder = Path(root) / task.slug
    entries = {}
    for split in task.splits:
        listing = folder / f"{split}.txt"
        if not listing.exists():
            raise StudyInputError(f"{listing} does not exist: the folder layout is "
                                  f"<root>/{task.slug}/{{{','.join(task.splits)}}}.txt")
        rows = _read_list(listing)

        def chunks(rows=rows, split=split):
            with tqdm(total=len(rows), desc=f"{task.slug}/{split}", unit="img",
                      disable=not progress) as bar:
                for first in range(0, len(rows), CHUNK):
                    batch = rows[first:first + CHUNK]
                    images, *sizes = stored([np.asarray(Image.open(p).convert("RGB"))
                                             for p, _ in batch], task.augment, split,
                                            image_size)
                    bar.update(len(batch))
                    yield images, np.array([label for _, label in batch]), *sizes
        entries[split] = write_split(task_dir(cache_dir, task.slug), task.slug, split, len(rows),
                                     chunks=chunks(), num_classes=task.num_classes,
                                     **layout(task.augment, split, image_size))
    info = {"source": f"folder:{folder}", "image_size": image_size,
            "augment": dataclasses.asdict(task.augment) if task.augment else None,
            "interpolation": INTERPOLATION,
            "encoding": "imported from an image folder; JPEG-re-encoded exports score lower than "
                        "TFDS on some tasks (CIFAR-100)"}
    return write_manifest(cache_dir, task.slug, task.num_classes, entries, info)
