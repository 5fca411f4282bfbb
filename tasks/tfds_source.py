"""Preparation of VTAB-1k and FGVC tasks from TFDS into the array cache, following
google-research/task_adaptation: its builders, split strings (percent splits resolved against the
builder's split sizes, `a%:+n` meaning n examples from a%), label functions (CLEVR count - 3 and
distance bins, KITTI closest-vehicle bins, dSprites position // 2 and orientation bins, smallNORB
azimuth / elevation) and preprocessing (grey to RGB, dSprites x 255, bilinear resize to the
backbone's input size without antialiasing, as `tf.image.resize`). A data-size sweep adds the
slices the paper's code publishes for the task at that size, else seeded 4:1 samples of its pool,
and never replaces the canonical splits (its 800 row is VTAB-1k's train800 / val200); one-shot
splits are sampled inside train800 / val200 as the paper's code does.
The manifest records what every split holds and the builder version asked for and used. Reads
through `tfds.data_source`, which needs no TensorFlow but an ArrayRecord-format build."""
from __future__ import annotations

import dataclasses
import itertools
import random
from pathlib import Path
from typing import Callable, Mapping

import numpy as np

from common.errors import StudyInputError
from tasks.cache import task_dir, write_manifest, write_split
from tasks.spec import ONE_SHOT, TaskSpec
from tasks.splits import Parts, ranges, sweep_holds, sweep_names, sweep_parts
from tasks.views import INTERPOLATION, layout, stored

CHUNK = 256


def _min_beyond(distance: float, thresholds) -> int:
    """task_adaptation's `reduce_max(where(thresholds - distance < 0))`."""
    return max(i for i, t in enumerate(thresholds) if t < distance)


def clevr_distance(example) -> int:
    depth = np.asarray(example["objects"]["pixel_coords"])[:, 2]
    return _min_beyond(float(depth.min()), (0.0, 8.0, 8.5, 9.0, 9.5, 10.0, 100.0))


def kitti_distance(example) -> int:
    objects = example["objects"]
    vehicles = np.asarray(objects["type"]) < 3                  # Car, Van, Truck
    depths = np.asarray(objects["location"])[:, 2][vehicles] if vehicles.any() else []
    return _min_beyond(float(min([*depths, 1000.0])), (-100.0, 8.0, 20.0, 999.0))


LABELS: Mapping[str, Callable[[dict], int]] = {
    "label": lambda ex: int(ex["label"]),
    "clevr_count": lambda ex: len(ex["objects"]["size"]) - 3,
    "clevr_distance": clevr_distance,
    "kitti_distance": kitti_distance,
    "dsprites_location": lambda ex: int(ex["label_x_position"]) * 16 // 32,
    "dsprites_orientation": lambda ex: int(ex["label_orientation"]) * 16 // 40,
    "label_azimuth": lambda ex: int(ex["label_azimuth"]),
    "label_elevation": lambda ex: int(ex["label_elevation"]),
}

def to_rgb(image: np.ndarray, builder: str) -> np.ndarray:
    image = np.asarray(image)
    if builder.startswith("dsprites"):
        image = image * 255                                     # {0, 1} masks
    if image.ndim == 2:
        image = image[..., None]
    if image.shape[-1] == 1:
        image = np.repeat(image, 3, axis=-1)
    return image.astype(np.uint8)


def builder_name(task: TaskSpec) -> tuple[str, str]:
    """(name, requested version) from a `tfds:name:version` source."""
    _, name, *version = task.source.split(":")
    return name, version[0] if version else ""


def how_to_build(task: TaskSpec, data_dir: str) -> str:
    name, _ = builder_name(task)
    manual = {
        "diabetic_retinopathy_detection": "put the Kaggle files (train.zip*, test.zip*, "
        "trainLabels.csv) into {d}/downloads/manual/, then ",
        "resisc45": "put NWPU-RESISC45.rar into {d}/downloads/manual/, then ",
    }
    first = next((v.format(d=data_dir) for k, v in manual.items() if name.startswith(k)), "")
    text = (f"TFDS dataset '{name}' is not prepared in {data_dir} as ArrayRecord: {first}run "
            f"`pip install tensorflow && tfds build {name} --data_dir {data_dir} "
            f"--file_format array_record`")
    if name.startswith("sun397"):
        text += (f" (if it stops on an undecodable JPEG, delete that file under "
                 f"{data_dir}/downloads/extracted/ and run it again)")
    return text + (f"; a TFRecord build converts with `tfds convert_format --root_data_dir "
                   f"{data_dir} --out_file_format array_record`")


def _builder(tfds, name: str, requested: str, data_dir: str | None):
    """The builder at the version the task names where the installed TFDS has it, else TFDS's
    default version (the manifest records both)."""
    if requested:
        try:
            return tfds.builder(f"{name}:{requested}", data_dir=data_dir)
        except (AssertionError, ValueError):
            pass
    return tfds.builder(name, data_dir=data_dir)


