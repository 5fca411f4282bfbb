"""The lossless array cache every trial reads. A prepared task is a folder
`<cache_dir>/tasks/<slug>/` holding, per protocol split, `<split>.images.npy` (uint8, N x H x W x 3)
and `<split>.labels.npy` (int64) (plus `<split>.sizes.npy`, int32 N x 2, for the training splits
of a task with augmentation: `tasks.views`), and a `manifest.json` with shapes, classes, source,
and the sha256 of every array file. The manifest is written last, so a half-written folder reads
as not prepared. Loads verify the checksums and memory-map the arrays, memoised per process, so a
reused Ray actor reads nothing twice and no trial decodes anything per epoch."""
from __future__ import annotations

import functools
import hashlib
import json
import os
from pathlib import Path
from typing import Iterable, Mapping

import numpy as np

from common.errors import StudyInputError
from common.files import reserve

MANIFEST = "manifest.json"


class CacheError(StudyInputError):
    """The cache cannot be used as it is."""


class TaskNotPrepared(CacheError):
    def __init__(self, slug: str, cache_dir: Path):
        super().__init__(f"task '{slug}' is not prepared in {cache_dir}: run "
                         f"`python -m tasks prepare {slug} --cache-dir {cache_dir}`")


class ChecksumMismatch(CacheError):
    def __init__(self, path: Path):
        super().__init__(f"checksum mismatch for {path}: the cache file changed after it was "
                         f"written; delete {path.parent} and prepare the task again")


def default_cache_dir() -> str:
    """The cache every command uses unless told otherwise: VPT_CACHE_DIR, else ./cache."""
    return os.environ.get("VPT_CACHE_DIR", "cache")


def task_dir(cache_dir: str | Path, slug: str) -> Path:
    return Path(cache_dir) / "tasks" / slug


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 22), b""):
            digest.update(block)
    return digest.hexdigest()


def _checked(slug: str, split: str, images: np.ndarray, labels: np.ndarray, num_classes: int):
    if images.ndim != 4 or images.shape[-1] != 3 or len(images) != len(labels):
        raise ValueError(f"{slug}/{split}: expected N x H x W x 3 uint8 images and N labels, "
                         f"got {images.shape} and {labels.shape}")
    if labels.size and (labels.min() < 0 or labels.max() >= num_classes):
        raise ValueError(f"{slug}/{split}: labels outside [0, {num_classes})")


def _entry(folder: Path, split: str, count: int, shape, kinds: tuple[str, ...]) -> dict:
    entry = {"count": int(count), "shape": list(shape)}
    for kind in kinds:
        path = folder / f"{split}.{kind}.npy"
        entry[kind] = {"file": path.name, "sha256": _sha256(path)}
    return entry


def write_split(folder: Path, slug: str, split: str, count: int, shape: tuple[int, int],
                chunks: Iterable[tuple[np.ndarray, ...]], num_classes: int,
                sized: bool = False) -> dict:
    """Stream `count` examples, chunk by chunk, into memory-mapped .npy files (large test sets
    never sit in memory whole); return the split's manifest entry. With `sized`, chunks carry a
    third array, each image's (height, width) inside its canvas (`tasks.views`)."""
    folder.mkdir(parents=True, exist_ok=True)
    arrays = {"images": ((count, *shape, 3), np.uint8), "labels": ((count,), np.int64)}
    if sized:
        arrays["sizes"] = ((count, 2), np.int32)
    paths = {kind: folder / f"{split}.{kind}.npy" for kind in arrays}
    files = {kind: np.lib.format.open_memmap(paths[kind], mode="w+", dtype=dtype, shape=size)
             for kind, (size, dtype) in arrays.items()}
    for path in paths.values():
        reserve(path)
    filled = 0
    for chunk in chunks:
        chunk_images, chunk_labels = chunk[0], np.asarray(chunk[1], dtype=np.int64)
        _checked(slug, split, chunk_images, chunk_labels, num_classes)
        for kind, values in zip(files, (chunk_images, chunk_labels, *chunk[2:])):
            files[kind][filled:filled + len(chunk_labels)] = values
        filled += len(chunk_labels)
    if filled != count:
        raise ValueError(f"{slug}/{split}: expected {count} examples, got {filled}")
    for array in files.values():
        array.flush()
    del files
    return _entry(folder, split, count, (*shape, 3), tuple(arrays))


