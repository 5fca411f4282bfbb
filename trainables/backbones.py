"""Backbones come only through `timm.create_model` by `arch.tag` name. A local weights file
(safetensors, a torch state dict loaded with `weights_only=True`, or the original ViT `.npz`) loads
into the architecture, the classifier head excluded, after timm's own checkpoint converter for that
architecture (official Swin, MAE, MoCo v3 checkpoints); a file for another architecture is refused
with the mismatching keys named. The classifier head is initialised as timm does, as the official
VPT code does, or as a new torch Linear is, and a ViT can be given the official config's dropout. Input normalisation is the
spec's, else read from the model's pretrained config, so that every run can record it.

`timm_vit` makes the spec of any timm ViT by name (`--backbone timm:NAME`): its normalisation is
the one timm's pretrained config gives that name (ImageNet's, or OpenAI CLIP's), its weights a
local file or timm's hub; a name timm lacks, or a model that is not a ViT (class and register
tokens, then the patch tokens, through `blocks`), is refused in one line."""
from __future__ import annotations

import math
import sys
from dataclasses import replace
from pathlib import Path

import torch
import timm
from torch import nn

from common.errors import StudyInputError
from common.files import write_atomically
from trainables.config import BackboneSpec


class WeightsMismatch(StudyInputError):
    """A weights file that does not fit the architecture."""


def create_backbone(spec: BackboneSpec, num_classes: int, cache_dir: str | Path = ".") -> nn.Module:
    model = timm.create_model(spec.name, pretrained=spec.hub_weights, num_classes=num_classes,
                              **dict(spec.overrides))
    if spec.weights:
        load_weights(model, resolve_weights(spec, cache_dir), spec.key_prefix, spec.fresh,
                     spec.unused)
    HEAD_INITS[spec.head_init](model.get_classifier())
    if spec.dropout:
        set_vit_dropout(model, spec.dropout)
    return model


MEAN_STD_NAMES = {((0.485, 0.456, 0.406), (0.229, 0.224, 0.225)): "ImageNet",
                  ((0.48145466, 0.4578275, 0.40821073), (0.26862954, 0.26130258, 0.27577711)):
                  "OpenAI CLIP", ((0.5, 0.5, 0.5), (0.5, 0.5, 0.5)): "Inception (0.5, 0.5)"}


def timm_vit(name: str, weights: str | None = None, check: bool = True,
             **fields) -> BackboneSpec:
    """The spec of timm's ViT `name` (`arch.tag`), pretrained normalisation from timm's config
    for it; weights from the file `weights` (relative: under the cache dir), else timm's hub.
    `check` builds it on the meta device to refuse what is not a ViT (a name a user gives; the
    registered backbones are known ViTs, and their tests build them)."""
    if not timm.is_model(name):
        raise StudyInputError(f"timm has no model '{name}' (timm {timm.__version__}: "
                              f"`timm.list_models('vit_*')` lists its ViTs)")
    if check:
        try:
            with torch.device("meta"):
                model = timm.create_model(name, pretrained=False,
                                          **dict(fields.get("overrides", ())))
        except (RuntimeError, ValueError, TypeError) as error:
            raise StudyInputError(f"timm cannot build '{name}': {error}") from None
        if not is_vit(model):
            raise StudyInputError(f"'{name}' is a {type(model).__name__}, not a ViT (class and "
                                  f"register tokens then patch tokens through `blocks`); only "
                                  f"timm ViTs are backbones by name")
    pretrained = timm.models.get_pretrained_cfg(name)
    fields.setdefault("mean_std", config_mean_std(pretrained.to_dict() if pretrained else {}))
    return BackboneSpec(name, weights=weights, hub_weights=weights is None, **fields)


def is_vit(model: nn.Module) -> bool:
    """A timm ViT as the strategies read one: prefix tokens, then the patch grid, in `blocks`."""
    return all(hasattr(model, a) for a in ("blocks", "num_prefix_tokens", "patch_embed",
                                           "embed_dim"))


def weights_source(spec: BackboneSpec) -> str:
    return spec.weights or ("timm's hub" if spec.hub_weights else "none (random init)")


def mean_std_name(mean_std) -> str:
    """The normalisation named, where it is a known one: "ImageNet (mean ..., std ...)"."""
    mean, std = (tuple(round(v, 8) for v in values) for values in mean_std)
    named = MEAN_STD_NAMES.get((mean, std))
    return f"{named + ' ' if named else ''}(mean {mean}, std {std})"


def vpt_head_init(head: nn.Linear, generator: torch.Generator | None = None) -> None:
    """The official VPT head (src/models/mlp.py:52-57, `special_bias=True` at
    src/models/vit_models.py:213): Kaiming-normal weight (fan_out), bias -log(99)."""
    nn.init.kaiming_normal_(head.weight, a=0, mode="fan_out", generator=generator)
    nn.init.constant_(head.bias, -math.log((1 - 0.01) / 0.01))


