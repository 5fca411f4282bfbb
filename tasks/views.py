"""How the cache stores a task's images. Without augmentation (VTAB), a square of the input size
resized as `tf.image.resize` does. With it, as VPT's FGVC transforms see them
(KMnP/vpt src/data/transforms.py:7-38): every image is first resized so that its shorter side is
`resize` (torchvision's `Resize` on a PIL image: bilinear with PIL's antialiasing, the longer side
`int(resize * long / short)`). An evaluation split keeps the centre `crop` square (`CenterCrop`),
exactly. A training split keeps the resized image at the top left of a `canvas` square together
with its height and width, so that a random crop and flip can be taken on the device every epoch
(`trainables.loop.random_crops`); a longer side beyond the canvas is centre-cropped to it, which
only narrows how far out the random crops of such (very wide or tall) images reach."""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from common.errors import StudyInputError
from tasks.cache import load_sizes, load_split, read_manifest
from tasks.spec import Augment, get_task


INTERPOLATION = "bilinear, no antialias, half-pixel centres (as tf.image.resize)"


def resize(image: np.ndarray, size: int) -> np.ndarray:
    """A task without augmentation: a square of the input size, as VTAB's `tf.image.resize`."""
    if image.shape[:2] == (size, size):
        return image
    x = torch.tensor(image).permute(2, 0, 1)[None].float()
    x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False, antialias=False)
    return x[0].permute(1, 2, 0).round().clamp(0, 255).to(torch.uint8).numpy()


def is_training(split: str) -> bool:
    return split.startswith("train")


def resized(image: np.ndarray, shorter: int) -> np.ndarray:
    """torchvision.transforms.Resize(shorter) on a PIL image."""
    h, w = image.shape[:2]
    if h <= w:
        size = (int(shorter * w / h), shorter)
    else:
        size = (shorter, int(shorter * h / w))
    return np.asarray(Image.fromarray(image).resize(size, Image.BILINEAR))


def centre(image: np.ndarray, height: int, width: int) -> np.ndarray:
    """torchvision's CenterCrop offsets: int(round((size - crop) / 2))."""
    top = int(round((image.shape[0] - height) / 2.0))
    left = int(round((image.shape[1] - width) / 2.0))
    return image[top:top + height, left:left + width]


def eval_view(image: np.ndarray, augment: Augment) -> np.ndarray:
    return centre(resized(image, augment.resize), augment.crop, augment.crop)


def train_canvas(image: np.ndarray, augment: Augment) -> tuple[np.ndarray, tuple[int, int]]:
    """(canvas x canvas x 3 uint8 with the resized image at the top left, its (h, w))."""
    image = resized(image, augment.resize)
    image = centre(image, min(image.shape[0], augment.canvas), min(image.shape[1], augment.canvas))
    canvas = np.zeros((augment.canvas, augment.canvas, 3), np.uint8)
    canvas[:image.shape[0], :image.shape[1]] = image
    return canvas, image.shape[:2]


def stored(images: list[np.ndarray], augment: Augment | None, split: str,
           image_size: int) -> tuple[np.ndarray, ...]:
    """A chunk as the cache keeps it: (images,) resized to the input size without augmentation;
    (eval crops,) for an evaluation split with it; (canvases, sizes) for a training split."""
    if augment is None:
        return (np.stack([resize(image, image_size) for image in images]),)
    if not is_training(split):
        return (np.stack([eval_view(image, augment) for image in images]),)
    canvases, sizes = zip(*(train_canvas(image, augment) for image in images))
    return np.stack(canvases), np.array(sizes, np.int32)


def layout(augment: Augment | None, split: str, image_size: int) -> dict:
    """`write_split`'s shape and whether the split carries sizes."""
    if augment and augment.crop != image_size:
        raise StudyInputError(f"this task's augmentation crops {augment.crop} px; the backbone "
                              f"takes {image_size}")
    canvas = bool(augment and is_training(split))
    side = augment.canvas if canvas else image_size
    return {"shape": (side, side), "sized": canvas}


def evaluation_images(cache_dir, slug: str, split: str, limit: int | None = None) -> np.ndarray:
    """The first `limit` images of a split as a model sees them at evaluation: as stored, or for
    a training split kept in canvases, the centre crop of each (for FID)."""
    images = load_split(cache_dir, slug, split)[0][:limit]
    sizes = load_sizes(cache_dir, slug, split)
    if sizes is None:
        return images
    crop = get_task(slug).augment.crop
    return np.stack([centre(image[:h, :w], crop, crop) for image, (h, w) in zip(images, sizes)])


def model_sizes(cache_dir, slug: str, splits) -> set[int]:
    """The image sizes a model is given from these splits of a task's cache: as stored, or the
    crops of a training split kept in canvases."""
    entries = read_manifest(cache_dir, slug)["splits"]
    return {get_task(slug).augment.crop if "sizes" in entries[split] else entries[split]["shape"][0]
            for split in splits}
