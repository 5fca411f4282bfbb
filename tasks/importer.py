"""`python -m tasks import NAME`: a task made from the user's own images, from a folder with one
sub-folder per class or from a CSV of `path,label[,split]` rows. Every file is read once: its
sha256 finds byte-identical copies (one copy kept, the first in listing order; all copies
dropped where they carry different labels), Pillow decodes it (EXIF-rotated, converted to RGB,
16-bit grey scaled to 8 bits; over Pillow's MAX_IMAGE_PIXELS refused, not decoded) and it is
resized as the built-in VTAB tasks are (`tasks.views.resize`). The splits are VTAB-1k's by
default (a stratified, seeded held-out test share, then train800 and val200 from the rest), or
`--train-size` / `--val-fraction`, or the CSV's own split column. Each kind of problem is one
summary line; input that leaves no usable task is one `error:` line. The task is built in a
hidden folder beside its place and renamed into it when whole, so a failure leaves nothing;
its manifest holds the task's table row (`tasks.spec.get_task` finds it by slug), each split's
indices into `files.json` and a digest of its images' hashes."""
from __future__ import annotations

import contextlib
import csv
import dataclasses
import hashlib
import io
import json
import os
import re
import shutil
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from common.errors import StudyInputError, say
from common.files import exclusive
from common.openmp import one_thread
from tasks.cache import task_dir, write_manifest_into, write_split
from tasks.spec import TASKS, sweep_split_names
from tasks.views import INTERPOLATION, resize

SLUG = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,63}")
SPLIT_WORDS = {"train": "train", "val": "val", "validation": "val", "test": "test"}
IMPORT_GROUPS = ("natural", "specialized", "structured")
CHUNK = 256
SHOWN = 5                       # names a summary line shows before "and N more"


@dataclass(frozen=True)
class ImportOptions:
    train_size: int | None = None     # images in train; None: 800 (VTAB-1k), or the CSV's own
    val_fraction: float = 0.2         # val's share of train + val (4:1)
    test_fraction: float = 0.2        # the held-out test share where the user gives no test
    seed: int = 0
    image_size: int = 224
    group: str = "natural"            # the VTAB group its results are reported under
    max_pixels: int | None = None     # None: Pillow's MAX_IMAGE_PIXELS
    force: bool = False               # replace a task imported before under the same name

    def __post_init__(self):
        if self.train_size is not None and self.train_size < 1:
            raise StudyInputError(f"--train-size must be at least 1, got {self.train_size}")
        for flag, value in (("--val-fraction", self.val_fraction),
                            ("--test-fraction", self.test_fraction)):
            if not 0 < value < 1:
                raise StudyInputError(f"{flag} must be between 0 and 1, got {value}")
        if self.group not in IMPORT_GROUPS:
            raise StudyInputError(f"--group must be one of {', '.join(IMPORT_GROUPS)}")


@dataclass(frozen=True)
class Item:
    path: Path                  # where the file is
    name: str                   # as the user wrote it (relative to the root), printable
    label: str                  # class name
    split: str = ""             # the CSV's own split (train / val / test), else ""


def printable(text: str) -> str:
    """A file name as text, whatever bytes it had (undecodable ones as \\xNN)."""
    return os.fsencode(text).decode("utf-8", "backslashreplace")


class Problems:
    """What was skipped, by kind, each kind said in one line."""

    def __init__(self):
        self.kinds: dict[str, list[str]] = {}

    def add(self, kind: str, name: str) -> None:
        self.kinds.setdefault(kind, []).append(name)

    def report(self) -> None:
        for kind, names in self.kinds.items():
            more = f" and {len(names) - SHOWN} more" if len(names) > SHOWN else ""
            say(f"{kind.format(n=len(names), s='' if len(names) == 1 else 's')}: "
                f"{', '.join(names[:SHOWN])}{more}")

    def counts(self) -> dict[str, int]:
        return {" ".join(kind.format(n="", s="s").split()): len(names)
                for kind, names in self.kinds.items()}


