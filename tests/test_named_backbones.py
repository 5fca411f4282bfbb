"""Backbones by timm name (DINOv2 ViT-B/14 with and without registers, CLIP ViT-B/16, EVA-02
B/16, any timm ViT as `timm:NAME`): each carries its pretraining normalisation; prompts enter after
the class and register tokens, after CLIP's `norm_pre`; each strategy trains the parameter count
the architecture implies; zero prompts leave the logits as they were; and what a backbone cannot
do is one line before anything runs. Models are built at depth 2 (random weights, or the meta
device for counts) to stay fast."""
from __future__ import annotations

import copy
import functools
from dataclasses import replace

import pytest
import timm
from timm.layers import LayerScale
import torch
from timm.data import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD, OPENAI_CLIP_MEAN, OPENAI_CLIP_STD

from common.errors import StudyInputError
from study.card import rows
from study.compose import resolve
from study.spec import get_backbone
from study.studies import CLIP_B16, DINOV2_B14, DINOV2_REG4_B14, EVA02_B16, NAMED_BACKBONES
from trainables.backbones import create_backbone, save_weights
from trainables.config import Recipe, TrialConfig
from trainables.model import build_model
from trainables.prompts import add_petl_prompts, add_prompts
from trainables.strategy import get_strategy

DEPTH, DIM, CLASSES, PROMPTS, RANK = 2, 768, 10, 3, 4
IMAGENET = (tuple(IMAGENET_DEFAULT_MEAN), tuple(IMAGENET_DEFAULT_STD))
CLIP = (tuple(OPENAI_CLIP_MEAN), tuple(OPENAI_CLIP_STD))
# class token + registers before the patches; whether a LayerNorm `norm_pre` precedes the blocks
PREFIX = {DINOV2_B14.tag: 1, DINOV2_REG4_B14.tag: 5, CLIP_B16.tag: 1, EVA02_B16.tag: 1}
ids = [b.tag for b in NAMED_BACKBONES]


def small(spec):
    return replace(spec, overrides=(*spec.overrides, ("depth", DEPTH)), hub_weights=False)


def vit(spec):
    """A copy of the backbone at depth 2 with random weights (made once per backbone)."""
    return copy.deepcopy(_random(spec))


@functools.cache
def _random(spec):
    """DINOv2's LayerScale set to 1: its init 1e-5 would make every block nearly the identity,
    and the prompts' effect on the logits too small to tell."""
    torch.manual_seed(0)
    model = create_backbone(small(spec), CLASSES).eval()
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, LayerScale):
                module.gamma.fill_(1.0)
    return model


def trial(spec, strategy: str) -> TrialConfig:
    recipe = Recipe("sgd", 0.1, 0.0, 1, 0, 8)
    knobs = get_strategy(strategy).knob_values(prompt_length=PROMPTS, lora_rank=RANK,
                                                    bottleneck=RANK)
    return TrialConfig("test", "tune", "digits", strategy, small(spec), recipe, 0, "train800",
                       "val200", knobs=knobs, prior_recipe=recipe)


def trainable(spec, strategy: str) -> int:
    with torch.device("meta"):
        model = build_model(trial(spec, strategy), CLASSES, pretrained=False)
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def test_each_is_named_with_its_pretraining_normalisation():
    expected = {DINOV2_B14: IMAGENET, DINOV2_REG4_B14: IMAGENET, CLIP_B16: CLIP, EVA02_B16: CLIP}
    for spec, mean_std in expected.items():
        assert get_backbone(spec.tag)[0] is spec
        assert spec.hub_weights and spec.weights is None
        assert [*spec.mean_std[0], *spec.mean_std[1]] == pytest.approx([*mean_std[0], *mean_std[1]])
        cfg = timm.models.get_pretrained_cfg(spec.name)
        assert spec.mean_std == (tuple(cfg.mean), tuple(cfg.std))


