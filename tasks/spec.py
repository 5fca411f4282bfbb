"""The task table. A task is one frozen `TaskSpec` row keyed by a short slug: the
google-research/task_adaptation call string, its group (natural / specialized / structured), its
class count, where its images come from (a TFDS builder, with its split sizes, or a demo
generator), how each of the four protocol splits (train800, val200, train800val200, test) is
carved from the source splits, and its suite. The suites and the builders' sizes are derived
from the rows. A prompt length for a task no paper lists goes in the project's table
(search_spaces/data/prompt_lengths_project.csv), not here. Nothing here reads data;
`tasks.cache` and the preparers do. A task imported from the user's own images
(`tasks.importer`) has its row in its cached manifest, where `get_task` finds it."""
from __future__ import annotations

import functools
import json
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Mapping

from common.errors import UnknownName
from tasks.cache import MANIFEST, default_cache_dir, task_dir

GROUPS = ("natural", "specialized", "structured", "fgvc")
GROUP_TITLES = {"natural": "Natural", "specialized": "Specialized", "structured": "Structured",
                "fgvc": "FGVC"}


@dataclass(frozen=True)
class Augment:
    """Training-time augmentation as VPT's FGVC transforms (src/data/transforms.py:7-38 at 224
    px): resize the shorter side to `resize`, then a random `crop` square and a horizontal flip
    with probability 1/2 for training, the centre `crop` square for evaluation. How the cache
    stores such images: `tasks.views`."""
    resize: int = 256
    crop: int = 224
    canvas: int = 384             # training images are kept in a canvas x canvas square


@dataclass(frozen=True)
class TaskSpec:
    slug: str                     # short name used everywhere (MLflow tags, CLI, tables)
    name: str                     # the task_adaptation call string
    group: str                    # natural | specialized | structured | upstream
    num_classes: int
    source: str                   # "tfds:<builder>:<version>" or "demo:<generator>"
    splits: Mapping[str, str] = field(default_factory=dict)   # protocol split -> source split
    label: str = "label"          # how the label is derived from the source example
    pool: str = ""                # source split that train800 is drawn from (for size sweeps)
    augment: Augment | None = None   # None: resized to the input size, no augmentation (VTAB)
    # data-size sweep slices the paper's code publishes (VPT-or-FT src/data/vtab_datasets/*.py):
    # train size -> (train, val) split strings; other sizes are seeded 4:1 samples of `pool`
    sweeps: Mapping[int, tuple[str, str]] = field(default_factory=dict)
    suite: str = ""               # the suite it belongs to (`SUITES`), "" none
    # the TFDS builder's split sizes (as TFDS 4.9 reports them): they resolve percent splits
    # when planning and say which data-size sweeps fit; preparation reads the builder's own
    source_sizes: Mapping[str, int] = field(default_factory=dict)


def _vtab(slug, name, group, classes, builder, sizes, val, test="test", label="label",
          pool="train", sweeps=None):
    splits = {"train800": "train[:800]", "val200": val,
              "train800val200": f"train[:800]+{val}", "test": test}
    return TaskSpec(slug, name, group, classes, f"tfds:{builder}", MappingProxyType(splits), label,
                    pool, sweeps=MappingProxyType(sweeps or {}), suite="vtab1k",
                    source_sizes=MappingProxyType(sizes))


def sweep_split_names(train_size: int, val_size: int | None = None) -> tuple[str, str, str]:
    """Names of a data-size sweep's splits: train N, val (N/4 unless given), and both together."""
    val = train_size // 4 if val_size is None else val_size
    return f"train{train_size}", f"val{val}", f"train{train_size}val{val}"


def _demo(slug, group, classes, label="generator", sizes=(800,), suite="demo"):
    """A demo task: per train size n, train n and the next n/4 as val (4:1), and test."""
    splits = {}
    for n in sizes:
        train, val, both = sweep_split_names(n)
        splits.update({train: f"train[:{n}]", val: f"train[{n}:{n + n // 4}]",
                       both: f"train[:{n + n // 4}]"})
    splits["test"] = "test"
    return TaskSpec(slug, f"demo/{slug}", group, classes, f"demo:{slug}",
                    MappingProxyType(splits), label, suite=suite)