NON_IMAGE = "skipped {n} non-image file{s}"
CORRUPT = "skipped {n} corrupt or truncated file{s}"
BOMB = "refused {n} decompression bomb{s} (over {limit} pixels, Pillow's MAX_IMAGE_PIXELS)"
UNREADABLE = "skipped {n} unreadable file{s}"
MISSING = "skipped {n} missing file{s}"
DUPLICATE = "dropped {n} duplicate file{s} (the same bytes as the kept one named after =)"
CONFLICT = "dropped {n} file{s} whose identical copies carry different labels"
EMPTY = "ignored {n} empty class folder{s}"
UNUSABLE = "ignored {n} class{s} without a usable image"
LOOSE = "skipped {n} file{s} outside the class folders"
HIDDEN = "skipped {n} hidden file{s} or folder{s}"
LINKED = "skipped {n} linked folder{s} (not followed)"


def list_folder(root: Path, problems: Problems) -> list[Item]:
    """One class per sub-folder of `root` (its files at any depth), in name order."""
    if not root.is_dir():
        raise StudyInputError(f"{root} is not a folder")
    items = []
    for entry in sorted(root.iterdir()):
        shown = printable(entry.name)
        if entry.name.startswith("."):
            problems.add(HIDDEN, shown)
        elif not entry.is_dir():
            problems.add(LOOSE, shown)
        else:
            found = list(_walk(entry, root, problems))
            if not found:
                problems.add(EMPTY, shown + "/")
            items += [Item(path, printable(str(path.relative_to(root))), entry.name)
                      for path in found]
    return items


def _walk(folder: Path, root: Path, problems: Problems) -> Iterator[Path]:
    for where, folders, files in os.walk(folder):
        here = Path(where)
        for name in sorted(folders):
            if name.startswith(".") or (here / name).is_symlink():
                problems.add(HIDDEN if name.startswith(".") else LINKED,
                             printable(str((here / name).relative_to(root))) + "/")
        folders[:] = sorted(n for n in folders
                            if not n.startswith(".") and not (here / n).is_symlink())
        for name in sorted(files):
            if name.startswith("."):
                problems.add(HIDDEN, printable(str((here / name).relative_to(root))))
            else:
                yield here / name


def list_csv(table: Path, root: Path) -> list[Item]:
    """The rows `path,label[,split]` of a UTF-8 CSV (an optional header `path,label[,split]`),
    paths relative to `root` (or absolute)."""
    try:
        text = table.read_bytes().decode("utf-8-sig")
    except FileNotFoundError:
        raise StudyInputError(f"{table} does not exist") from None
    except UnicodeDecodeError:
        raise StudyInputError(f"{table} is not UTF-8 text") from None
    items, rows = [], [(n, row) for n, row in enumerate(csv.reader(io.StringIO(text)), 1)
                       if any(cell.strip() for cell in row)]
    if rows and [c.strip().lower() for c in rows[0][1][:2]] == ["path", "label"]:
        rows = rows[1:]
    for number, row in rows:
        cells = [cell.strip() for cell in row]
        if len(cells) not in (2, 3) or not cells[0] or not cells[1]:
            raise StudyInputError(f"{table}:{number}: expected 'path,label[,split]', got "
                                  f"{','.join(row)!r}")
        split = cells[2].lower() if len(cells) == 3 else ""
        if split and split not in SPLIT_WORDS:
            raise StudyInputError(f"{table}:{number}: split '{cells[2]}' is not one of "
                                  f"train, val, test")
        items.append(Item(root / cells[0], cells[0], cells[1], SPLIT_WORDS.get(split, "")))
    if len({bool(item.split) for item in items}) > 1:
        raise StudyInputError(f"{table}: some rows name a split and others do not; give every "
                              f"row one, or none")
    return items