def fresh_vpt_head(model: nn.Module, seed: int) -> nn.Module:
    """Give `model` a new classifier head in place, the official VPT head drawn from `seed` on
    the CPU (the same values on any device, and the global random state untouched)."""
    head = model.get_classifier()
    drawn = nn.Linear(head.in_features, head.out_features, device="meta").to_empty(device="cpu")
    vpt_head_init(drawn, torch.Generator().manual_seed(seed))
    with torch.no_grad():
        head.weight.copy_(drawn.weight)
        head.bias.copy_(drawn.bias)
    return model


# "torch": a new nn.Linear's own init, as a classifier replaced after loading gets it (PETL_Vision
# experiment/build_model.py:98, timm's reset_classifier)
HEAD_INITS = {"timm": lambda head: None, "vpt": vpt_head_init,
              "torch": lambda head: head.reset_parameters()}


def set_vit_dropout(vit: nn.Module, p: float) -> None:
    """The official ViT-B/16 config's dropout (VPT src/configs/vit_configs.py:35, `dropout_rate`
    0.1; attention dropout 0): after the position embedding (`Embeddings.dropout`) and after each
    MLP layer (`Mlp.dropout`, twice), i.e. timm's `pos_drop` and every block's `mlp.drop1/drop2`;
    none on attention or before the head."""
    if not hasattr(vit, "blocks") or not hasattr(vit, "pos_drop"):
        raise StudyInputError(f"model dropout is defined for ViT backbones; "
                              f"{type(vit).__name__} is not one")
    vit.pos_drop.p = p
    for block in vit.blocks:
        block.mlp.drop1.p = block.mlp.drop2.p = p


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
    return dict(state)


def _timm_filter(model: nn.Module):
    """timm's own converter from official checkpoints to its layout (Swin's key renames, ...)."""
    module = sys.modules.get(type(model).__module__)
    return getattr(module, "checkpoint_filter_fn", None) or (lambda state, _model: state)


def _is_head(key: str) -> bool:
    return key.startswith(("head.", "fc.", "classifier."))


def load_weights(model: nn.Module, path: str | Path, key_prefix: str = "",
                 fresh: tuple[str, ...] = (), unused: tuple[str, ...] = ()) -> None:
    """Load a local weights file into `model`, keeping its (task-sized) classifier head; with
    `key_prefix`, only the weights under it count, prefix stripped (e.g. MoCo v3's
    `module.base_encoder.`). Model keys under `fresh` keep their init and file keys under
    `unused` are dropped, as the official MAE fine-tuning model drops the checkpoint's `norm` for
    a new `fc_norm`; any other difference is refused."""
    path = Path(path)
    if not path.exists():
        raise StudyInputError(f"weights file {path} does not exist")
    if path.suffix == ".npz":                      # original big_vision / ViT-B_16.npz
        head = {k: v.clone() for k, v in model.state_dict().items() if _is_head(k)}
        model.load_pretrained(str(path))
        model.load_state_dict(head, strict=False)
        return
    state = _read_state_dict(path)
    if key_prefix:
        state = {k[len(key_prefix):]: v for k, v in state.items() if k.startswith(key_prefix)}
    state = _timm_filter(model)(state, model)
    state = {k: v for k, v in state.items() if not (_is_head(k) or k.startswith(unused))}
    own = {k: v for k, v in model.state_dict().items()
           if not (_is_head(k) or k.startswith(fresh))}
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
    state = {k: v.contiguous() for k, v in model.state_dict().items()}
    write_atomically(path, lambda partial: save_file(state, partial))


def input_size(model: nn.Module, spec: BackboneSpec) -> int:
    """The square input size: the spec's `img_size` override, else timm's config."""
    default = model.pretrained_cfg.get("input_size", (3, 224, 224))[-1]
    return dict(spec.overrides).get("img_size", default)


def spec_input_size(spec: BackboneSpec) -> int:
    """A backbone's input size, from the model built on the meta device (no memory)."""
    with torch.device("meta"):
        model = create_backbone(replace(spec, weights=None, hub_weights=False), 2)
    return input_size(model, spec)


def spec_normalization(spec: BackboneSpec):
    """A backbone's (mean, std): the spec's, else from the model built on the meta device."""
    if spec.mean_std:
        return spec.mean_std
    with torch.device("meta"):
        return normalization(create_backbone(replace(spec, weights=None, hub_weights=False), 2))


def normalization(model: nn.Module, spec: BackboneSpec | None = None):
    """(mean, std) the backbone was pretrained with: the spec's, else timm's config's."""
    if spec is not None and spec.mean_std:
        return spec.mean_std
    return config_mean_std(getattr(model, "pretrained_cfg", {}) or {})


def config_mean_std(cfg) -> tuple:
    """(mean, std) of a timm pretrained config (a dict); (0.5, 0.5) where it gives none."""
    return tuple(cfg.get("mean", (0.5, 0.5, 0.5))), tuple(cfg.get("std", (0.5, 0.5, 0.5)))