# The sweep slices are the custom branches left in the paper's code: first-N training images,
# val from the task's own VTAB val source (not always 4:1). Builders two tasks share:
_CLEVR = {"train": 70000, "validation": 15000, "test": 15000}
_DSPRITES = {"train": 737280}
_SMALLNORB = {"train": 24300, "test": 24300}
_FLOWERS = {"train": 1020, "validation": 1020, "test": 6149}
_VTAB1K = (
    _vtab("cifar100", "cifar(num_classes=100)", "natural", 100, "cifar100:3.*.*",
          {"train": 50000, "test": 10000}, "train[45000:45200]", pool="train[:45000]",
          sweeps={10000: ("train[:10000]", "train[45000:47500]")}),
    _vtab("caltech101", "caltech101", "natural", 102, "caltech101:3.*.*",
          {"train": 3060, "test": 6084}, "train[90%:+200]", pool="train[:90%]",
          sweeps={2000: ("train[:2000]", "train[70%:+800]")}),
    _vtab("dtd", "dtd", "natural", 47, "dtd:3.*.*",
          {"train": 1880, "validation": 1880, "test": 1880}, "validation[:200]",
          sweeps={1000: ("train[:1000]", "validation[:1000]")}),
    _vtab("oxford_flowers102", "oxford_flowers102", "natural", 102, "oxford_flowers102:2.*.*",
          _FLOWERS, "validation[:200]"),
    _vtab("oxford_iiit_pet", "oxford_iiit_pet", "natural", 37, "oxford_iiit_pet:3.*.*",
          {"train": 3680, "test": 3669}, "train[80%:+200]", pool="train[:80%]",
          sweeps={2400: ("train[:2400]", "train[80%:+600]")}),
    _vtab("svhn", "svhn", "natural", 10, "svhn_cropped:3.*.*", {"train": 73257, "test": 26032},
          "train[90%:+200]", pool="train[:90%]",
          sweeps={10000: ("train[:10000]", "train[90%:+2000]")}),
    _vtab("sun397", "sun397", "natural", 397, "sun397/tfds:4.*.*",
          {"train": 76128, "validation": 10875, "test": 21750}, "validation[:200]",
          sweeps={10000: ("train[:10000]", "validation[:10000]")}),
    _vtab("patch_camelyon", "patch_camelyon", "specialized", 2, "patch_camelyon:2.*.*",
          {"train": 262144, "validation": 32768, "test": 32768}, "validation[:200]",
          sweeps={10000: ("train[:10000]", "validation[:2500]")}),
    _vtab("eurosat", "eurosat", "specialized", 10, "eurosat/rgb:2.*.*", {"train": 27000},
          "train[60%:+200]", test="train[80%:]", pool="train[:60%]"),
    _vtab("resisc45", "resisc45", "specialized", 45, "resisc45:3.*.*", {"train": 31500},
          "train[60%:+200]", test="train[80%:]", pool="train[:60%]"),
    _vtab("diabetic_retinopathy", 'diabetic_retinopathy(config="btgraham-300")', "specialized", 5,
          "diabetic_retinopathy_detection/btgraham-300:3.*.*",
          {"train": 35126, "validation": 10906, "test": 42670}, "validation[:200]"),
    _vtab("clevr_count", 'clevr(task="count_all")', "structured", 8, "clevr:3.*.*", _CLEVR,
          "train[63000:63200]", test="validation", label="clevr_count", pool="train[:63000]"),
    _vtab("clevr_distance", 'clevr(task="closest_object_distance")', "structured", 6, "clevr:3.*.*",
          _CLEVR, "train[63000:63200]", test="validation", label="clevr_distance",
          pool="train[:63000]"),
    _vtab("dmlab", "dmlab", "structured", 6, "dmlab:2.0.1",
          {"train": 65550, "validation": 22628, "test": 22735}, "validation[:200]"),
    _vtab("kitti_distance", 'kitti(task="closest_vehicle_distance")', "structured", 4,
          "kitti:3.2.0", {"train": 6347, "validation": 423, "test": 711},       # VPT's version
          "validation[:200]", label="kitti_distance"),
    _vtab("dsprites_location",
          'dsprites(predicted_attribute="label_x_position",num_classes=16)', "structured", 16,
          "dsprites:2.*.*", _DSPRITES, "train[80%:+200]", test="train[90%:]",
          label="dsprites_location", pool="train[:80%]"),
    _vtab("dsprites_orientation",
          'dsprites(predicted_attribute="label_orientation",num_classes=16)', "structured", 16,
          "dsprites:2.*.*", _DSPRITES, "train[80%:+200]", test="train[90%:]",
          label="dsprites_orientation", pool="train[:80%]"),
    _vtab("smallnorb_azimuth", 'smallnorb(predicted_attribute="label_azimuth")', "structured", 18,
          "smallnorb:2.*.*", _SMALLNORB, "test[:200]", test="test[50%:]", label="label_azimuth"),
    _vtab("smallnorb_elevation", 'smallnorb(predicted_attribute="label_elevation")', "structured",
          9, "smallnorb:2.*.*", _SMALLNORB, "test[:200]", test="test[50%:]",
          label="label_elevation"),
)