def check_inside(items: list[Item], root: Path, problems: Problems) -> list[Item]:
    """The items whose file exists; refuse the import if any resolves outside `root` (`..`, an
    absolute path elsewhere, a link out)."""
    inside, outside, real_root = [], [], root.resolve()
    for item in items:
        try:
            real = item.path.resolve(strict=True)
        except (FileNotFoundError, NotADirectoryError):
            real = item.path.resolve()
            if real.is_relative_to(real_root):
                problems.add(MISSING, item.name)
                continue
        except (OSError, RuntimeError):             # a link loop
            outside.append(item.name)
            continue
        if not real.is_relative_to(real_root):
            outside.append(item.name)
        elif not real.is_file():
            problems.add(NON_IMAGE, item.name)
        else:
            inside.append(item)
    if outside:
        raise StudyInputError(
            f"{len(outside)} path{'s resolve' if len(outside) > 1 else ' resolves'} outside "
            f"the root {root}: {', '.join(outside[:SHOWN])}"
            f"{' ...' if len(outside) > SHOWN else ''} (move the files under it, or name a wider --root)")
    return inside


@contextlib.contextmanager
def bombs_refused(max_pixels: int | None):
    """Pillow refuses to open an image over MAX_IMAGE_PIXELS (it only warns below twice that)."""
    saved = Image.MAX_IMAGE_PIXELS
    Image.MAX_IMAGE_PIXELS = max_pixels or saved
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            yield Image.MAX_IMAGE_PIXELS
    finally:
        Image.MAX_IMAGE_PIXELS = saved


def to_rgb(image: Image.Image) -> np.ndarray:
    """H x W x 3 uint8: 16-bit and integer grey scaled to 8 bits, every other mode (grey,
    palette, RGBA, CMYK, ...) through Pillow's conversion."""
    if image.mode.startswith("I") or image.mode == "F":
        values = np.asarray(image, dtype=np.float64)
        if image.mode.startswith("I;16") or values.max(initial=0) > 255:
            values = values / 257.0
        grey = np.clip(np.rint(values), 0, 255).astype(np.uint8)
        return np.repeat(grey[..., None], 3, axis=2)
    return np.asarray(image.convert("RGB"))


def decode(data: bytes) -> np.ndarray:
    with Image.open(io.BytesIO(data)) as image:
        image.load()
        return to_rgb(ImageOps.exif_transpose(image))


def _problem(error: Exception, limit: int) -> str:
    if isinstance(error, (Image.DecompressionBombError, Image.DecompressionBombWarning)):
        return BOMB.replace("{limit}", f"{limit:,}")
    return NON_IMAGE if isinstance(error, UnidentifiedImageError) else CORRUPT


def read_images(items: list[Item], pool: np.ndarray, problems: Problems, max_pixels,
                progress: bool) -> tuple[list[int], list[str]]:
    """Decode and resize each file into `pool`; return the indices of the images kept (a copy
    of an earlier file's bytes is not) and every item's sha256."""
    from tqdm import tqdm
    first: dict[str, int] = {}                        # sha256 -> first item with those bytes
    failed: dict[str, str] = {}                       # sha256 -> its problem
    kept, hashes = [], []
    with bombs_refused(max_pixels) as limit, one_thread(), \
            tqdm(items, desc="import", unit="img", disable=not progress) as bar:
        for index, item in enumerate(bar):
            try:
                data = item.path.read_bytes()
            except OSError:
                problems.add(UNREADABLE, item.name)
                hashes.append("")
                continue
            digest = hashlib.sha256(data).hexdigest()
            hashes.append(digest)
            if digest in failed:
                problems.add(failed[digest], item.name)
                continue
            if digest in first:
                continue                              # a copy: resolved with the labels below
            try:
                pool[index] = resize(decode(data), pool.shape[1])
            except Exception as error:  # noqa: BLE001 (Pillow's decoders raise many kinds)
                failed[digest] = _problem(error, limit)
                problems.add(failed[digest], item.name)
                continue
            first[digest] = index
            kept.append(index)
    return _drop_copies(items, kept, hashes, first, problems), hashes


