"""`python -m tasks import`: a folder or CSV of the user's own small images (made here with
Pillow) becomes a task every study finds by name: splits stratified, seeded and disjoint by
content hash, images decoded whatever their mode, each kind of bad input one line, refusals one
`error:` line with nothing left in the cache, and a rerun after a fix that works."""
from __future__ import annotations

import hashlib
import io
import json
import os
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from common.errors import StudyInputError, UnknownName
from tasks import get_task, load_split
from tasks.__main__ import main
from tasks.cache import read_manifest, task_dir
from tasks.importer import ImportOptions, decode, plan_splits
from tasks.splits import setting_splits, supports

COLOURS = {"cat": (220, 30, 30), "dog": (30, 220, 30), "eel": (30, 30, 220)}


def png(colour, seed: int, size=(12, 10), mode="RGB") -> bytes:
    """A small image of one colour with a little seeded noise (so every file has its own bytes)."""
    noise = np.random.default_rng(seed).integers(-8, 9, (size[1], size[0], 3))
    pixels = np.clip(np.array(colour) + noise, 0, 255).astype(np.uint8)
    out = io.BytesIO()
    Image.fromarray(pixels).convert(mode).save(out, "PNG")
    return out.getvalue()


def image_folder(root: Path, counts: dict[str, int]) -> Path:
    for label, count in counts.items():
        (root / label).mkdir(parents=True, exist_ok=True)
        for i in range(count):
            (root / label / f"{i:03d}.png").write_bytes(png(COLOURS[label],
                                                            zlib.crc32(f"{label}{i}".encode())))
    return root


@pytest.fixture
def cli(capsys):
    """Run `python -m tasks ARGS` in this process: (exit status, stdout, stderr lines)."""
    def run(*argv):
        status = main([str(a) for a in argv])
        out, err = capsys.readouterr()
        return status, out, [line for line in err.splitlines()       # less the progress bar
                             if line.strip() and not line.startswith("import:")]
    return run


def small(data, cache, *extra):
    """The import arguments of a small task: 32 px, 12 training images."""
    return ("import", "mine", "--from-folder", data, "--cache-dir", cache, "--image-size", 32,
            "--train-size", 12, *extra)


def leftovers(cache: Path) -> list[str]:
    """What is in the cache's task folder besides lock files."""
    folder = cache / "tasks"
    return sorted(p.name for p in folder.iterdir() if not p.name.endswith(".lock")) \
        if folder.exists() else []


# --- a folder import, then the cache as a study reads it ------------------------------------

def test_folder_import_then_load_split_gives_the_images_of_each_class(tmp_path, cli):
    data = image_folder(tmp_path / "data", {"cat": 12, "dog": 12, "eel": 12})
    status, out, err = cli(*small(data, tmp_path / "cache"))
    assert status == 0 and err == [], err
    assert out.startswith("imported mine: 3 classes")
    manifest = read_manifest(tmp_path / "cache", "mine")
    assert manifest["classes"] == ["cat", "dog", "eel"]
    counts = {split: entry["count"] for split, entry in manifest["splits"].items()}
    assert counts == {"train12": 12, "val3": 3, "train12val3": 15, "test": 7}  # 36 x 0.2; 12 / 4
    for split, count in counts.items():
        images, labels = load_split(tmp_path / "cache", "mine", split)
        assert images.shape == (count, 32, 32, 3) and images.dtype == np.uint8
        # each image's colour says its class: the labels follow the folders
        colour = np.array(list(COLOURS.values()))
        nearest = np.abs(images.reshape(count, -1, 3).mean(1)[:, None] - colour).sum(-1).argmin(1)
        np.testing.assert_array_equal(nearest, labels)