def write_manifest(cache_dir: str | Path, slug: str, num_classes: int, entries: Mapping[str, dict],
                   info: Mapping[str, object] | None = None) -> Path:
    """Written last and atomically: a task without a manifest is not prepared."""
    return write_manifest_into(task_dir(cache_dir, slug), slug, num_classes, entries, info)


def write_manifest_into(folder: Path, slug: str, num_classes: int, entries: Mapping[str, dict],
                        info: Mapping[str, object] | None = None) -> Path:
    """`write_manifest` into a task folder that is not (yet) in its place in the cache."""
    manifest = {"task": slug, "num_classes": num_classes, "splits": dict(entries), **(info or {})}
    tmp = folder / (MANIFEST + ".tmp")
    tmp.write_text(json.dumps(manifest, indent=1, sort_keys=True))
    os.replace(tmp, folder / MANIFEST)
    return folder


def write_task(cache_dir: str | Path, slug: str, splits: Mapping[str, tuple[np.ndarray, np.ndarray]],
               num_classes: int, info: Mapping[str, object] | None = None) -> Path:
    """Write in-memory arrays of every split, then the manifest."""
    folder = task_dir(cache_dir, slug)
    entries = {}
    for split, (images, labels) in splits.items():
        images = np.asarray(images, dtype=np.uint8)
        labels = np.asarray(labels, dtype=np.int64)
        _checked(slug, split, images, labels, num_classes)
        entries[split] = write_split(folder, slug, split, len(labels), images.shape[1:3],
                                     [(images, labels)], num_classes)
    return write_manifest(cache_dir, slug, num_classes, entries, info)


def read_manifest(cache_dir: str | Path, slug: str) -> dict:
    path = task_dir(cache_dir, slug) / MANIFEST
    if not path.exists():
        raise TaskNotPrepared(slug, Path(cache_dir))
    return json.loads(path.read_text())


def is_prepared(cache_dir: str | Path, slug: str) -> bool:
    return (task_dir(cache_dir, slug) / MANIFEST).exists()


def _verified_files(cache_dir: str | Path, slug: str, split: str) -> list[Path]:
    """The split's array files, after checking that they exist and match their sha256."""
    manifest = read_manifest(cache_dir, slug)
    if split not in manifest["splits"]:
        raise CacheError(f"task '{slug}' has no split '{split}' in its cache; it has "
                         f"{', '.join(manifest['splits'])}")
    entry, folder = manifest["splits"][split], task_dir(cache_dir, slug)
    paths = []
    for kind in (k for k in ("images", "labels", "sizes") if k in entry):
        path = folder / entry[kind]["file"]
        if not path.exists():
            raise TaskNotPrepared(slug, Path(cache_dir))
        if _sha256(path) != entry[kind]["sha256"]:
            raise ChecksumMismatch(path)
        paths.append(path)
    return paths


def verify(cache_dir: str | Path, slug: str, splits: Iterable[str]) -> None:
    """Check a task's splits without loading them (the study does this before any trial)."""
    for split in splits:
        _verified_files(cache_dir, slug, split)


@functools.lru_cache(maxsize=32)
def _load(cache_dir: str, slug: str, split: str) -> tuple[np.ndarray, ...]:
    return tuple(np.load(path, mmap_mode="r")       # read-only, shared by every trial
                 for path in _verified_files(cache_dir, slug, split))


def load_split(cache_dir: str | Path, slug: str, split: str) -> tuple[np.ndarray, np.ndarray]:
    """(images uint8 N x H x W x 3, labels int64 N) of one split, verified, cached per process."""
    return _load(str(Path(cache_dir).resolve()), slug, split)[:2]


def load_sizes(cache_dir: str | Path, slug: str, split: str) -> np.ndarray | None:
    """Each image's (height, width) inside its canvas, for a training split of a task with
    augmentation (`tasks.views`); None for a split stored at the input size."""
    arrays = _load(str(Path(cache_dir).resolve()), slug, split)
    return arrays[2] if len(arrays) == 3 else None