def _drop_copies(items, kept, hashes, first, problems) -> list[int]:
    labels: dict[str, set[str]] = {}
    for item, digest in zip(items, hashes):
        if digest in first:
            labels.setdefault(digest, set()).add(item.label)
    for index, (item, digest) in enumerate(zip(items, hashes)):
        if digest not in first:
            continue
        if len(labels[digest]) > 1:
            problems.add(CONFLICT, f"{item.name} ({printable(item.label)})")
        elif first[digest] != index:
            problems.add(DUPLICATE, f"{item.name} = {items[first[digest]].name}")
    return [i for i in kept if len(labels[hashes[i]]) == 1]


def class_order(labels: set[str]) -> list[str]:
    """Class names in index order: numerically where every label is an integer."""
    if all(re.fullmatch(r"-?\d+", label) for label in labels):
        return sorted(labels, key=int)
    return sorted(labels)


def carve(rng: np.random.Generator, labels: np.ndarray, positions: np.ndarray, n: int,
          keep: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(n of `positions`, the rest), stratified: each class its share of n by largest
    remainders, at least one where n covers every class, at most all but `keep` of it; drawn at
    random within the class. ValueError where the classes cannot give n."""
    classes, counts = np.unique(labels[positions], return_counts=True)
    quota = counts * n / counts.sum()
    low = np.minimum(1 if n >= len(classes) else 0, counts - keep).clip(0)
    high = (counts - keep).clip(0)
    if low.sum() > n or high.sum() < n:
        raise ValueError(f"{n} of {len(positions)} images, keeping {keep} of each class")
    take = np.clip(np.floor(quota).astype(int), low, high)
    while take.sum() < n:
        take[np.argmax(np.where(take < high, quota - take, -np.inf))] += 1
    while take.sum() > n:
        take[np.argmax(np.where(take > low, take - quota, -np.inf))] -= 1
    chosen = np.concatenate([rng.permutation(positions[labels[positions] == c])[:k]
                             for c, k in zip(classes, take)])
    chosen = np.sort(chosen)
    return chosen, np.setdiff1d(positions, chosen)


def plan_splits(labels: np.ndarray, user: list[str], names: list[str], options: ImportOptions
                ) -> dict[str, tuple[np.ndarray, str]]:
    """split name -> (positions into the kept images, what it holds in words)."""
    rng = np.random.default_rng(options.seed)
    classes = len(names)
    user = np.array(user)
    everything = np.arange(len(labels))
    own = bool(len(user) and user[0])
    if own and options.train_size is not None:
        raise StudyInputError("--train-size does not combine with the CSV's own split column")
    seeded = f"stratified by class, seed {options.seed}"
    held = f"a {options.test_fraction:g} held-out share, {seeded}"
    if own:
        train = everything[user == "train"]
        _need(labels, train, names, 1 + (not (user == "val").any()) + (not (user == "test").any()),
              "rows marked train in the CSV")
        test, holds_test = everything[user == "test"], "the CSV's test rows"
        if not len(test):
            n_test = max(round(len(train) * options.test_fraction), classes)
            test, train = _carve(rng, labels, train, n_test, 1 + (not (user == "val").any()),
                                 "the test share")
            holds_test = f"{held}, of the CSV's train rows"
        val, holds_val = everything[user == "val"], "the CSV's val rows"
        if not len(val):
            n_val = max(round(len(train) * options.val_fraction), 1)
            val, train = _carve(rng, labels, train, n_val, 1, "the val share")
            holds_val = f"a {options.val_fraction:g} share of the CSV's train rows, {seeded}"
        holds_train = "the CSV's train rows" + (", less the shares carved from them"
                                                if "share" in holds_val + holds_test else "")
    else:
        _need(labels, everything, names, 3, "images")
        n_test = max(round(len(labels) * options.test_fraction), classes)
        test, rest = _carve(rng, labels, everything, n_test, 2, "the test share")
        n_train = options.train_size or 800
        n_val = round(n_train * options.val_fraction / (1 - options.val_fraction))
        if n_train < classes:
            raise StudyInputError(f"--train-size {n_train} is smaller than the {classes} "
                                  f"classes: every class needs a training image")
        if n_train + n_val > len(rest):
            raise StudyInputError(
                f"train {n_train} + val {n_val} need {n_train + n_val} images besides the test "
                f"share ({len(test)}); there are {len(rest)}: pass a smaller --train-size (or "
                f"--test-fraction)")
        train, rest = _carve(rng, labels, rest, n_train, int(n_val >= classes), "train")
        val, _ = _carve(rng, labels, rest, n_val, 0, "val")
        holds_test = held
        holds_train = f"{n_train} drawn from the images outside the test split, {seeded}"
        holds_val = f"{n_val} drawn from the images left outside test and train, {seeded}"
    train_name, val_name, both_name = sweep_split_names(len(train), len(val))
    return {train_name: (train, holds_train), val_name: (val, holds_val),
            both_name: (np.concatenate([train, val]), f"{train_name} + {val_name}"),
            "test": (test, holds_test)}


def _need(labels, positions, names, per_class: int, where: str) -> None:
    counts = np.bincount(labels[positions], minlength=len(names))
    short = [f"'{printable(names[c])}' ({counts[c]})" for c in np.flatnonzero(counts < per_class)]
    if short:
        raise StudyInputError(
            f"{len(short)} class{'es have' if len(short) > 1 else ' has'} fewer than "
            f"{per_class} {where} (one for each split drawn from them): "
            f"{', '.join(short[:SHOWN])}{' ...' if len(short) > SHOWN else ''}; add images or "
            f"leave the class out")


def _carve(rng, labels, positions, n, keep, what):
    try:
        return carve(rng, labels, positions, n, keep)
    except ValueError as error:
        raise StudyInputError(f"cannot draw {what} stratified by class ({error}): add images, "
                              f"or pass a smaller --train-size / fraction") from None


def import_task(slug: str, items: list[Item], source: str, cache_dir: str | Path,
                options: ImportOptions = ImportOptions(), problems: Problems | None = None,
                progress: bool = False) -> dict:
    """Decode, split and write `items` as task `slug` into the cache; return its manifest. The
    problems found are said as summary lines first; input that leaves no usable task raises
    StudyInputError and leaves the cache as it was."""
    problems = problems or Problems()
    if not SLUG.fullmatch(slug):
        raise StudyInputError(f"task name '{slug}' must be letters, digits, _ and - (at most "
                              f"64, starting with a letter or digit)")
    if slug in TASKS:
        raise StudyInputError(f"'{slug}' is a built-in task; import under another name")
    final = task_dir(cache_dir, slug)
    final.parent.mkdir(parents=True, exist_ok=True)
    with exclusive(final.parent / f".{slug}.lock"):
        if final.exists() and not options.force:
            raise StudyInputError(f"task '{slug}' is already in {final.parent}; pass --force to "
                                  f"replace it")
        for stale in final.parent.glob(f".{slug}.import-*"):     # a killed import's leftovers
            shutil.rmtree(stale, ignore_errors=True)
        building = final.parent / f".{slug}.import-{os.getpid()}"
        try:
            manifest = _build(slug, items, source, building, options, problems, progress)
            if final.exists():
                retired = final.parent / f".{slug}.import-{os.getpid()}-replaced"
                os.replace(final, retired)
                os.replace(building, final)
                shutil.rmtree(retired)
            else:
                os.replace(building, final)
        finally:
            shutil.rmtree(building, ignore_errors=True)
    return manifest


def _build(slug, items, source, folder: Path, options: ImportOptions, problems: Problems,
           progress: bool) -> dict:
    folder.mkdir(parents=True)
    size = options.image_size
    pool = np.lib.format.open_memmap(folder / "pool.npy", mode="w+", dtype=np.uint8,
                                     shape=(max(len(items), 1), size, size, 3))
    kept, hashes = read_images(items, pool, problems, options.max_pixels, progress)
    present = {items[i].label for i in kept}
    for label in class_order({item.label for item in items} - present):
        problems.add(UNUSABLE, printable(label))
    problems.report()
    if not kept:
        raise StudyInputError("no usable image: nothing to import")
    names = class_order(present)
    if len(names) < 2:
        raise StudyInputError(f"only one class ('{printable(names[0])}') has usable images; a "
                              f"task needs two or more")
    index = {name: i for i, name in enumerate(names)}
    labels = np.array([index[items[i].label] for i in kept])
    splits = plan_splits(labels, [items[i].split for i in kept], names, options)
    files = [{"path": items[i].name, "label": int(labels[p]), "sha256": hashes[i]}
             for p, i in enumerate(kept)]
    (folder / "files.json").write_text(json.dumps(files, indent=0))
    entries, holds = {}, {}
    for split, (positions, holds[split]) in splits.items():
        rows = np.array(kept)[positions]
        chunks = ((pool[rows[a:a + CHUNK]], labels[positions[a:a + CHUNK]])
                  for a in range(0, len(rows), CHUNK))
        entries[split] = write_split(folder, slug, split, len(rows), (size, size), chunks,
                                     len(names))
        entries[split]["indices"] = positions.tolist()
        entries[split]["digest"] = hashlib.sha256(
            "\n".join(hashes[i] for i in rows).encode()).hexdigest()
    del pool
    (folder / "pool.npy").unlink()
    train, val, _, test = (positions for positions, _ in splits.values())
    shared = _shared([{files[p]["sha256"] for p in part} for part in (train, val, test)])
    if shared:                                    # copies are dropped above: a bug if it fails
        raise AssertionError(f"{len(shared)} images are in two splits")
    spec = {"slug": slug, "name": f"imported from {source}", "group": options.group,
            "num_classes": len(names), "source": f"import:{source}",
            "splits": {split: holds[split] for split in splits}}
    info = {"source": spec["source"], "task_spec": spec, "classes": names,
            "options": {k: v for k, v in dataclasses.asdict(options).items() if k != "force"},
            "splits_hold": holds,
            "files": {"file": "files.json", "count": len(files),
                      "sha256": hashlib.sha256((folder / "files.json").read_bytes()).hexdigest()},
            "skipped": problems.counts(), "image_size": size, "interpolation": INTERPOLATION,
            "encoding": "decoded with Pillow, EXIF-rotated, converted to RGB (lossless uint8)"}
    write_manifest_into(folder, slug, len(names), entries, info)
    return json.loads((folder / "manifest.json").read_text())


def _shared(parts: list[set[str]]) -> set[str]:
    """The hashes found in more than one of `parts`."""
    return {h for i, part in enumerate(parts) for other in parts[i + 1:] for h in part & other}


def sources(folder: str | None, table: str | None, root: str | None,
            problems: Problems) -> tuple[list[Item], str]:
    """The items of `--from-folder` or `--from-csv` (under `--root`), with where they are from."""
    if bool(folder) == bool(table):
        raise StudyInputError("give one of --from-folder DIR or --from-csv FILE")
    if folder:
        base = Path(root or folder).absolute()
        items = list_folder(Path(folder).absolute(), problems)
        where = f"folder:{Path(folder).absolute()}"
    else:
        base = Path(root).absolute() if root else Path(table).absolute().parent
        items = list_csv(Path(table), base)
        where = f"csv:{Path(table).absolute()}"
    return check_inside(items, base, problems), where