def test_any_timm_vit_by_name_with_a_weights_file_and_its_card_row():
    spec, _ = resolve("demo", {"backbone": "timm:vit_base_patch16_clip_224.openai",
                               "weights": "backbones/clip.safetensors"})
    backbone, = spec.backbones
    assert (backbone.name, backbone.weights, backbone.hub_weights, spec.upstream) == (
        "vit_base_patch16_clip_224.openai", "backbones/clip.safetensors", False, None)
    assert backbone.mean_std == CLIP
    row = next(r for r in rows(spec) if r["setting"] == "backbone")
    assert "timm vit_base_patch16_clip_224.openai" in row["value"]
    assert "OpenAI CLIP (mean (0.48145466" in row["value"]
    hub, _ = resolve("demo", {"backbone": "dinov2-vitb14"})
    assert "weights timm's hub; normalisation ImageNet" in next(
        r for r in rows(hub) if r["setting"] == "backbone")["value"]


@pytest.mark.parametrize("name, says", [
    ("timm:swin_base_patch4_window7_224", "is a SwinTransformer, not a ViT"),
    ("timm:resnet50", "is a ResNet, not a ViT"),
    ("timm:no_such_model", "timm has no model 'no_such_model'"),
    ("no-such-backbone", "no-such-backbone.*; or any timm ViT as timm:NAME")])
def test_what_is_not_a_timm_vit_is_one_line(name, says):
    with pytest.raises(StudyInputError, match=says) as error:
        resolve("demo", {"backbone": name})
    assert "\n" not in str(error.value)


def test_a_weights_file_is_for_one_backbone():
    with pytest.raises(StudyInputError, match="a weights file is for one backbone"):
        resolve("demo", {"backbone": "clip-vitb16,dinov2-vitb14", "weights": "w.safetensors"})


@pytest.mark.parametrize("spec", NAMED_BACKBONES, ids=ids)
def test_prompts_follow_the_class_and_register_tokens_after_norm_pre(spec):
    model = vit(spec)
    prefix = model.num_prefix_tokens
    assert prefix == PREFIX[spec.tag]
    image = torch.randn(2, 3, *model.patch_embed.img_size)
    with torch.no_grad():
        embedded = model._pos_embed(model.patch_embed(image))
        tokens = model.norm_pre(embedded[0] if isinstance(embedded, tuple) else embedded)
    if spec is CLIP_B16:             # the check would be empty with an identity norm_pre
        assert isinstance(model.norm_pre, torch.nn.LayerNorm)
    add_prompts(model, PROMPTS, deep=True, dropout=0.0)
    seen = []
    model.blocks[0].register_forward_pre_hook(lambda _m, args: seen.append(args[0]))
    with torch.no_grad():
        model(image)
    x = seen[0]
    assert x.shape[1] == tokens.shape[1] + PROMPTS
    torch.testing.assert_close(x[:, :prefix], tokens[:, :prefix])
    torch.testing.assert_close(x[:, prefix:prefix + PROMPTS],
                               model.prompt.embeddings.expand(2, -1, -1))
    torch.testing.assert_close(x[:, prefix + PROMPTS:], tokens[:, prefix:])
    assert model.num_prefix_tokens == prefix + PROMPTS     # pooling skips the prompts


@pytest.mark.parametrize("spec", NAMED_BACKBONES, ids=ids)
@pytest.mark.parametrize("prompting", [add_prompts, add_petl_prompts])
def test_zero_prompts_leave_the_logits_and_prompts_change_them(spec, prompting):
    image = torch.randn(1, 3, 224, 224)
    with torch.no_grad():
        plain = vit(spec)(image)
        empty = prompting(vit(spec), 0, deep=True, dropout=0.0)(image)
        prompted = prompting(vit(spec), PROMPTS, deep=True, dropout=0.0)(image)
    torch.testing.assert_close(empty, plain)
    assert not torch.allclose(prompted, plain, atol=1e-4)


