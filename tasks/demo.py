"""The offline demo suite and its upstream data, made deterministically on this machine with no
download. Natural-like tasks are crops of real photographs that ship with scikit-image (the
upstream set uses other photographs, hence other classes); specialized-like tasks are
scikit-learn's real handwritten digits and crops of microscopy / retina images; structured tasks
are rendered scenes (count the objects, where is the sprite, how is the bar oriented), the
analogues of CLEVR-count and dSprites. Every generator returns a `train` pool (train800 is its
first 800, val200 the next 200) and a disjoint `test` pool of 32x32 RGB uint8 images."""
from __future__ import annotations

import re
from typing import Callable

import numpy as np
from PIL import Image

SIZE = 32
GENERATOR_VERSION = 1
Pools = dict[str, tuple[np.ndarray, np.ndarray]]


def _photo(name: str) -> np.ndarray:
    import skimage.data as data
    image = data.stereo_motorcycle()[0] if name == "motorcycle" else getattr(data, name)()
    image = np.asarray(image)
    if image.dtype == bool:
        image = image.astype(np.uint8) * 255
    if image.ndim == 2:
        image = np.repeat(image[..., None], 3, axis=2)
    return np.ascontiguousarray(image[..., :3])


def _resize(patch: np.ndarray) -> np.ndarray:
    return np.asarray(Image.fromarray(patch).resize((SIZE, SIZE), Image.BILINEAR))


def _crop(rng, image, scale, box=None) -> np.ndarray:
    """A random square crop of side `scale` x the image's short side, inside `box` (y0, x0, y1, x1)."""
    y0, x0, y1, x1 = box or (0, 0, *image.shape[:2])
    side = max(4, int(rng.uniform(*scale) * min(image.shape[:2])))
    side = min(side, y1 - y0, x1 - x0)
    top, left = rng.integers(y0, y1 - side + 1), rng.integers(x0, x1 - side + 1)
    patch = _resize(image[top:top + side, left:left + side])
    if rng.random() < 0.5:
        patch = patch[:, ::-1]
    patch = patch.astype(np.float32) * rng.uniform(0.8, 1.2)
    if rng.random() < 0.2:                       # colour is not enough to tell a class
        patch = np.repeat(patch.mean(axis=2, keepdims=True), 3, axis=2)
    return np.clip(patch, 0, 255).astype(np.uint8)


