"""VTAB-1k and FGVC preparation against the real TFDS builders, offline: split strings resolved
against TFDS's split sizes, task_adaptation's label functions on examples with known answers,
class counts checked against each builder's own feature spec, and every builder prepared into the
cache from `tfds.testing.mock_data` (round trip, checksums), plus sweeps, one-shot and the
exported-folder import."""
from __future__ import annotations

import numpy as np
import pytest
import tensorflow_datasets as tfds
from PIL import Image

from common.errors import StudyInputError
from tasks import ChecksumMismatch, TASKS, SUITES, load_split
from tasks.cache import CacheError, read_manifest, task_dir, write_manifest
from tasks.folder_source import prepare_folder
from tasks.spec import ONE_SHOT, SOURCE_SIZES, sweep_split_names
from tasks.splits import (check_sweep, resolve_split, setting_splits, supported_sweeps,
                          sweep_holds, sweep_parts)
from tasks.tfds_source import (LABELS, builder_name, clevr_distance, even_sample, kitti_distance,
                               prepare_tfds)

TFDS_TASKS = [slug for slug in (*SUITES["vtab1k"], *SUITES["fgvc"])
              if TASKS[slug].source.startswith("tfds:")]
# VTAB-1k test-set sizes (task_adaptation, with TFDS's split sizes).
VTAB_TEST = {"cifar100": 10000, "caltech101": 6084, "dtd": 1880, "oxford_flowers102": 6149,
             "oxford_iiit_pet": 3669, "svhn": 26032, "sun397": 21750, "patch_camelyon": 32768,
             "eurosat": 5400, "resisc45": 6300, "diabetic_retinopathy": 42670,
             "clevr_count": 15000, "clevr_distance": 15000, "dmlab": 22735,
             "kitti_distance": 711, "dsprites_location": 73728, "dsprites_orientation": 73728,
             "smallnorb_azimuth": 12150, "smallnorb_elevation": 12150}


def _indices(expression, sizes):
    return {(name, i) for name, a, b in resolve_split(expression, sizes) for i in range(a, b)}


@pytest.mark.parametrize("slug", SUITES["vtab1k"])
def test_vtab_split_strings_give_800_200_and_the_test_set_disjointly(slug):
    task = TASKS[slug]
    sizes = SOURCE_SIZES[builder_name(task)[0]]
    train, val = _indices(task.splits["train800"], sizes), _indices(task.splits["val200"], sizes)
    test = _indices(task.splits["test"], sizes)
    assert (len(train), len(val), len(test)) == (800, 200, VTAB_TEST[slug])
    assert _indices(task.splits["train800val200"], sizes) == train | val
    assert not (train & val or train & test or val & test)
    pool = _indices(task.pool, sizes)
    assert train <= pool and not (pool & val) and not (pool & test)


def test_percent_and_relative_bounds_follow_task_adaptation():
    assert resolve_split("train[90%:+200]", {"train": 3060}) == [("train", 2754, 2954)]
    assert resolve_split("train+validation", {"train": 5, "validation": 3}) == \
        [("train", 0, 5), ("validation", 0, 3)]
    with pytest.raises(StudyInputError):
        resolve_split("train[:800]", {"train": 100})


def test_label_functions_on_examples_with_known_answers():
    clevr = {"objects": {"size": np.zeros(5), "pixel_coords": np.array(
        [[1, 2, 9.7], [3, 4, 8.7], [5, 6, 12.0], [0, 0, 11], [0, 0, 10.5]])}}
    assert LABELS["clevr_count"](clevr) == 2                # 5 objects - 3
    assert clevr_distance(clevr) == 2                      # 8.7 is in [8.5, 9)
    kitti = {"objects": {"type": np.array([3, 0, 1]),
                         "location": np.array([[0, 0, 5.0], [0, 0, 25.0], [0, 0, 12.0]])}}
    assert kitti_distance(kitti) == 1                      # nearest vehicle at 12 m: [8, 20)
    pedestrians_only = {"objects": {"type": np.array([3, 5]), "location": np.zeros((2, 3))}}
    assert kitti_distance(pedestrians_only) == 3           # no vehicle is its own class
    assert [LABELS["dsprites_location"]({"label_x_position": x}) for x in (0, 1, 2, 31)] == \
        [0, 0, 1, 15]
    assert [LABELS["dsprites_orientation"]({"label_orientation": o}) for o in (0, 2, 3, 39)] == \
        [0, 0, 1, 15]                                      # floor(o / 2.5)