def _fgvc(slug, name, classes, source, sizes=None, train="train[:90%]", val="train[90%:]"):
    splits = {"train": train, "val": val, "test": "test"}
    return TaskSpec(slug, name, "fgvc", classes, source, MappingProxyType(splits), pool=train,
                    augment=Augment(), suite="fgvc", source_sizes=MappingProxyType(sizes or {}))


# FGVC (the paper's Table 19): full training sets, val carved from train (deterministic slices;
# VPT's released json splits are not used). The final model trains on train only, as VPT's
# tune_fgvc.py / train.py do for non-VTAB data.
_FGVC = (
    _fgvc("cub200", "CUB-200-2011", 200, "tfds:caltech_birds2011", {"train": 5994, "test": 5794}),
    _fgvc("oxford_flowers", "Oxford Flowers", 102, "tfds:oxford_flowers102", _FLOWERS,
          train="train", val="validation"),
    _fgvc("stanford_dogs", "Stanford Dogs", 120, "tfds:stanford_dogs",
          {"train": 12000, "test": 8580}),
    _fgvc("stanford_cars", "Stanford Cars", 196, "tfds:cars196", {"train": 8144, "test": 8041}),
    _fgvc("nabirds", "NABirds", 555, "folder:nabirds"),
)

# The offline demo suite: 32x32 images made on this machine, no download (see tasks/demo.py).
_DEMO = (
    _demo("photos", "natural", 6),            # which held-out photograph a crop comes from
    _demo("photo_regions", "natural", 16),    # which quadrant of which held-out photograph
    _demo("digits", "specialized", 10),       # scikit-learn's real handwritten digits
    _demo("microscopy", "specialized", 4),    # crops of retina / histology / cell images
    _demo("count", "structured", 6),          # how many objects (1..6)
    _demo("sprite_location", "structured", 8),     # x position of one sprite, 8 bins
    _demo("sprite_orientation", "structured", 8),  # orientation of one bar, 8 bins
)
# One task per group with a pool of 4,000 training images, for `demo-scale` (Figure 4 on the demo)
DEMO_SCALE_SIZES = (100, 400, 1600, 3200)
_DEMO_SCALE = tuple(_demo(f"{slug}_scale", group, classes, sizes=DEMO_SCALE_SIZES,
                          suite="demo-scale")
                    for slug, group, classes in (("photos", "natural", 6),
                                                 ("microscopy", "specialized", 4),
                                                 ("count", "structured", 6)))
# Upstream data the demo backbone is pretrained on: which quadrant of which of 10 other
# photographs a crop comes from (40 classes).
UPSTREAM = TaskSpec("upstream", "demo/upstream", "upstream", 40, "demo:upstream",
                    MappingProxyType({"train": "train", "val": "test"}))