def layernorm_values(spec) -> int:
    """LayerNorm weights and biases: a timm ViT's two per block, the final norm and CLIP's
    norm_pre; EVA-02's three per block (its attention's sub-LN too) and its SwiGLU's hidden norm
    (width 4 x 2/3 x D = 2048)."""
    if spec is EVA02_B16:
        return 2 * (DEPTH * (3 * DIM + 2048) + DIM)
    return 2 * DIM * (2 * DEPTH + 1 + (spec is CLIP_B16))


HEAD = DIM * CLASSES + CLASSES
LORA = DEPTH * RANK * (DIM + 3 * DIM)               # A: r x D, B: 3D x r on each block's qkv
EXPECTED = {"linear": lambda s: HEAD, "vpt_shallow": lambda s: PROMPTS * DIM + HEAD,
            "vpt_deep": lambda s: DEPTH * PROMPTS * DIM + HEAD,
            "petl_vpt_shallow": lambda s: PROMPTS * DIM + HEAD,
            "petl_vpt_deep": lambda s: DEPTH * PROMPTS * DIM + HEAD,
            "ft_then_pt": lambda s: DEPTH * PROMPTS * DIM + HEAD,
            "lora": lambda s: LORA + HEAD, "petl_lora": lambda s: LORA + HEAD,
            "ln": lambda s: layernorm_values(s) + HEAD}
REFUSED = {EVA02_B16.tag: ("lora", "petl_lora", "convpass", "adaptformer", "ssf",
                           "fact_tt", "repadapter"),
           DINOV2_REG4_B14.tag: ("convpass",)}


@pytest.mark.parametrize("spec", NAMED_BACKBONES, ids=ids)
def test_each_strategy_trains_what_the_architecture_implies(spec):
    refused = REFUSED.get(spec.tag, ())
    for strategy, expected in EXPECTED.items():
        if strategy not in refused:
            assert trainable(spec, strategy) == expected(spec), strategy
    with torch.device("meta"):
        model = create_backbone(small(spec), CLASSES)
    assert trainable(spec, "full_ft") == sum(p.numel() for p in model.parameters())
    assert trainable(spec, "mixed") == trainable(spec, "full_ft") + DEPTH * PROMPTS * DIM


@pytest.mark.parametrize("spec, strategy", [
    (spec, strategy) for spec in NAMED_BACKBONES
    for strategy in REFUSED.get(spec.tag, ())], ids=str)
def test_what_a_backbone_cannot_do_is_one_line(spec, strategy):
    with pytest.raises(StudyInputError) as error:
        trainable(spec, strategy)
    assert "\n" not in str(error.value)


def test_a_prompt_length_below_one_is_refused():
    with pytest.raises(StudyInputError, match="prompt_length must be >= 1"):
        with torch.device("meta"):
            build_model(replace(trial(CLIP_B16, "vpt_deep"),
                                knobs=get_strategy("vpt_deep").knob_values(prompt_length=0)),
                        CLASSES, pretrained=False)


def test_a_dinov2_weights_file_at_518_pixels_loads_into_the_224_pixel_model(tmp_path):
    """The hub's DINOv2 layout (a 37 x 37 position grid): its position embedding is resampled to
    16 x 16 on loading, every other weight read as it is."""
    torch.manual_seed(0)
    source = timm.create_model(DINOV2_REG4_B14.name, depth=DEPTH, num_classes=0)
    save_weights(source, tmp_path / "dinov2.safetensors")
    spec, _ = resolve("demo", {"backbone": DINOV2_REG4_B14.tag, "weights": "dinov2.safetensors"})
    model = create_backbone(small(spec.backbones[0]), CLASSES, cache_dir=tmp_path)
    assert (source.pos_embed.shape[1], model.pos_embed.shape[1]) == (37 * 37, 16 * 16)
    for name in ("reg_token", "cls_token", "blocks.1.attn.qkv.weight", "blocks.1.ls2.gamma"):
        torch.testing.assert_close(model.get_parameter(name), source.get_parameter(name))