def _class_feature(builder, task):
    feature = {"label": "label", "dsprites_location": "label_x_position",
               "dsprites_orientation": "label_orientation", "label_azimuth": "label_azimuth",
               "label_elevation": "label_elevation"}.get(task.label)
    return builder.info.features[feature] if feature else None


def _valid_objects(builder, split, decoders=None, **kwargs):
    """CLEVR / KITTI examples in the builder's real feature layout with consistent objects."""
    rng = np.random.default_rng(0)
    examples = []
    for _ in range(20):
        n = int(rng.integers(3, 11))
        image = rng.integers(0, 256, (40, 60, 3), dtype=np.uint8)
        if builder.name == "clevr":
            examples.append({"image": image, "objects": {
                "size": np.zeros(n, np.int64),
                "pixel_coords": np.c_[rng.uniform(0, 100, (n, 2)), rng.uniform(7, 14, n)]}})
        else:
            examples.append({"image": image, "objects": {
                "type": rng.integers(0, 8, n), "location": rng.uniform(-5, 60, (n, 3))}})
    return examples


@pytest.mark.parametrize("slug", TFDS_TASKS)
def test_every_tfds_builder_prepares_into_the_cache_from_mock_data(slug, tmp_path):
    task = TASKS[slug]
    name, _ = builder_name(task)
    objects = task.label in ("clevr_count", "clevr_distance", "kitti_distance")
    with tfds.testing.mock_data(num_examples=20, policy=tfds.testing.MockPolicy.USE_CODE,
                                as_data_source_fn=_valid_objects if objects else None):
        builder = tfds.builder(name)
        feature = _class_feature(builder, task)
        if feature is not None:       # the table's classes against the builder's own spec
            expected = {"dsprites_location": 32, "dsprites_orientation": 40}.get(task.label,
                                                                                task.num_classes)
            assert feature.num_classes == expected
        sizes = SOURCE_SIZES[name]
        train_source, val_source = (resolve_split(task.splits[s], sizes)[0][0]
                                    for s in list(task.splits)[:2])
        splits = {"a": f"{train_source}[:6]", "b": f"{val_source}[:3]",
                  "c": f"{'test' if 'test' in sizes else 'train'}[:4]"}
        size = task.augment.crop if task.augment else 16      # FGVC: VPT's 224 px crops
        prepare_tfds(task, None, tmp_path, image_size=size, splits=splits,
                     split_sizes={k: 20 for k in sizes}, progress=False)
    manifest = read_manifest(tmp_path, slug)
    assert manifest["tfds_builder"] == name and manifest["image_size"] == size
    images, labels = load_split(tmp_path, slug, "a")
    assert images.shape == (6, size, size, 3) and images.dtype == np.uint8
    assert labels.min() >= 0 and labels.max() < task.num_classes
    assert len(load_split(tmp_path, slug, "c")[1]) == 4


def test_a_corrupted_tfds_cache_is_refused(tmp_path):
    task = TASKS["svhn"]
    with tfds.testing.mock_data(num_examples=10, policy=tfds.testing.MockPolicy.USE_CODE):
        prepare_tfds(task, None, tmp_path, image_size=8, splits={"x": "train[:5]"},
                     split_sizes={"train": 10, "test": 10}, progress=False)
    path = task_dir(tmp_path, "svhn") / "x.images.npy"
    data = bytearray(path.read_bytes())
    data[-3] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(ChecksumMismatch):
        load_split(tmp_path, "svhn", "x")


def _prepare_svhn(cache, **kwargs):
    """svhn from 2,000 mock examples: train800 = train[:800], val200 = train[1800:2000], pool
    train[:1800]."""
    splits = {**TASKS["svhn"].splits, "test": "test[:4]"}
    with tfds.testing.mock_data(num_examples=2000, policy=tfds.testing.MockPolicy.USE_CODE):
        prepare_tfds(TASKS["svhn"], None, cache, image_size=8, splits=splits,
                     split_sizes={"train": 2000, "test": 2000}, progress=False, **kwargs)
    return read_manifest(cache, "svhn")