# The pretraining images the paper's FID compares each task with (P:109-111): a sample of
# ImageNet the user supplies as an image folder (`DIR/imagenet_sample/train.txt`, lines
# `<image path> <class id>`; the class is not used). `python -m analysis fid` takes it as the
# reference for a study without an upstream pretraining of its own.
IMAGENET_SAMPLE = TaskSpec("imagenet_sample", "ImageNet sample (FID reference)", "upstream",
                           21843, "folder:imagenet_sample", MappingProxyType({"train": "train"}))

TASKS: Mapping[str, TaskSpec] = MappingProxyType(
    {t.slug: t for t in (*_VTAB1K, *_FGVC, *_DEMO, *_DEMO_SCALE, UPSTREAM, IMAGENET_SAMPLE)})


def _suites() -> Mapping[str, tuple[str, ...]]:
    suites: dict[str, tuple[str, ...]] = {}
    for task in TASKS.values():
        if task.suite:
            suites[task.suite] = (*suites.get(task.suite, ()), task.slug)
    return MappingProxyType(suites)


def _builder_sizes() -> Mapping[str, Mapping[str, int]]:
    """Each TFDS builder's split sizes (its name without the version), from its tasks' rows,
    which must agree."""
    sizes: dict[str, Mapping[str, int]] = {}
    for task in TASKS.values():
        kind, _, builder = task.source.partition(":")
        if kind == "tfds":
            builder = builder.split(":")[0]
            if sizes.setdefault(builder, task.source_sizes) != task.source_sizes:
                raise ValueError(f"tasks on TFDS builder {builder} give different split sizes")
    return MappingProxyType(sizes)


SUITES = _suites()                  # suite -> its tasks, in the table's order
SOURCE_SIZES = _builder_sizes()     # TFDS builder -> its split sizes
SWEEP_SIZES = (400, 800, 5000, 10000, 20000)


ONE_SHOT = ("train1shot", "val1shot", "train1shotval1shot")


def get_task(slug: str, cache_dir: str | Path | None = None) -> TaskSpec:
    """The built-in task `slug`, else the one `python -m tasks import` made under that name in
    `cache_dir` (default: the cache VPT_CACHE_DIR names, else ./cache)."""
    if slug in TASKS:
        return TASKS[slug]
    found = imported_task(slug, cache_dir)
    if found is None:
        where = cache_dir or default_cache_dir()
        raise UnknownName("task", slug, [*TASKS, *imported_slugs(where)],
                          f"; imported tasks are looked up in {Path(where).absolute()}")
    return found


def imported_task(slug: str, cache_dir: str | Path | None = None) -> TaskSpec | None:
    """The table row an import wrote into its task's manifest, or None."""
    path = task_dir(cache_dir or default_cache_dir(), slug) / MANIFEST
    try:
        return _imported_row(str(path.resolve()), path.stat().st_mtime_ns)
    except (FileNotFoundError, NotADirectoryError):
        return None


@functools.lru_cache(maxsize=64)
def _imported_row(path: str, mtime_ns: int) -> TaskSpec | None:
    row = json.loads(Path(path).read_text()).get("task_spec")
    if row is None:                                  # a built-in task's cache
        return None
    return TaskSpec(row["slug"], row["name"], row["group"], row["num_classes"], row["source"],
                    MappingProxyType(dict(row["splits"])), label="imported")


def imported_slugs(cache_dir: str | Path | None = None) -> list[str]:
    """The names of the tasks imported into a cache."""
    root = task_dir(cache_dir or default_cache_dir(), "x").parent
    return sorted(folder.name for folder in root.glob("*") if not folder.name.startswith(".")
                  and folder.name not in TASKS and imported_task(folder.name, cache_dir))


def tasks_in_suite(suite: str) -> tuple[str, ...]:
    try:
        return SUITES[suite]
    except KeyError:
        raise UnknownName("task suite", suite, SUITES) from None