def test_splits_are_stratified_seeded_and_disjoint_by_content(tmp_path, cli):
    data = image_folder(tmp_path / "data", {"cat": 24, "dog": 12, "eel": 12})
    assert cli(*small(data, tmp_path / "a"))[0] == 0
    assert cli(*small(data, tmp_path / "b"))[0] == 0
    assert cli(*small(data, tmp_path / "c", "--seed", 1))[0] == 0
    manifest = read_manifest(tmp_path / "a", "mine")
    files = json.loads((task_dir(tmp_path / "a", "mine") / "files.json").read_text())
    splits = manifest["splits"]
    parts = {name: set(splits[name]["indices"]) for name in ("train12", "val3", "test")}
    hashes = {name: {files[i]["sha256"] for i in part} for name, part in parts.items()}
    assert not (hashes["train12"] & hashes["val3"] or hashes["train12"] & hashes["test"]
                or hashes["val3"] & hashes["test"])
    assert set(splits["train12val3"]["indices"]) == parts["train12"] | parts["val3"]
    # stratified: cat holds half the images, so half of train and of test (10 of 48 -> 5 cats)
    train_labels = [files[i]["label"] for i in parts["train12"]]
    assert train_labels.count(0) == 6 and train_labels.count(1) == train_labels.count(2) == 3
    assert [files[i]["label"] for i in parts["test"]].count(0) == 5
    for name, entry in splits.items():           # the digest is of the split's image hashes
        rows = [files[i]["sha256"] for i in entry["indices"]]
        assert entry["digest"] == hashlib.sha256("\n".join(rows).encode()).hexdigest()
    same = read_manifest(tmp_path / "b", "mine")["splits"]
    other = read_manifest(tmp_path / "c", "mine")["splits"]
    assert all(same[s]["indices"] == splits[s]["indices"] for s in splits)
    assert any(other[s]["indices"] != splits[s]["indices"] for s in splits)