def _crop_classes(names, n_train, n_test, scale=(0.15, 0.45), quadrants=False) -> Callable:
    def generate(rng) -> Pools:
        photos = [_photo(name) for name in names]
        classes = [(i, q) for i in range(len(photos)) for q in (range(4) if quadrants else [None])]
        pools = {}
        for split, n in (("train", n_train), ("test", n_test)):
            labels = rng.integers(0, len(classes), size=n)
            images = np.empty((n, SIZE, SIZE, 3), np.uint8)
            for j, label in enumerate(labels):
                photo_index, quadrant = classes[label]
                photo = photos[photo_index]
                box = None
                if quadrant is not None:
                    h, w = photo.shape[0] // 2, photo.shape[1] // 2
                    top, left = (quadrant // 2) * h, (quadrant % 2) * w
                    box = (top, left, top + h, left + w)
                images[j] = _crop(rng, photo, scale, box)
            pools[split] = (images, labels)
        return pools
    return generate


def _digits(rng) -> Pools:
    from sklearn.datasets import load_digits
    digits = load_digits()
    order = rng.permutation(len(digits.target))
    gray = (digits.images[order] * (255.0 / 16.0)).astype(np.uint8)
    images = np.stack([_resize(np.repeat(g[..., None], 3, axis=2)) for g in gray])
    labels = digits.target[order]
    return {"train": (images[:1000], labels[:1000]), "test": (images[1000:], labels[1000:])}


_YY, _XX = np.mgrid[0:SIZE, 0:SIZE] + 0.5


def _shape_mask(kind: int, cy: float, cx: float, r: float) -> np.ndarray:
    dy, dx = _YY - cy, _XX - cx
    masks = (dy ** 2 + dx ** 2 <= r ** 2,                                # disc
             (np.abs(dy) <= r * 0.85) & (np.abs(dx) <= r * 0.85),      # square
             (dy <= r * 0.8) & (np.abs(dx) <= (dy + r) * 0.55))         # triangle
    return masks[kind]


def _scene(rng) -> np.ndarray:
    background = rng.integers(0, 90, size=3)
    noise = rng.normal(0, 6, size=(SIZE, SIZE, 1))
    return np.clip(background + noise, 0, 255)


def _paint(canvas, mask, rng):
    canvas[mask] = rng.integers(130, 256, size=3)


def _rendered(draw: Callable, n_train=1000, n_test=500) -> Callable:
    def generate(rng) -> Pools:
        pools = {}
        for split, n in (("train", n_train), ("test", n_test)):
            images = np.empty((n, SIZE, SIZE, 3), np.uint8)
            labels = np.empty(n, np.int64)
            for j in range(n):
                canvas = _scene(rng)
                labels[j] = draw(rng, canvas)
                images[j] = canvas.astype(np.uint8)
            pools[split] = (images, labels)
        return pools
    return generate


def _draw_count(rng, canvas) -> int:
    count, placed = int(rng.integers(1, 7)), []
    while len(placed) < count:
        r = rng.uniform(2.0, 3.5)
        cy, cx = rng.uniform(r, SIZE - r, size=2)
        if all((cy - y) ** 2 + (cx - x) ** 2 > (r + s + 1.5) ** 2 for y, x, s in placed):
            placed.append((cy, cx, r))
            _paint(canvas, _shape_mask(int(rng.integers(3)), cy, cx, r), rng)
    return count - 1


def _draw_location(rng, canvas) -> int:
    cx = rng.uniform(4, SIZE - 4)
    r = rng.uniform(2.5, 4.0)
    _paint(canvas, _shape_mask(int(rng.integers(3)), rng.uniform(5, SIZE - 5), cx, r), rng)
    return min(7, int((cx - 4) / (SIZE - 8) * 8))


def _draw_orientation(rng, canvas) -> int:
    angle = rng.uniform(0, np.pi)
    cy, cx = SIZE / 2 + rng.uniform(-4, 4, size=2)
    half_length, half_width = rng.uniform(8, 12), rng.uniform(1.2, 2.2)
    along = (_XX - cx) * np.cos(angle) + (_YY - cy) * np.sin(angle)
    across = -(_XX - cx) * np.sin(angle) + (_YY - cy) * np.cos(angle)
    _paint(canvas, (np.abs(along) <= half_length) & (np.abs(across) <= half_width), rng)
    return min(7, int(angle / np.pi * 8))


UPSTREAM_PHOTOS = ("astronaut", "coffee", "chelsea", "rocket", "hubble_deep_field", "camera",
                   "coins", "moon", "page", "gravel")
PHOTOS = ("motorcycle", "brick", "grass", "text", "clock", "logo")
REGIONS = ("motorcycle", "clock", "colorwheel", "logo")
MICROSCOPY = ("retina", "immunohistochemistry", "microaneurysms", "cell")
GENERATORS: dict[str, Callable[[np.random.Generator], Pools]] = {
    "upstream": _crop_classes(UPSTREAM_PHOTOS, n_train=12000, n_test=1000, scale=(0.1, 0.3),
                              quadrants=True),
    "photos": _crop_classes(PHOTOS, 1000, 500),
    "photo_regions": _crop_classes(REGIONS, 1000, 500, scale=(0.1, 0.3), quadrants=True),
    "digits": _digits,
    "microscopy": _crop_classes(MICROSCOPY, 1000, 500, scale=(0.1, 0.4)),
    "count": _rendered(_draw_count),
    "sprite_location": _rendered(_draw_location),
    "sprite_orientation": _rendered(_draw_orientation),
    # larger pools of three of them, one per group, for the data-size study `demo-scale`
    "photos_scale": _crop_classes(PHOTOS, 4000, 500),
    "microscopy_scale": _crop_classes(MICROSCOPY, 4000, 500, scale=(0.1, 0.4)),
    "count_scale": _rendered(_draw_count, n_train=4000),
}
# what a label means, for captions: label -> words (a class index alone misleads: count's
# label 4 is five objects)
MEANINGS: dict[str, Callable[[int], str]] = {
    "photos": lambda n: f"a crop of '{PHOTOS[n]}'",
    "photo_regions": lambda n: f"'{REGIONS[n // 4]}', quadrant {n % 4 + 1}",
    "digits": lambda n: f"digit {n}",
    "microscopy": lambda n: f"'{MICROSCOPY[n]}'",
    "count": lambda n: f"{n + 1} object{'s' if n else ''}",
    "sprite_location": lambda n: f"x in bin {n + 1} of 8",
    "sprite_orientation": lambda n: f"angle {n * 22.5:g}-{(n + 1) * 22.5:g} deg",
}


def meaning(slug: str, label: int) -> str:
    """What `label` of task `slug` stands for, in words ('class <label>' where the project does
    not know)."""
    describe = MEANINGS.get(slug.removesuffix("_scale"))
    return describe(int(label)) if describe else f"class {int(label)}"

# Pool sizes the generators produce (for planning without generating).
DEMO_POOL = {"train": 1000, "test": 500}
DEMO_POOLS = {"digits": {"train": 1000, "test": 797}, "upstream": {"train": 12000, "test": 1000},
              **{f"{slug}_scale": {"train": 4000, "test": 500}
                 for slug in ("photos", "microscopy", "count")}}

_SLICE = re.compile(r"^(\w+)(?:\[(\d*):(\d*)\])?$")


def select(pools: Pools, expression: str) -> tuple[np.ndarray, np.ndarray]:
    """Evaluate a split string such as `train[:800]` or `train[800:1000]` against the pools."""
    match = _SLICE.match(expression)
    if not match or match.group(1) not in pools:
        raise ValueError(f"split string '{expression}' is not of the form pool[start:stop]")
    images, labels = pools[match.group(1)]
    start = int(match.group(2) or 0)
    stop = int(match.group(3)) if match.group(3) else len(labels)
    return images[start:stop], labels[start:stop]


def generate(slug: str, seed: int = 0) -> Pools:
    """The pools of one demo task; the same seed gives byte-identical arrays."""
    rng = np.random.default_rng([seed, sum(map(ord, slug))])
    return GENERATORS[slug](rng)