def test_a_size_sweep_never_touches_the_canonical_splits(tmp_path):
    plain = _prepare_svhn(tmp_path / "plain")
    swept = _prepare_svhn(tmp_path / "swept", sweep=(400, 800))
    for split in ("train800", "val200", "train800val200"):
        assert swept["splits"][split]["images"]["sha256"] == \
            plain["splits"][split]["images"]["sha256"]
        assert swept["splits"][split]["labels"]["sha256"] == \
            plain["splits"][split]["labels"]["sha256"]
        assert swept["splits_hold"][split] == TASKS["svhn"].splits[split]
    assert swept["sweep_sizes"] == [400, 800]
    assert "seeded 4:1 sample of train[:90%]" in swept["splits_hold"]["train400"]
    counts = {s: swept["splits"][s]["count"] for s in sweep_split_names(400)}
    assert counts == {"train400": 400, "val100": 100, "train400val100": 500}
    assert set(swept["splits"]) == set(swept["splits_hold"])       # every split is described
    # Table 5's two, and the 2000 slice the paper's code publishes (caltech.py:84-111)
    assert supported_sweeps(TASKS["caltech101"]) == (400, 800, 2000)


def _split_indices(parts):
    return {(name, int(i)) for name, indices in parts for i in indices}


def test_a_sweep_reads_the_paper_codes_own_slices_where_it_publishes_them():
    """VPT-or-FT src/data/vtab_datasets/cifar.py:88-112: train[:10000], val train[45000:47500];
    svhn.py:98-132 (5:1) and sun397.py:64-82 (1:1, from validation) likewise; elsewhere a seeded
    4:1 sample of the pool."""
    cifar, sizes = TASKS["cifar100"], SOURCE_SIZES["cifar100"]
    parts = {split: _split_indices(p) for split, p in sweep_parts(cifar, 10000, sizes).items()}
    assert list(parts) == ["train10000", "val2500", "train10000val2500"]
    assert parts["train10000"] == {("train", i) for i in range(10000)}
    assert parts["val2500"] == {("train", i) for i in range(45000, 47500)}
    assert parts["train10000val2500"] == parts["train10000"] | parts["val2500"]
    assert _indices(cifar.splits["train800"], sizes) <= parts["train10000"]   # first-N, as the
    assert _indices(cifar.splits["val200"], sizes) <= parts["val2500"]        # VTAB-1k splits
    svhn = sweep_parts(TASKS["svhn"], 10000, SOURCE_SIZES["svhn_cropped"])
    assert _split_indices(svhn["val2000"]) == {("train", i) for i in range(65931, 67931)}
    assert setting_splits("10000", TASKS["sun397"]) == (("train10000", "val10000"),
                                                        ("train10000val10000", "test"))
    sun = sweep_parts(TASKS["sun397"], 10000, SOURCE_SIZES["sun397/tfds"])
    assert _split_indices(sun["val10000"]) == {("validation", i) for i in range(10000)}
    seeded = {s: _split_indices(p) for s, p in sweep_parts(cifar, 5000, sizes).items()}
    assert [len(seeded[s]) for s in ("train5000", "val1250")] == [5000, 1250]
    assert not seeded["train5000"] & seeded["val1250"]
    assert seeded["train5000"] | seeded["val1250"] <= _indices(cifar.pool, sizes)
    assert seeded["train5000"] != {("train", i) for i in range(5000)}
    assert sweep_holds(cifar, 10000)["val2500"] == "train[45000:47500]"
    assert "seeded 4:1 sample of train[:45000]" in sweep_holds(cifar, 5000)["train5000"]


def test_a_cached_sweep_split_that_holds_other_examples_is_refused(tmp_path):
    cifar = TASKS["cifar100"]
    old = {"train10000": "train of a seeded 4:1 sample of train[:45000] (seed [0, 10000])"}
    task_dir(tmp_path, "cifar100").mkdir(parents=True)
    write_manifest(tmp_path, "cifar100", 100, {}, {"splits_hold": old})
    with pytest.raises(CacheError, match="prepare cifar100 --sweep 10000 --force"):
        check_sweep(tmp_path, cifar, 10000)
    write_manifest(tmp_path, "cifar100", 100, {}, {"splits_hold": sweep_holds(cifar, 10000)})
    check_sweep(tmp_path, cifar, 10000)
    check_sweep(tmp_path, cifar, 800)                  # VTAB-1k's own splits are not a sweep's