def test_default_splits_are_vtab1k_and_val_fraction_sets_val():
    labels = np.repeat(np.arange(4), 400)                   # 1,600 images of 4 classes
    plan = plan_splits(labels, [""] * len(labels), list("abcd"), ImportOptions())
    assert {name: len(p) for name, (p, _) in plan.items()} == {
        "train800": 800, "val200": 200, "train800val200": 1000, "test": 320}
    assert all(np.bincount(labels[plan[name][0]]).tolist() == [n // 4] * 4
               for name, n in (("train800", 800), ("val200", 200), ("test", 320)))
    plan = plan_splits(labels, [""] * len(labels), list("abcd"),
                       ImportOptions(train_size=300, val_fraction=0.5))
    assert list(plan) == ["train300", "val300", "train300val300", "test"]


def test_an_imported_task_answers_a_study_data_setting_with_its_own_split_names(tmp_path, cli):
    data = image_folder(tmp_path / "data", {"cat": 16, "dog": 16})
    assert cli(*small(data, tmp_path / "cache", "--val-fraction", 0.5))[0] == 0
    task = get_task("mine", tmp_path / "cache")
    assert supports(task, "12") and not supports(task, "800")
    assert setting_splits("12", task) == (("train12", "val12"), ("train12val12", "test"))


# --- a CSV import --------------------------------------------------------------------------

def write_rows(path: Path, rows) -> Path:
    path.write_text("".join(",".join(map(str, row)) + "\n" for row in rows), encoding="utf-8")
    return path


def test_csv_import_keeps_its_own_split_column(tmp_path, cli):
    data = image_folder(tmp_path / "imgs", {"cat": 8, "dog": 8})
    rows = [("path", "label", "split")]
    for label in ("cat", "dog"):
        rows += [(f"imgs/{label}/{i:03d}.png", label, "train" if i < 5 else "val" if i < 6
                  else "test") for i in range(8)]
    table = write_rows(tmp_path / "list.csv", rows)
    status, out, err = cli("import", "mine", "--from-csv", table, "--cache-dir",
                           tmp_path / "cache", "--image-size", 32)
    assert status == 0 and err == [], err
    manifest = read_manifest(tmp_path / "cache", "mine")
    assert {s: e["count"] for s, e in manifest["splits"].items()} == {
        "train10": 10, "val2": 2, "train10val2": 12, "test": 4}
    files = json.loads((task_dir(tmp_path / "cache", "mine") / "files.json").read_text())
    assert sorted(files[i]["path"] for i in manifest["splits"]["test"]["indices"]) == [
        f"imgs/{label}/{i:03d}.png" for label in ("cat", "dog") for i in (6, 7)]
    assert manifest["splits_hold"]["val2"] == "the CSV's val rows"
    assert data.exists()


def test_csv_without_val_and_test_rows_has_them_carved_from_train(tmp_path, cli):
    image_folder(tmp_path, {"cat": 10, "dog": 10})
    table = write_rows(tmp_path / "list.csv", [(f"{label}/{i:03d}.png", label, "train")
                                               for label in ("cat", "dog") for i in range(10)])
    assert cli("import", "mine", "--from-csv", table, "--cache-dir", tmp_path / "cache",
               "--image-size", 32)[0] == 0
    counts = {s: e["count"] for s, e in read_manifest(tmp_path / "cache", "mine")["splits"].items()}
    assert counts == {"train13": 13, "val3": 3, "train13val3": 16, "test": 4}


def test_csv_rows_of_missing_files_are_one_line_and_a_class_without_train_rows_refused(
        tmp_path, cli):
    image_folder(tmp_path, {"cat": 6, "dog": 6})
    rows = [(f"{label}/{i:03d}.png", label, "train") for label in ("cat", "dog") for i in range(6)]
    table = write_rows(tmp_path / "list.csv", [*rows, ("cat/nope.png", "cat", "train")])
    status, _, err = cli("import", "mine", "--from-csv", table, "--cache-dir", tmp_path / "c",
                         "--image-size", 32)
    assert status == 0 and err == ["skipped 1 missing file: cat/nope.png"]
    rows = [(path, label, "test" if label == "dog" else split) for path, label, split in rows]
    table = write_rows(tmp_path / "list.csv", rows)
    status, _, err = cli("import", "other", "--from-csv", table, "--cache-dir", tmp_path / "c")
    assert status == 2 and err == ["error: 1 class has fewer than 2 rows marked train in the "
                                   "CSV (one for each split drawn from them): 'dog' (0); add "
                                   "images or leave the class out"]


@pytest.mark.parametrize("escape", ["../outside.png", "ABSOLUTE", "link.png"])
def test_csv_paths_outside_the_root_are_refused(tmp_path, cli, escape):
    root = image_folder(tmp_path / "root", {"cat": 5, "dog": 5})
    (tmp_path / "outside.png").write_bytes(png(COLOURS["cat"], 99))
    (root / "link.png").symlink_to(tmp_path / "outside.png")
    escape = str(tmp_path / "outside.png") if escape == "ABSOLUTE" else escape
    rows = [(f"{label}/{i:03d}.png", label) for label in ("cat", "dog") for i in range(5)]
    table = write_rows(root / "list.csv", [*rows, (escape, "cat")])
    status, _, err = cli("import", "mine", "--from-csv", table, "--cache-dir", tmp_path / "c")
    assert status == 2 and len(err) == 1
    assert err[0].startswith("error: 1 path resolves outside the root") and escape in err[0]
    assert leftovers(tmp_path / "c") == []


def test_a_link_out_of_an_imported_folder_is_refused(tmp_path, cli):
    data = image_folder(tmp_path / "data", {"cat": 5, "dog": 5})
    (tmp_path / "secret.png").write_bytes(png(COLOURS["cat"], 5))
    (data / "cat" / "innocent.png").symlink_to(tmp_path / "secret.png")
    status, _, err = cli(*small(data, tmp_path / "cache", "--train-size", 2))
    assert status == 2 and err == [f"error: 1 path resolves outside the root {data}: "
                                   f"cat/innocent.png (move the files under it, or name a wider "
                                   f"--root)"]
    assert leftovers(tmp_path / "cache") == []


@pytest.mark.parametrize("text, message", [
    (b"path,label\na.png\n", "list.csv:2: expected 'path,label[,split]'"),
    (b"path,label\na.png,cat,holdout\n", "list.csv:2: split 'holdout' is not one of train, val"),
    (b"a.png,cat,train\nb.png,dog\n", "some rows name a split and others do not"),
    (b"caf\xe9.png,cat\n", "list.csv is not UTF-8 text"),
])
def test_malformed_csv_rows_are_refused_with_their_line(tmp_path, cli, text, message):
    table = tmp_path / "list.csv"
    table.write_bytes(text)
    status, _, err = cli("import", "mine", "--from-csv", table, "--cache-dir", tmp_path / "c")
    assert status == 2 and len(err) == 1 and message in err[0], err


# --- bad files: one line per kind ----------------------------------------------------------

def bomb() -> bytes:
    """A PNG header claiming 20000 x 20000 pixels (400 million), with no image data."""
    def chunk(kind: bytes, body: bytes) -> bytes:
        return (struct.pack(">I", len(body)) + kind + body
                + struct.pack(">I", zlib.crc32(kind + body)))
    header = struct.pack(">IIBBBBB", 20000, 20000, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IEND", b"")


def test_each_kind_of_bad_file_is_one_summary_line_and_the_rest_imports(tmp_path, cli):
    data = image_folder(tmp_path / "data", {"cat": 6, "dog": 6})
    good = png(COLOURS["cat"], 1234)
    (data / "cat" / "a.png").write_bytes(good[:len(good) // 2])            # truncated
    (data / "dog" / "b.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")  # corrupt
    (data / "dog" / "notes.txt").write_text("not an image")
    (data / "dog" / "huge.png").write_bytes(bomb())
    (data / "cat" / "copy.png").write_bytes((data / "cat" / "000.png").read_bytes())
    (data / "dog" / "cat.png").write_bytes((data / "cat" / "001.png").read_bytes())
    (data / "empty").mkdir()
    (data / "cat" / "café_猫.png").write_bytes(png(COLOURS["cat"], 77))
    (data / "cat" / os.fsdecode(b"caf\xe9.png")).write_bytes(png(COLOURS["cat"], 78))
    status, out, err = cli(*small(data, tmp_path / "cache", "--train-size", 6))
    assert status == 0, err
    assert sorted(err) == sorted([
        "ignored 1 empty class folder: empty/",
        "skipped 2 corrupt or truncated files: cat/a.png, dog/b.jpg",
        "skipped 1 non-image file: dog/notes.txt",
        "refused 1 decompression bomb (over 89,478,485 pixels, Pillow's MAX_IMAGE_PIXELS): "
        "dog/huge.png",
        "dropped 1 duplicate file (the same bytes as the kept one named after =): "
        "cat/copy.png = cat/000.png",
        "dropped 2 files whose identical copies carry different labels: cat/001.png (cat), "
        "dog/cat.png (dog)"])
    files = json.loads((task_dir(tmp_path / "cache", "mine") / "files.json").read_text())
    assert {"cat/café_猫.png", "cat/caf\\xe9.png"} <= {f["path"] for f in files}
    assert len(files) == 6 + 6 - 1 + 2          # 12 made, one pair of copies dropped, 2 named
    assert read_manifest(tmp_path / "cache", "mine")["skipped"]["refused decompression bombs " 
                                                               "(over 89,478,485 pixels, "
                                                               "Pillow's MAX_IMAGE_PIXELS)"] == 1


def test_max_pixels_refuses_images_over_it_without_decoding(tmp_path, cli):
    data = image_folder(tmp_path / "data", {"cat": 5, "dog": 5})
    (data / "cat" / "big.png").write_bytes(png(COLOURS["cat"], 5, size=(40, 40)))
    status, _, err = cli(*small(data, tmp_path / "cache", "--train-size", 2, "--max-pixels",
                                1000))
    assert status == 0 and err == ["refused 1 decompression bomb (over 1,000 pixels, Pillow's "
                                   "MAX_IMAGE_PIXELS): cat/big.png"]
    assert Image.MAX_IMAGE_PIXELS == 89478485           # restored


def encoded(image: Image.Image, kind: str = "PNG", **options) -> bytes:
    out = io.BytesIO()
    image.save(out, kind, **options)
    return out.getvalue()


def test_every_image_mode_decodes_to_rgb_and_exif_rotation_is_applied():
    rgb = Image.new("RGB", (6, 4), (200, 100, 50))
    for mode in ("L", "P", "RGBA", "LA", "1", "CMYK"):
        decoded = decode(encoded(rgb.convert(mode), "JPEG" if mode == "CMYK" else "PNG"))
        assert decoded.shape == (4, 6, 3) and decoded.dtype == np.uint8, mode
    assert (decode(encoded(rgb.convert("RGBA"))) == (200, 100, 50)).all()
    sixteen = Image.fromarray(np.array([[0, 257 * 100, 65535]], dtype=np.uint16))
    assert sixteen.mode == "I;16"
    np.testing.assert_array_equal(decode(encoded(sixteen))[0, :, 0], [0, 100, 255])
    exif = Image.Exif()
    exif[0x0112] = 6                                      # orientation: rotate 90 clockwise
    rotated = decode(encoded(rgb, "JPEG", exif=exif.tobytes()))
    assert rotated.shape == (6, 4, 3)


# --- refusals: one error line, nothing in the cache, and a rerun after the fix ------------

@pytest.mark.parametrize("counts, extra, message", [
    ({"cat": 8}, (), "only one class ('cat') has usable images"),
    ({"cat": 8, "dog": 2}, (), "1 class has fewer than 3 images (one for each split drawn "
                               "from them): 'dog' (2)"),
    ({"cat": 8, "dog": 8}, ("--train-size", 20), "train 20 + val 5 need 25 images"),
    ({"cat": 8, "dog": 8}, ("--train-size", 1), "--train-size 1 is smaller than the 2 classes"),
])
def test_unusable_input_is_one_error_line_and_leaves_nothing(tmp_path, cli, counts, extra,
                                                              message):
    data = image_folder(tmp_path / "data", counts)
    status, _, err = cli(*small(data, tmp_path / "cache"), *extra)
    assert status == 2 and err[-1].startswith("error: ") and message in err[-1], err
    assert leftovers(tmp_path / "cache") == []


def test_nothing_usable_is_refused(tmp_path, cli):
    (tmp_path / "data" / "cat").mkdir(parents=True)
    (tmp_path / "data" / "cat" / "x.txt").write_text("no")
    status, _, err = cli(*small(tmp_path / "data", tmp_path / "cache"))
    assert status == 2 and err == ["skipped 1 non-image file: cat/x.txt",
                                   "ignored 1 class without a usable image: cat",
                                   "error: no usable image: nothing to import"]


def test_a_rerun_after_a_failure_works_and_force_replaces(tmp_path, cli):
    data = image_folder(tmp_path / "data", {"cat": 8})
    cache = tmp_path / "cache"
    assert cli(*small(data, cache))[0] == 2
    (cache / "tasks" / ".mine.import-1").mkdir()       # what a killed import would leave
    assert leftovers(cache) == [".mine.import-1"]
    image_folder(data, {"dog": 8})
    status, _, err = cli(*small(data, cache, "--train-size", 4))
    assert status == 0 and leftovers(cache) == ["mine"]
    status, _, err = cli(*small(data, cache, "--train-size", 4))
    assert status == 2 and err == [f"error: task 'mine' is already in {cache / 'tasks'}; pass "
                                   f"--force to replace it"]
    image_folder(data, {"eel": 8})
    assert cli(*small(data, cache, "--train-size", 4, "--force"))[0] == 0
    assert read_manifest(cache, "mine")["num_classes"] == 3 and leftovers(cache) == ["mine"]


@pytest.mark.parametrize("name, message", [
    ("cifar100", "'cifar100' is a built-in task"), ("../x", "task name '../x' must be")])
def test_names_that_are_taken_or_not_names_are_refused(tmp_path, cli, name, message):
    data = image_folder(tmp_path / "data", {"cat": 5, "dog": 5})
    status, _, err = cli("import", name, "--from-folder", data, "--cache-dir", tmp_path / "c")
    assert status == 2 and len(err) == 1 and message in err[0]


# --- studies find it ---------------------------------------------------------------------

def test_get_task_finds_an_imported_task_by_name_from_the_cache(tmp_path, cli, monkeypatch):
    data = image_folder(tmp_path / "data", {"cat": 8, "dog": 8})
    cache = tmp_path / "cache"
    assert cli(*small(data, cache, "--train-size", 4, "--group", "specialized"))[0] == 0
    monkeypatch.setenv("VPT_CACHE_DIR", str(cache))
    task = get_task("mine")
    assert (task.slug, task.group, task.num_classes) == ("mine", "specialized", 2)
    assert task.source == f"import:folder:{data}"
    assert set(task.splits) == {"train4", "val1", "train4val1", "test"}
    status, out, _ = cli("list", "--cache-dir", cache)
    assert out.splitlines()[-1].split() == ["mine", "specialized", "imported", "4"]
    monkeypatch.setenv("VPT_CACHE_DIR", str(tmp_path / "elsewhere"))
    with pytest.raises(UnknownName, match="imported tasks are looked up in .*elsewhere"):
        get_task("mine")
    with pytest.raises(StudyInputError, match="was imported"):
        from tasks.prepare import prepare
        prepare(get_task("mine", cache), cache, force=True)


def test_the_study_command_line_looks_up_imported_tasks_in_its_cache_dir(tmp_path,
                                                                        monkeypatch):
    from study.__main__ import main as study_main
    monkeypatch.setenv("VPT_CACHE_DIR", "elsewhere")           # restored after the test
    assert study_main(["run", "no-such-study", "--cache-dir", str(tmp_path / "c")]) == 2
    assert os.environ["VPT_CACHE_DIR"] == str(tmp_path / "c")


def test_a_study_checks_and_trains_on_an_imported_task(tmp_path, cli, monkeypatch):
    from search_spaces import PAPER
    from study.protocol import prepare_tasks
    from study.spec import StudySpec
    from tests.conftest import TINY_VIT, tiny_trial
    from trainables.trial import run_trial
    data = image_folder(tmp_path / "data", {"cat": 10, "dog": 10, "eel": 10})
    cache = tmp_path / "cache"
    assert cli(*small(data, cache))[0] == 0
    monkeypatch.setenv("VPT_CACHE_DIR", str(cache))
    spec = StudySpec(name="mine", tasks=("mine",), strategies=("linear",), backbones=(TINY_VIT,),
                     search_space=PAPER, settings=("12",), seeds=(42,))
    prepare_tasks(spec, str(cache), print)          # checksums, split names, 32 px images
    monkeypatch.delenv("VPT_CACHE_DIR")              # a worker knows the cache from its config
    reports = []
    run_trial(tiny_trial(str(cache), "linear", task="mine", train_split="train12",
                         eval_split="val3"), reports.append)
    assert reports[-1]["outcome"] == "finished" and reports[-1]["train_size"] == 12
