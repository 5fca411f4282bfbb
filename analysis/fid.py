"""Fréchet distances between the pretraining images and each task's training images, the paper's
measure of how far a downstream task sits from the upstream data, as the mean and std over random
subsets of a stated size. Two feature spaces: pytorch-fid's
InceptionV3 pool features (its weights from a local file on offline machines, `--inception-weights`
pt_inception-2015-12-05-6726825d.pth) and the study backbone's own pre-logit features, labelled
"backbone FID" since they are not comparable with published FIDs. Features are cached per (feature
space, image set) under `<cache dir>/features/`."""
from __future__ import annotations

import contextlib
import hashlib
import tempfile
from pathlib import Path
from typing import Callable
from urllib.parse import urlparse

import numpy as np
import torch
import torch.nn.functional as F
from pytorch_fid.fid_score import calculate_frechet_distance

from common.errors import StudyInputError
from trainables.backbones import create_backbone, input_size, normalization
from trainables.config import BackboneSpec

Features = Callable[[np.ndarray], np.ndarray]


def statistics(features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    return features.mean(axis=0), np.cov(features, rowvar=False)


def frechet(a: np.ndarray, b: np.ndarray) -> float:
    """FID between two feature sets: |mu_a - mu_b|^2 + Tr(S_a + S_b - 2 (S_a S_b)^1/2)."""
    return float(calculate_frechet_distance(*statistics(a), *statistics(b)))


def repeated(a: np.ndarray, b: np.ndarray, samples: int, repeats: int) -> dict:
    """FID between random subsets of the two feature sets, `samples` features of each (fewer if a
    set is smaller: both subsets have the size of the smaller), drawn `repeats` times with seeds
    0..repeats-1, as the paper reports repeated runs (P:111: std < 0.5 %). FID is biased upwards
    at small sizes, so values compare only at one size: {"fid", "std", "samples", "repeats"}."""
    n = min(samples, len(a), len(b))
    values = []
    for seed in range(repeats):
        rng = np.random.default_rng([seed, n])
        values.append(frechet(a[rng.choice(len(a), n, replace=False)],
                              b[rng.choice(len(b), n, replace=False)]))
    return {"fid": float(np.mean(values)),
            "std": float(np.std(values, ddof=1)) if repeats > 1 else 0.0,
            "samples": n, "repeats": repeats}


def _batches(images: np.ndarray, size: int = 100):
    for start in range(0, len(images), size):
        yield torch.from_numpy(np.array(images[start:start + size])).permute(0, 3, 1, 2).float()


@contextlib.contextmanager
def hub_holding(path: Path, url: str):
    """torch.hub's download cache, for the time of the block, a folder that holds `path` under
    the name a download of `url` would have, so that loading `url` reads `path` instead."""
    previous = torch.hub.get_dir()
    with tempfile.TemporaryDirectory() as hub:
        checkpoints = Path(hub) / "checkpoints"
        checkpoints.mkdir()
        (checkpoints / Path(urlparse(url).path).name).symlink_to(path.resolve())
        torch.hub.set_dir(hub)
        try:
            yield
        finally:
            torch.hub.set_dir(previous)


def inception(weights: str | Path) -> Features:
    """pytorch-fid's InceptionV3 (2048-d pool features) with its weights read from a local file."""
    import pytorch_fid.inception as fid_inception
    path = Path(weights)
    if not path.exists():
        raise StudyInputError(f"Inception weights {path} do not exist (pytorch-fid's "
                              f"pt_inception-2015-12-05-6726825d.pth)")
    with hub_holding(path, fid_inception.FID_WEIGHTS_URL):
        model = fid_inception.InceptionV3([3]).eval()

    @torch.no_grad()
    def features(images: np.ndarray) -> np.ndarray:
        return np.concatenate([model(x / 255.0)[0].flatten(1).numpy() for x in _batches(images)])
    return features


def backbone(spec: BackboneSpec, cache_dir: str | Path) -> Features:
    """The backbone's pre-logit features (class token after the final norm, for a ViT)."""
    model = create_backbone(spec, num_classes=2, cache_dir=cache_dir).eval()
    mean, std = (torch.tensor(v).view(1, 3, 1, 1) for v in normalization(model, spec))
    size = input_size(model, spec)

    @torch.no_grad()
    def features(images: np.ndarray) -> np.ndarray:
        out = []
        for x in _batches(images):
            x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False)
            x = (x / 255.0 - mean) / std
            out.append(model.forward_head(model.forward_features(x), pre_logits=True).numpy())
        return np.concatenate(out)
    return features


def cached(features: Features, kind: str, images: np.ndarray, cache_dir: str | Path) -> np.ndarray:
    """Features of an image set, computed once per (feature space, images)."""
    digest = hashlib.sha1(np.ascontiguousarray(images).tobytes()).hexdigest()[:16]
    path = Path(cache_dir) / "features" / kind / f"{digest}.npy"
    if path.exists():
        return np.load(path)
    values = features(images)
    path.parent.mkdir(parents=True, exist_ok=True)
    np.save(path, values)
    return values
