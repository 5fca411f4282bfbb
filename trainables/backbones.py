"""Backbones come only through `timm.create_model` by `arch.tag` name. A local weights file
(safetensors, a torch state dict loaded with `weights_only=True`, or the original ViT `.npz`) loads
into the architecture, the classifier head excluded; a file for another architecture is refused
with the mismatching keys named. Input normalisation is read from the model's pretrained config
so that every run can record it."""
from __future__ import annotations

from pathlib import Path

import torch
import timm
from torch import nn

from study.errors import StudyInputError
from trainables.config import BackboneSpec


class WeightsMismatch(StudyInputError):
    """A weights file that does not fit the architecture."""


def create_backbone(spec: BackboneSpec, num_classes: int, cache_dir: str | Path = ".") -> nn.Module:
    model = timm.create_model(spec.name, pretrained=spec.hub_weights, num_classes=num_classes,
                              **dict(spec.overrides))
    if spec.weights:
        load_weights(model, resolve_weights(spec, cache_dir))
    return model


def resolve_weights(spec: BackboneSpec, cache_dir: str | Path) -> Path:
    path = Path(spec.weights)
    return path if path.is_absolute() else Path(cache_dir) / path


def _read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file
        return load_file(str(path))
    state = torch.load(path, map_location="cpu", weights_only=True)
    for key in ("state_dict", "model"):             # common checkpoint nestings
        if isinstance(state, dict) and key in state and isinstance(state[key], dict):
            state = state[key]
    return {k.removeprefix("module."): v for k, v in state.items()}


def _is_head(key: str) -> bool:
    return key.startswith(("head.", "fc.", "classifier."))


def load_weights(model: nn.Module, path: str | Path) -> None:
    """Load a local weights file into `model`, keeping its (task-sized) classifier head."""
    path = Path(path)
    if not path.exists():
        raise StudyInputError(f"weights file {path} does not exist")
    if path.suffix == ".npz":                      # original big_vision / ViT-B_16.npz
        head = {k: v.clone() for k, v in model.state_dict().items() if _is_head(k)}
        model.load_pretrained(str(path))
        model.load_state_dict(head, strict=False)
        return
    state = {k: v for k, v in _read_state_dict(path).items() if not _is_head(k)}
    own = {k: v for k, v in model.state_dict().items() if not _is_head(k)}
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    wrong_shape = sorted(k for k in set(own) & set(state) if own[k].shape != state[k].shape)
    if missing or unexpected or wrong_shape:
        named = (missing + unexpected + wrong_shape)[:4]
        raise WeightsMismatch(
            f"{path} does not fit {type(model).__name__}: {len(missing)} missing, "
            f"{len(unexpected)} unexpected, {len(wrong_shape)} wrong-shape keys "
            f"(e.g. {', '.join(named)})")
    model.load_state_dict(state, strict=False)


def save_weights(model: nn.Module, path: str | Path) -> None:
    from safetensors.torch import save_file
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(path))


def normalization(model: nn.Module) -> tuple[tuple[float, ...], tuple[float, ...]]:
    cfg = getattr(model, "pretrained_cfg", {}) or {}
    return tuple(cfg.get("mean", (0.5, 0.5, 0.5))), tuple(cfg.get("std", (0.5, 0.5, 0.5)))
