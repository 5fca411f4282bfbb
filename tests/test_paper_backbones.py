"""The paper's backbones: each architecture builds from timm without weights, and a weights file
in its native format (the original ViT-B/16 .npz, MAE's and Swin's .pth, MoCo v3's prefixed
.pth.tar) loads into a fresh model bit for bit, head excluded."""
from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch

from study.studies import SWIN_B_IN21K, VIT_B16_IN21K, VIT_B16_MAE, VIT_B16_MOCOV3
from trainables.backbones import create_backbone, normalization


def export_original_vit_npz(model, path):
    """Write a timm ViT in the layout of the original `ViT-B_16.npz` (inverse of timm's loader)."""
    n = lambda t: t.detach().cpu().numpy()          # noqa: E731
    heads, dim = model.blocks[0].attn.num_heads, model.embed_dim
    w = {"embedding/kernel": n(model.patch_embed.proj.weight).transpose(2, 3, 1, 0),
         "embedding/bias": n(model.patch_embed.proj.bias), "cls": n(model.cls_token),
         "Transformer/posembed_input/pos_embedding": n(model.pos_embed),
         "Transformer/encoder_norm/scale": n(model.norm.weight),
         "Transformer/encoder_norm/bias": n(model.norm.bias)}
    for i, block in enumerate(model.blocks):
        p = f"Transformer/encoderblock_{i}/"
        mha = p + "MultiHeadDotProductAttention_1/"
        w[p + "LayerNorm_0/scale"], w[p + "LayerNorm_0/bias"] = n(block.norm1.weight), n(block.norm1.bias)
        w[p + "LayerNorm_2/scale"], w[p + "LayerNorm_2/bias"] = n(block.norm2.weight), n(block.norm2.bias)
        for name, weight, bias in zip(("query", "key", "value"),
                                      block.attn.qkv.weight.chunk(3), block.attn.qkv.bias.chunk(3)):
            w[mha + f"{name}/kernel"] = n(weight).T.reshape(dim, heads, dim // heads)
            w[mha + f"{name}/bias"] = n(bias).reshape(heads, dim // heads)
        w[mha + "out/kernel"] = n(block.attn.proj.weight).reshape(dim, heads, dim // heads) \
            .transpose(1, 2, 0)
        w[mha + "out/bias"] = n(block.attn.proj.bias)
        for r, fc in enumerate((block.mlp.fc1, block.mlp.fc2)):
            w[p + f"MlpBlock_3/Dense_{r}/kernel"] = n(fc.weight).T
            w[p + f"MlpBlock_3/Dense_{r}/bias"] = n(fc.bias)
    np.savez(path, **w)


def save_native(spec, model, path):
    state = {k: v for k, v in model.state_dict().items()}
    if spec is VIT_B16_IN21K:
        export_original_vit_npz(model, path)
    elif spec is VIT_B16_MOCOV3:         # MoCo v3: both encoders and the predictor, prefixed
        torch.save({"state_dict": {**{f"module.base_encoder.{k}": v for k, v in state.items()},
                                   **{f"module.momentum_encoder.{k}": v + 1
                                      for k, v in state.items()}}}, path)
    elif spec is VIT_B16_MAE:            # MAE's encoder: its own final norm, no fc_norm
        state = {k: v for k, v in state.items() if not k.startswith("fc_norm.")}
        norm = {"norm.weight": torch.rand(768), "norm.bias": torch.rand(768)}
        torch.save({"model": {**state, **norm}}, path)
    else:
        torch.save({"model": state}, path)


@pytest.mark.parametrize("spec", [VIT_B16_IN21K, VIT_B16_MAE, VIT_B16_MOCOV3, SWIN_B_IN21K],
                         ids=lambda s: s.tag)
def test_paper_backbone_builds_and_its_native_file_loads(spec, tmp_path):
    torch.manual_seed(0)
    source = create_backbone(replace(spec, weights=None), num_classes=10)
    assert 85e6 < sum(p.numel() for p in source.parameters()) < 90e6       # ViT-B / Swin-B
    path = tmp_path / spec.weights.split("/")[-1]
    save_native(spec, source, path)
    torch.manual_seed(1)
    loaded = create_backbone(replace(spec, weights=str(path)), num_classes=10)
    for key, value in source.state_dict().items():
        if not key.startswith(("head", *spec.fresh)):
            assert torch.equal(value, loaded.state_dict()[key]), key
    for key in spec.fresh:                  # left at init: LayerNorm's ones and zeros
        norm = loaded.get_submodule(key.rstrip("."))
        assert torch.all(norm.weight == 1) and torch.all(norm.bias == 0)
    mean, std = normalization(loaded, spec)
    assert tuple(mean) == pytest.approx((0.485, 0.456, 0.406))    # as VPT for every VTAB task


def test_mae_pools_prompts_and_patches_through_a_fresh_norm_as_the_official_model():
    from tests.conftest import tiny_trial
    from trainables.strategy import get_strategy
    tiny = replace(VIT_B16_MAE, weights=None, overrides=(
        *VIT_B16_MAE.overrides, ("img_size", 32), ("patch_size", 8), ("embed_dim", 32),
        ("depth", 2), ("num_heads", 2)))
    torch.manual_seed(0)
    model = get_strategy("vpt_deep").adapt(create_backbone(tiny, 10),
                                           tiny_trial("", "vpt_deep", backbone=tiny)).eval()
    assert model.num_prefix_tokens == 1                  # prompts are pooled, not skipped
    x = torch.randn(2, 3, 32, 32)
    tokens = model.forward_features(x)
    assert tokens.shape[1] == 1 + 4 + 16                 # class, 4 prompts, 16 patches
    expected = model.fc_norm(tokens[:, 1:].mean(dim=1))  # vit_mae.py:119-121 ("original")
    assert torch.allclose(model.forward_head(tokens, pre_logits=True), expected)
    drop_paths = [m.drop_prob for m in model.modules() if type(m).__name__ == "DropPath"]
    assert drop_paths and max(drop_paths) == 0.0         # the prompted encoder runs in eval


def test_swin_and_mae_carry_the_official_drop_path():
    with torch.device("meta"):
        swin = create_backbone(replace(SWIN_B_IN21K, weights=None), num_classes=10)
        mae = create_backbone(replace(VIT_B16_MAE, weights=None), num_classes=10)
    rates = [m.drop_prob for m in swin.modules() if type(m).__name__ == "DropPath"]
    assert max(rates) == pytest.approx(0.5)              # VPT build_vit_backbone.py:311
    assert mae.blocks[-1].drop_path1.drop_prob == pytest.approx(0.1)


def test_visual_prompts_on_swin_are_refused_with_a_reason():
    from common.errors import StudyInputError
    from tests.conftest import tiny_trial
    from trainables.strategy import get_strategy
    with torch.device("meta"):
        swin = create_backbone(replace(SWIN_B_IN21K, weights=None), num_classes=10)
        with pytest.raises(StudyInputError, match="need a ViT-style backbone"):
            get_strategy("vpt_deep").adapt(swin, tiny_trial("", "vpt_deep"))


def test_mocov3_keeps_its_sin_cos_position_embedding_frozen_under_full_finetuning():
    """VPT src/models/vit_backbones/vit_moco.py:27-28,52-68: `pos_embed.requires_grad = False`;
    the supervised ViT's learnt position embedding trains."""
    from common.keys import Cell
    from study.card import rows
    from study.spec import get_study
    from trainables.model import build_model
    spec = get_study("paper-backbones", strategies=("full_ft", "vpt_deep", "mixed"))
    for backbone, frozen in ((VIT_B16_MOCOV3, {"pos_embed"}), (VIT_B16_MAE, set())):
        for strategy in ("full_ft", "mixed"):
            cfg = spec.trial(stage="tune", cell=Cell(backbone.tag, "800", "cifar100", strategy),
                             point=spec.points(strategy)[0], seed=0)
            with torch.device("meta"):
                model = build_model(cfg, 100, pretrained=False)
            assert {n for n, p in model.named_parameters() if not p.requires_grad} == frozen
    moco = next(r for r in rows(spec) if r["value"].startswith("vit_b16-mocov3"))
    assert "never trained: pos_embed" in moco["value"]
    assert "sin-cos" in moco["source"] and "vit_moco.py:27-28,52-68" in moco["source"]