def _official_even_separate(labels, per_class):
    """VPT-or-FT src/data/datasets/tf_dataset.py:104-132, verbatim but for the images (their
    positions stand in for them)."""
    import collections
    import random
    random.seed(0)
    class_id_to_images = collections.defaultdict(list)
    for position, target in enumerate(labels):
        class_id_to_images[target].append(position)
    picked = []
    for class_id, images in class_id_to_images.items():
        picked += random.sample(images, min(len(images), per_class))
    return picked


@pytest.mark.parametrize("per_class", [1, 2])
def test_one_shot_sampling_is_the_paper_codes(per_class):
    labels = np.random.default_rng(3).integers(0, 7, 60).tolist()
    parts = [("train", np.arange(100, 130)), ("validation", np.arange(0, 30))]
    positions = [("train", i) for i in range(100, 130)] + [("validation", i) for i in range(30)]
    ours = [(name, int(i)) for name, idx in even_sample(parts, labels, per_class) for i in idx]
    assert ours == [positions[p] for p in _official_even_separate(labels, per_class)]


def test_one_shot_splits_lie_inside_train800_and_val200(tmp_path):
    manifest = _prepare_svhn(tmp_path, one_shot=True)
    counts = {s: manifest["splits"][s]["count"] for s in ONE_SHOT}
    assert counts == {"train1shot": 10, "val1shot": 10, "train1shotval1shot": 20}
    labels = load_split(tmp_path, "svhn", "train1shot")[1]
    assert sorted(labels.tolist()) == list(range(10))    # one image per class
    for split, inside in zip(ONE_SHOT, ("train800", "val200", "train800val200")):
        images = load_split(tmp_path, "svhn", split)[0]
        pool = {bytes(image) for image in load_split(tmp_path, "svhn", inside)[0]}
        assert all(bytes(image) in pool for image in images)
        assert inside in manifest["splits_hold"][split]


def test_exported_folder_import_records_the_jpeg_reencoding(tmp_path):
    task = TASKS["nabirds"]
    root = tmp_path / "export" / "nabirds"
    (root / "images").mkdir(parents=True)
    for split in task.splits:
        lines = []
        for i in range(3):
            path = root / "images" / f"{split}{i}.jpg"
            Image.fromarray(np.full((20, 30, 3), 40 * i, np.uint8)).save(path)
            lines.append(f"images/{path.name} {i}")
        (root / f"{split}.txt").write_text("\n".join(lines))
    prepare_folder(task, tmp_path / "export", tmp_path / "cache", image_size=224, progress=False)
    manifest = read_manifest(tmp_path / "cache", "nabirds")
    assert "JPEG-re-encoded" in manifest["encoding"]
    images, labels = load_split(tmp_path / "cache", "nabirds", "test")
    assert images.shape == (3, 224, 224, 3) and labels.tolist() == [0, 1, 2]
    assert load_split(tmp_path / "cache", "nabirds", "train")[0].shape == (3, 384, 384, 3)


VTAB1K_ORDER = (  # VTAB-1k's tasks in the paper's tables' order
    "cifar100", "caltech101", "dtd", "oxford_flowers102", "oxford_iiit_pet", "svhn", "sun397",
    "patch_camelyon", "eurosat", "resisc45", "diabetic_retinopathy", "clevr_count",
    "clevr_distance", "dmlab", "kitti_distance", "dsprites_location", "dsprites_orientation",
    "smallnorb_azimuth", "smallnorb_elevation")


def test_suites_and_builder_sizes_are_read_from_the_task_rows(monkeypatch):
    """A new TFDS task is one row: its suite and its builder's split sizes come from it, and
    two rows that disagree on a builder's sizes are refused."""
    import tasks.spec as spec
    from dataclasses import replace
    from types import MappingProxyType
    new = replace(TASKS["dtd"], slug="dtd_again", suite="mine",
                  source_sizes=MappingProxyType({"train": 1, "test": 1}))
    monkeypatch.setattr(spec, "TASKS", MappingProxyType({**TASKS, new.slug: new}))
    assert spec._suites()["mine"] == ("dtd_again",)
    assert spec._suites()["vtab1k"] == VTAB1K_ORDER
    with pytest.raises(ValueError, match="dtd give different split sizes"):
        spec._builder_sizes()
    monkeypatch.setattr(spec, "TASKS", MappingProxyType(
        {**TASKS, new.slug: replace(new, source_sizes=TASKS["dtd"].source_sizes)}))
    assert spec._builder_sizes() == SOURCE_SIZES