def even_sample(parts: Parts, labels: list[int], per_class: int) -> Parts:
    """VPT-or-FT's one-shot sampling (`DATA.EVEN_SEPARETE`, src/data/datasets/tf_dataset.py:
    99-135): `random.seed(0)`, then for each class in order of first appearance,
    `random.sample` of `per_class` of its examples (all of them if it has fewer). A class absent
    from the split gets none."""
    rng = random.Random(0)
    by_class: dict[int, list[tuple[str, int]]] = {}
    examples = [(name, int(i)) for name, indices in parts for i in indices]
    for example, label in zip(examples, labels):
        by_class.setdefault(label, []).append(example)
    picked = [e for members in by_class.values()
              for e in rng.sample(members, min(len(members), per_class))]
    return [(name, np.array([i for _, i in run]))
            for name, run in itertools.groupby(picked, key=lambda e: e[0])]


ONE_SHOT_FROM = {ONE_SHOT[0]: ("train800", 1), ONE_SHOT[1]: ("val200", 1),
                 ONE_SHOT[2]: ("train800val200", 2)}


def prepare_tfds(task: TaskSpec, data_dir: str | Path | None, cache_dir: str | Path,
                 image_size: int = 224, splits: Mapping[str, str] | None = None,
                 split_sizes: Mapping[str, int] | None = None, sweep: tuple[int, ...] = (),
                 one_shot: bool = False, progress: bool = True) -> Path:
    """Write the task's splits (or `splits`), plus the data-size sweep splits of `sweep` that
    its pool supports and the one-shot splits, into the cache. `split_sizes` overrides the
    builder's split sizes (for builders whose metadata is not on this machine)."""
    import tensorflow_datasets as tfds
    from tqdm import tqdm
    name, requested = builder_name(task)
    where = str(data_dir) if data_dir else None
    try:
        builder = _builder(tfds, name, requested, where)
        sizes = dict(split_sizes or {split: info.num_examples
                                     for split, info in builder.info.splits.items()})
    except Exception as error:                 # noqa: BLE001 (TFDS raises many kinds)
        raise StudyInputError(how_to_build(task, where or "~/tensorflow_datasets") +
                              f" ({type(error).__name__})") from None
    if not sizes:
        raise StudyInputError(how_to_build(task, where or "~/tensorflow_datasets"))
    sources: dict = {}

    def source(split: str):
        if split not in sources:
            try:
                sources[split] = builder.as_data_source(split=split)
            except Exception as error:         # noqa: BLE001
                raise StudyInputError(how_to_build(task, where or "~/tensorflow_datasets") +
                                      f" ({type(error).__name__})") from None
        return sources[split]

    label = LABELS[task.label]
    strings = dict(splits or task.splits)
    plan: dict[str, Parts] = {split: ranges(expression, sizes)
                              for split, expression in strings.items()}
    holds = dict(strings)                        # split -> what it holds, for the manifest
    supported = []
    for train_size in sweep:
        if sweep_names(task, train_size)[0] in strings:   # the canonical splits (VTAB-1k's 800)
            supported.append(train_size)
            continue
        parts = sweep_parts(task, train_size, sizes)
        if parts:
            plan.update(parts)
            holds.update(sweep_holds(task, train_size))
            supported.append(train_size)
    if one_shot:
        for split, (inside, per_class) in ONE_SHOT_FROM.items():
            if inside not in plan:
                raise StudyInputError(f"one-shot splits are sampled inside {inside}, which "
                                      f"this preparation does not write")
            labels = [label(source(name)[int(i)]) for name, idx in plan[inside] for i in idx]
            plan[split] = even_sample(plan[inside], labels, per_class)
            holds[split] = (f"{per_class} per class of {inside} ({strings.get(inside, inside)}),"
                            f" random.seed(0) in split order, as VPT-or-FT's EVEN_SEPARETE for "
                            f"val200 and train800val200 (it reads train800 shuffled)")

    folder = task_dir(cache_dir, task.slug)
    entries = {}
    for split, parts in plan.items():
        count = sum(len(indices) for _, indices in parts)

        def chunks(parts=parts, split=split, count=count):
            with tqdm(total=count, desc=f"{task.slug}/{split}", unit="img",
                      disable=not progress) as bar:
                for source_split, indices in parts:
                    data = source(source_split)
                    for first in range(0, len(indices), CHUNK):
                        batch = [data[int(i)] for i in indices[first:first + CHUNK]]
                        images, *sizes = stored([to_rgb(ex["image"], name) for ex in batch],
                                                task.augment, split, image_size)
                        bar.update(len(batch))
                        yield (images, np.array([label(ex) for ex in batch], dtype=np.int64),
                               *sizes)
        entries[split] = write_split(folder, task.slug, split, count, chunks=chunks(),
                                     num_classes=task.num_classes,
                                     **layout(task.augment, split, image_size))
    info = {"source": task.source, "tfds_builder": name,
            "tfds_version": str(builder.info.version), "requested_version": requested,
            "splits_hold": holds, "pool": task.pool,
            "sweep_sizes": supported, "one_shot": one_shot, "image_size": image_size,
            "interpolation": INTERPOLATION, "encoding": "lossless uint8 (decoded from TFDS)",
            "augment": dataclasses.asdict(task.augment) if task.augment else None}
    return write_manifest(cache_dir, task.slug, task.num_classes, entries, info)
