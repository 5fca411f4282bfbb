"""The task table as data, the demo generators, and the checksummed array cache."""
from __future__ import annotations

import numpy as np
import pytest

from search_spaces import PAPER, PAPER_AS_WRITTEN
from tasks import (SUITES, TASKS, ChecksumMismatch, TaskNotPrepared, get_task, is_prepared,
                   load_split, write_task)
from tasks import demo
from tasks.cache import read_manifest, task_dir
from common.errors import UnknownName

# Classes per VTAB-1k task as google-research/task_adaptation defines them.
VTAB_CLASSES = {"cifar100": 100, "caltech101": 102, "dtd": 47, "oxford_flowers102": 102,
                "oxford_iiit_pet": 37, "svhn": 10, "sun397": 397, "patch_camelyon": 2,
                "eurosat": 10, "resisc45": 45, "diabetic_retinopathy": 5, "clevr_count": 8,
                "clevr_distance": 6, "dmlab": 6, "kitti_distance": 4, "dsprites_location": 16,
                "dsprites_orientation": 16, "smallnorb_azimuth": 18, "smallnorb_elevation": 9}


def test_vtab1k_table_has_the_19_tasks_in_three_groups():
    suite = SUITES["vtab1k"]
    assert {slug: TASKS[slug].num_classes for slug in suite} == VTAB_CLASSES
    groups = [TASKS[slug].group for slug in suite]
    assert (groups.count("natural"), groups.count("specialized"),
            groups.count("structured")) == (7, 4, 8)
    for slug in suite:
        splits = TASKS[slug].splits
        assert set(splits) == {"train800", "val200", "train800val200", "test"}
        assert splits["train800val200"] == f"{splits['train800']}+{splits['val200']}"
        assert all(space.table("prompt_length").value(slug) >= 1
                   for space in (PAPER, PAPER_AS_WRITTEN))


def test_demo_suite_spans_the_three_groups():
    groups = {TASKS[slug].group for slug in SUITES["demo"]}
    assert groups == {"natural", "specialized", "structured"}
    assert len(SUITES["demo"]) >= 6


def test_unknown_task_lists_valid_names():
    with pytest.raises(UnknownName, match="unknown task 'cifar10'; valid: .*cifar100"):
        get_task("cifar10")


@pytest.mark.parametrize("slug", SUITES["demo"])
def test_demo_generators_are_deterministic_and_labelled_in_range(slug):
    first, second = demo.generate(slug), demo.generate(slug)
    task = get_task(slug)
    for pool in ("train", "test"):
        images, labels = first[pool]
        assert images.dtype == np.uint8 and images.shape[1:] == (32, 32, 3)
        np.testing.assert_array_equal(images, second[pool][0])
        np.testing.assert_array_equal(labels, second[pool][1])
        assert labels.min() >= 0 and labels.max() < task.num_classes
    assert len(first["train"][1]) >= 1000 and len(first["test"][1]) >= 200
    # every class occurs in the 800 training images
    assert len(np.unique(first["train"][1][:800])) == task.num_classes


def test_prepared_splits_have_protocol_sizes_and_are_disjoint_from_test(cache_dir):
    sizes = {split: len(load_split(cache_dir, "digits", split)[1])
             for split in ("train800", "val200", "train800val200", "test")}
    assert sizes["train800"] == 800 and sizes["val200"] == 200
    assert sizes["train800val200"] == 1000 and sizes["test"] == 797   # 1797 digits in all
    train = load_split(cache_dir, "digits", "train800val200")[0].reshape(1000, -1)
    test = load_split(cache_dir, "digits", "test")[0].reshape(797, -1)
    train_rows = {row.tobytes() for row in train}
    assert sum(row.tobytes() in train_rows for row in test) < 20   # digits has a few duplicates
    manifest = read_manifest(cache_dir, "digits")
    assert manifest["splits"]["test"]["shape"] == [32, 32, 3]
    assert len(manifest["splits"]["test"]["images"]["sha256"]) == 64


def test_cache_round_trip_and_checksum_mismatch(tmp_path):
    images = np.arange(2 * 4 * 4 * 3, dtype=np.uint8).reshape(2, 4, 4, 3)
    write_task(tmp_path, "roundtrip", {"train800": (images, np.array([0, 1]))}, num_classes=2)
    loaded, labels = load_split(tmp_path, "roundtrip", "train800")
    np.testing.assert_array_equal(loaded, images)
    assert labels.tolist() == [0, 1]

    write_task(tmp_path, "tampered", {"train800": (images, np.array([0, 1]))}, num_classes=2)
    path = task_dir(tmp_path, "tampered") / "train800.images.npy"
    data = bytearray(path.read_bytes())
    data[-1] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(ChecksumMismatch, match="checksum mismatch"):
        load_split(tmp_path, "tampered", "train800")


def test_half_written_task_reads_as_not_prepared_and_names_the_command(tmp_path):
    write_task(tmp_path, "half", {"train800": (np.zeros((1, 4, 4, 3)), np.array([0]))}, 1)
    (task_dir(tmp_path, "half") / "manifest.json").unlink()
    with pytest.raises(TaskNotPrepared, match="python -m tasks prepare half"):
        load_split(tmp_path, "half", "train800")


def test_labels_outside_the_class_range_are_refused(tmp_path):
    with pytest.raises(ValueError, match="labels outside"):
        write_task(tmp_path, "bad", {"train800": (np.zeros((1, 4, 4, 3)), np.array([3]))}, 2)
    assert not (task_dir(tmp_path, "bad") / "manifest.json").exists()


def test_prepare_takes_several_tasks_in_one_command(tmp_path, capsys):
    from tasks.__main__ import main
    assert main(["prepare", "digits", "sprite_location", "digits", "--cache-dir",
                 str(tmp_path)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split(":")[0] for line in lines] == ["[1/2] digits", "[2/2] sprite_location"]
    assert all(is_prepared(tmp_path, slug) for slug in ("digits", "sprite_location"))


def test_a_label_reads_as_what_it_means():
    from tasks.demo import meaning
    assert meaning("count", np.int64(4)) == "5 objects" and meaning("count", 0) == "1 object"
    assert meaning("count_scale", 2) == "3 objects"
    assert meaning("digits", 7) == "digit 7" and meaning("cifar100", 3) == "class 3"
    for slug in ("photos", "photo_regions", "microscopy", "sprite_location",
                 "sprite_orientation"):
        names = {meaning(slug, label) for label in range(get_task(slug).num_classes)}
        assert len(names) == get_task(slug).num_classes          # one meaning per class
