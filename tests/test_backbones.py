"""Backbones from timm by name; local weights files load (head excluded) or are refused."""
from __future__ import annotations

import pytest
import torch

from tests.conftest import TINY_VIT
from trainables.backbones import WeightsMismatch, create_backbone, load_weights, save_weights
from trainables.config import BackboneSpec


def _body(model):
    return {k: v for k, v in model.state_dict().items() if not k.startswith("head.")}


@pytest.mark.parametrize("suffix", [".safetensors", ".pth"])
def test_weights_file_round_trip_keeps_the_task_head(tmp_path, suffix):
    torch.manual_seed(0)
    source = create_backbone(TINY_VIT, num_classes=40)
    path = tmp_path / f"w{suffix}"
    if suffix == ".pth":
        torch.save({"model": source.state_dict()}, path)
    else:
        save_weights(source, path)
    torch.manual_seed(1)
    target = create_backbone(TINY_VIT, num_classes=10)
    head = target.head.weight.detach().clone()
    load_weights(target, path)
    for key, value in _body(source).items():
        assert torch.equal(value, target.state_dict()[key])
    assert torch.equal(target.head.weight, head) and target.head.out_features == 10


def test_spec_weights_resolve_against_the_cache_dir(tmp_path):
    torch.manual_seed(0)
    saved = create_backbone(TINY_VIT, 10)
    save_weights(saved, tmp_path / "backbones" / "tiny.safetensors")
    spec = BackboneSpec(TINY_VIT.name, TINY_VIT.overrides, weights="backbones/tiny.safetensors")
    torch.manual_seed(5)
    loaded = create_backbone(spec, 10, cache_dir=tmp_path)
    body = _body(saved)
    assert body.keys() == _body(loaded).keys()
    for key, value in _body(loaded).items():                 # every weight is the file's
        assert torch.equal(value, body[key]), key


def test_weights_of_another_architecture_are_refused_naming_keys(tmp_path):
    deeper = BackboneSpec(TINY_VIT.name, (("img_size", 32), ("patch_size", 8),
                                          ("embed_dim", 48), ("depth", 4), ("num_heads", 2)))
    save_weights(create_backbone(deeper, 10), tmp_path / "other.safetensors")
    with pytest.raises(WeightsMismatch, match=r"unexpected.*blocks\.3|wrong-shape"):
        load_weights(create_backbone(TINY_VIT, 10), tmp_path / "other.safetensors")
