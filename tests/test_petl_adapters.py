"""PETL_Vision's adapter methods (adaptformer, rand_h_adapter, rand_p_adapter, lora_p_adapter,
convpass) against a transcription of the official code (OSU-MLB/PETL_Vision at 245d262:
model/block.py, model/adapter.py, model/convpass.py, model/utils.py and the method configs): the
same outputs in float64, in eval mode and in train mode with drop-path and dropout drawing the same
random numbers; the same initial weights for the same seed; the same parameter names, of which
exactly the ones PETL_Vision's TUNE_MODULES select train; and the trainable parameter count on
ViT-B/16 that PETL_Vision recorded."""
from __future__ import annotations

import copy
import math
from dataclasses import replace
from types import SimpleNamespace

import pytest
import timm
import torch
from torch import nn

from common.errors import StudyInputError
from tests.conftest import TINY_VIT, tiny_trial
from trainables.backbones import create_backbone
from trainables.config import BackboneSpec
from trainables.model import build_model
from trainables.strategy import get_strategy


# ---- transcription of the official code ---------------------------------------------------------

def official_init_weight(down, up, option):                    # model/utils.py:6-29
    with torch.no_grad():
        if option == 'lora_kaiming':
            nn.init.kaiming_uniform_(down.weight, a=math.sqrt(5))
            nn.init.zeros_(up.weight)
            nn.init.zeros_(down.bias)
            nn.init.zeros_(up.bias)
        elif option == 'lora_xavier':
            nn.init.xavier_uniform_(down.weight)
            nn.init.zeros_(up.weight)
            nn.init.zeros_(down.bias)
            nn.init.zeros_(up.bias)
        elif option == 'xavier':
            nn.init.xavier_uniform_(down.weight)
            nn.init.xavier_uniform_(up.weight)
            nn.init.normal_(down.bias, std=1e-6)
            nn.init.normal_(up.bias, std=1e-6)
        else:
            raise NotImplementedError


class OfficialAdapter(nn.Module):                               # model/adapter.py:8-54
    def __init__(self, dim, params):
        super().__init__()
        self.n_embd = dim
        self.down_size = params.adapter_bottleneck
        self.dropout = 0.1
        self.scale = float(params.adapter_scaler)
        self.down_proj = nn.Linear(self.n_embd, self.down_size)
        self.non_linear_func = nn.ReLU()
        self.up_proj = nn.Linear(self.down_size, self.n_embd)
        official_init_weight(self.down_proj, self.up_proj, params.adapter_init)
        self.params = params

    def forward(self, x, add_residual=False, residual=None):
        residual = x if residual is None else residual
        down = self.down_proj(x)
        down = self.non_linear_func(down)
        down = nn.functional.dropout(down, p=self.dropout, training=self.training)
        up = self.up_proj(down)
        up = up * self.scale
        if add_residual:
            output = up * self.params.merge_factor + residual
        else:
            output = up * self.params.merge_factor
        return output


class QuickGELU(nn.Module):                                     # model/convpass.py:53-55
    def forward(self, x):
        return x * torch.sigmoid(1.702 * x)


class OfficialConvPass(nn.Module):                              # model/convpass.py:5-50
    def __init__(self, dim, params=None):
        super().__init__()
        self.bottleneck = params.convpass_bottleneck
        self.adapter_conv = nn.Conv2d(self.bottleneck, self.bottleneck, 3, 1, 1)
        if params.convpass_xavier_init:
            nn.init.xavier_uniform_(self.adapter_conv.weight)
        else:
            nn.init.zeros_(self.adapter_conv.weight)
            self.adapter_conv.weight.data[:, :, 1, 1] += torch.eye(self.bottleneck,
                                                                   dtype=torch.float)
        nn.init.zeros_(self.adapter_conv.bias)
        self.adapter_down = nn.Linear(dim, self.bottleneck)
        self.adapter_up = nn.Linear(self.bottleneck, dim)
        official_init_weight(self.adapter_down, self.adapter_up, params.convpass_init)
        self.act = QuickGELU()
        self.dropout = nn.Dropout(0.1)
        self.scale = params.convpass_scaler
        self.patch_num = params.crop_size // params.patch_size
        self.params = params

    def forward(self, x):
        B, N, C = x.shape
        x_down = self.adapter_down(x)
        x_down = self.act(x_down)
        x_patch = x_down[:, 1:].reshape(B, self.patch_num, self.patch_num,
                                        self.bottleneck).permute(0, 3, 1, 2)
        x_patch = self.adapter_conv(x_patch)
        x_patch = x_patch.permute(0, 2, 3, 1).reshape(B, self.patch_num * self.patch_num,
                                                      self.bottleneck)
        x_cls = x_down[:, :1].reshape(B, 1, 1, self.bottleneck).permute(0, 3, 1, 2)
        x_cls = self.adapter_conv(x_cls)
        x_cls = x_cls.permute(0, 2, 3, 1).reshape(B, 1, self.bottleneck)
        x_down = torch.cat([x_cls, x_patch], dim=1)
        x_down = self.act(x_down)
        x_down = self.dropout(x_down)
        x_up = self.adapter_up(x_down)
        x_up = x_up * self.scale * self.params.merge_factor
        return x_up


MODULE_REGISTRY = {'adapter': OfficialAdapter, 'convpass': OfficialConvPass}


class OfficialBlock(nn.Module):
    """BlockPETL (model/block.py:21-174) without SSF / DiffFit, on a timm block's own norm,
    attention, MLP, layer scale and drop-path (AttentionPETL and MlpPETL are timm's Attention and
    Mlp when no LoRA, FacT or SSF is set)."""

    def __init__(self, block, params):
        super().__init__()
        for name in ("norm1", "attn", "ls1", "drop_path1", "norm2", "mlp", "ls2", "drop_path2"):
            setattr(self, name, getattr(block, name))
        self.params = params
        if params.ft_attn_module:
            self.ft_attn_module = MODULE_REGISTRY[params.ft_attn_module](dim=params.dim,
                                                                         params=params)
        if params.ft_mlp_module:
            self.ft_mlp_module = MODULE_REGISTRY[params.ft_mlp_module](dim=params.dim,
                                                                       params=params)

    def forward(self, x):                                       # model/block.py:89-174
        residual_attn = x
        x_norm1 = self.norm1(x)
        if self.params.ft_attn_module:
            if self.params.ft_attn_mode == 'parallel':
                x_original = self.drop_path1(self.ls1(self.attn(x_norm1)))
                if self.params.ft_attn_ln == 'before':
                    x_ft_attn = self.drop_path1(self.ls1(self.ft_attn_module(x))) + x_original
                elif self.params.ft_attn_ln == 'after':
                    x_ft_attn = self.drop_path1(self.ls1(self.ft_attn_module(x_norm1))) + x_original
                else:
                    raise NotImplementedError
            elif self.params.ft_attn_mode == 'sequential_after':
                x_original = self.drop_path1(self.ls1(self.attn(x_norm1)))
                x_ft_attn = self.drop_path1(self.ls1(self.ft_attn_module(x_original,
                                                                         add_residual=True)))
            else:
                raise NotImplementedError
        else:
            x_ft_attn = self.drop_path1(self.ls1(self.attn(x_norm1)))
        x = x_ft_attn + residual_attn

        residual_mlp = x
        x_norm2 = self.norm2(x)
        if self.params.ft_mlp_module:
            if self.params.ft_mlp_mode == 'parallel':
                x_original = self.drop_path2(self.ls2(self.mlp(x_norm2)))
                if self.params.ft_mlp_ln == 'before':
                    x_ft_mlp = self.drop_path2(self.ls2(self.ft_mlp_module(x))) + x_original
                elif self.params.ft_mlp_ln == 'after':
                    x_ft_mlp = self.drop_path2(self.ls2(self.ft_mlp_module(x_norm2))) + x_original
                else:
                    raise NotImplementedError
            elif self.params.ft_mlp_mode == 'sequential_after':
                x_original = self.drop_path2(self.ls2(self.mlp(x_norm2)))
                x_ft_mlp = self.drop_path2(self.ls2(self.ft_mlp_module(x_original,
                                                                       add_residual=True)))
            else:
                raise NotImplementedError
        else:
            x_ft_mlp = self.drop_path2(self.ls2(self.mlp(x_norm2)))
        return x_ft_mlp + residual_mlp


DEFAULTS = dict(                   # experiment/config/default_vtab_processed.yml:15-27, 60
    ft_attn_module=None, ft_attn_mode="parallel", ft_attn_ln="before", ft_mlp_module=None,
    ft_mlp_mode="parallel", ft_mlp_ln="before", adapter_bottleneck=64,
    adapter_init="lora_kaiming", adapter_scaler=0.1, convpass_bottleneck=8,
    convpass_xavier_init=False, convpass_init="lora_xavier", convpass_scaler=10, merge_factor=1)
METHODS = {                        # experiment/config/method/<method>.yml, searched keys aside
    "adaptformer": dict(ft_mlp_module="adapter", ft_mlp_mode="parallel", ft_mlp_ln="before",
                        adapter_init="lora_kaiming"),
    "rand_h_adapter": dict(ft_mlp_module="adapter", ft_mlp_mode="sequential_after",
                           ft_attn_module="adapter", ft_attn_mode="sequential_after",
                           adapter_init="xavier"),
    "rand_p_adapter": dict(ft_mlp_module="adapter", ft_mlp_mode="sequential_after",
                           adapter_init="xavier"),
    "lora_p_adapter": dict(ft_mlp_module="adapter", ft_mlp_mode="sequential_after",
                           adapter_init="lora_xavier"),
    "convpass": dict(ft_attn_module="convpass", ft_attn_mode="parallel", ft_attn_ln="after",
                     ft_mlp_module="convpass", ft_mlp_mode="parallel", ft_mlp_ln="after"),
}
TUNE_MODULES = ['ft_attn_module', 'ft_mlp_module', 'head', 'vpt', 'ssf_scale', 'ssf_shift',
                'lora', 'fact', 'vqt', 'difffit']        # experiment/build_model.py:13-14


def official_params(method: str, vit: nn.Module, knobs: dict) -> SimpleNamespace:
    prefix = "convpass" if method == "convpass" else "adapter"
    searched = {f"{prefix}_{name}": value for name, value in knobs.items()}
    return SimpleNamespace(**{**DEFAULTS, **METHODS[method], **searched}, dim=vit.embed_dim,
                           crop_size=vit.patch_embed.img_size[0],
                           patch_size=vit.patch_embed.patch_size[0])


def official_model(vit: nn.Module, method: str, knobs: dict) -> nn.Module:
    """`vit` with every block a transcribed BlockPETL for `method`, built in block order as
    VisionTransformerPETL builds them."""
    params = official_params(method, vit, knobs)
    for index, block in enumerate(vit.blocks):
        vit.blocks[index] = OfficialBlock(block, params)
    return vit


# ---- the project's strategies against it --------------------------------------------------------

ADAPTERS = ("adaptformer", "rand_h_adapter", "rand_p_adapter", "lora_p_adapter")
# the init the module files write (timm_init=False); `test_timm_init_draws_the_added_linears_again`
# covers the draw PETL_Vision's runs start from
CASES = [(name, dict(bottleneck=4, scaler=0.7, timm_init=False)) for name in ADAPTERS] + [
    ("convpass", dict(bottleneck=6, scaler=0.7, xavier_init=False, timm_init=False)),
    ("convpass", dict(bottleneck=6, scaler=0.7, xavier_init=True, timm_init=False))]
IDS = [f"{name}-{'-'.join(map(str, knobs.values()))}" for name, knobs in CASES]


@pytest.mark.parametrize("method", ["adaptformer", "rand_h_adapter", "convpass"])
def test_timm_init_draws_the_added_linears_again(method):
    """PETL_Vision's ViT runs timm's init_weights after building the adapters
    (model/vision_transformer.py:207-208): every added nn.Linear starts truncated-normal with
    std 0.02 and a zero bias, so no method starts as the frozen model."""
    torch.manual_seed(0)
    plain = create_backbone(TINY_VIT, num_classes=10).eval()
    model = get_strategy(method).prepare(copy.deepcopy(plain), tiny_trial("", method)).eval()
    linears = [m for name, m in model.named_modules()
               if "ft_" in name and isinstance(m, nn.Linear)]
    assert linears
    weights = torch.cat([m.weight.flatten() for m in linears])
    assert 0.015 < weights.std().item() < 0.025
    assert all(torch.equal(m.bias, torch.zeros_like(m.bias)) for m in linears)
    x = images().float()
    with torch.no_grad():
        assert (model(x) - plain(x)).abs().max() > 1e-4


def tiny_spec(drop_path: float = 0.0) -> BackboneSpec:
    return replace(TINY_VIT, overrides=TINY_VIT.overrides + (("drop_path_rate", drop_path),))


def pair(method: str, knobs: dict, drop_path: float = 0.0, seed: int = 0):
    """(plain, ours, official): the tiny ViT, the strategy's model of it and the transcribed
    official model, each float64, with the added modules of both built from the same seed."""
    torch.manual_seed(seed)
    spec = tiny_spec(drop_path)
    plain = create_backbone(spec, num_classes=10)
    official_base = copy.deepcopy(plain)
    torch.manual_seed(seed + 1)
    ours = get_strategy(method).prepare(copy.deepcopy(plain),
                                        tiny_trial("", method, backbone=spec, **knobs))
    torch.manual_seed(seed + 1)
    official = official_model(official_base, method, knobs)
    return plain.double(), ours.double(), official.double()


def randomise_added(model: nn.Module, seed: int = 3) -> None:
    """Random values for the added modules (their up projections start at zero)."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if "ft_" in name:
                param.copy_(torch.randn(param.shape, generator=generator, dtype=param.dtype) * 0.3)


def images(n: int = 4) -> torch.Tensor:
    return torch.randn(n, 3, 32, 32, generator=torch.Generator().manual_seed(7),
                       dtype=torch.float64)


@pytest.mark.parametrize("method,knobs", CASES, ids=IDS)
def test_added_modules_start_as_petl_visions_for_the_same_seed(method, knobs):
    _, ours, official = pair(method, knobs)
    theirs = official.state_dict()
    assert ours.state_dict().keys() == theirs.keys()
    added = [name for name in theirs if "ft_" in name]
    assert added, "no module added"
    for name in added:
        assert torch.equal(ours.state_dict()[name], theirs[name]), name


@pytest.mark.parametrize("method,knobs", CASES, ids=IDS)
def test_forward_equals_petl_visions_in_eval_mode(method, knobs):
    plain, ours, official = pair(method, knobs)
    randomise_added(ours)
    official.load_state_dict(ours.state_dict(), strict=True)     # same names, every one
    x = images()
    ours.eval(), official.eval(), plain.eval()
    with torch.no_grad():
        mine = ours(x)
        torch.testing.assert_close(mine, official(x), rtol=0, atol=1e-10)
        assert (mine - plain(x)).abs().max() > 1e-3, "the added modules do nothing"


@pytest.mark.parametrize("method,knobs", CASES, ids=IDS)
def test_forward_equals_petl_visions_in_train_mode_with_drop_path(method, knobs):
    """PETL_Vision trains the whole model in train mode (engine/trainer.py:100): each drop-path
    call draws its own mask (two per branch), and the adapters' dropout acts."""
    _, ours, official = pair(method, knobs, drop_path=0.5)
    randomise_added(ours)
    official.load_state_dict(ours.state_dict(), strict=True)
    x = images()
    ours.train(), official.train()
    with torch.no_grad():
        torch.manual_seed(11)
        mine = ours(x)
        torch.manual_seed(11)
        torch.testing.assert_close(mine, official(x), rtol=0, atol=1e-10)
        ours.eval()
        assert (mine - ours(x)).abs().max() > 1e-3, "drop-path and dropout did not act"


@pytest.mark.parametrize("method", sorted(METHODS))
def test_exactly_what_petl_visions_tune_modules_select_receives_gradients(method):
    # 16 ReLU units: on the random tiny ViT an adapter's input is small, so its units are about
    # relu(bias), and 4 of them can all be off for the whole batch
    knobs = {**dict(CASES)[method], "bottleneck": 16}
    _, ours, official = pair(method, knobs)
    tuned = {name for name, _ in official.named_parameters()
             if any(module in name for module in TUNE_MODULES)}
    assert {name for name, p in ours.named_parameters() if p.requires_grad} == tuned
    randomise_added(ours)
    ours.train()
    nn.functional.cross_entropy(ours(images()), torch.arange(4)).backward()
    with_grad = {name for name, p in ours.named_parameters()
                 if p.grad is not None and p.grad.abs().sum() > 0}
    assert with_grad == tuned


@pytest.mark.parametrize("method", ["adaptformer", "lora_p_adapter", "convpass"])
def test_zero_started_methods_start_as_the_frozen_model(method):
    plain, ours, _ = pair(method, dict(CASES)[method])
    plain.eval(), ours.eval()
    with torch.no_grad():
        torch.testing.assert_close(ours(images()), plain(images()), rtol=0, atol=1e-12)


# tune_output/default_vtab/processed_vtab/caltech101/<method>/final_result.json at 245d262:
# best_tune and inserted_parameters (trainable parameters without the head). rand_p_adapter has no
# recorded run there; its architecture is lora_p_adapter's (only the init differs).
RECORDED = {
    "adaptformer": (dict(bottleneck=32, scaler=0.05), 599424),
    "rand_h_adapter": (dict(bottleneck=8, scaler=1.0), 313536),
    "rand_p_adapter": (dict(bottleneck=64, scaler=1.0), 1189632),
    "lora_p_adapter": (dict(bottleneck=64, scaler=1.0), 1189632),
    "convpass": (dict(bottleneck=16, scaler=0.1, xavier_init=False), 664320),
}


@pytest.mark.parametrize("method", sorted(RECORDED))
def test_trainable_parameters_on_vit_b16_are_what_petl_vision_recorded(method):
    knobs, recorded = RECORDED[method]
    backbone = BackboneSpec("vit_base_patch16_224")
    with torch.device("meta"):
        model = build_model(tiny_trial("", method, backbone=backbone, **knobs), 102,
                            pretrained=False)
    inserted = sum(p.numel() for name, p in model.named_parameters()
                   if p.requires_grad and "head" not in name)     # utils/log_utils.py:73
    assert inserted == recorded


@pytest.mark.parametrize("method", sorted(METHODS))
def test_a_backbone_without_vit_blocks_is_refused_in_one_line(method):
    with torch.device("meta"):
        swin = timm.create_model("swin_tiny_patch4_window7_224", num_classes=2)
    with pytest.raises(StudyInputError, match="ViT|vision_transformer"):
        get_strategy(method).prepare(swin, tiny_trial("", method))


def test_convpass_refuses_tokens_that_are_not_a_class_token_then_the_patch_grid():
    with torch.device("meta"):
        registers = timm.create_model("vit_tiny_patch16_224", reg_tokens=4, num_classes=2)
    with pytest.raises(StudyInputError, match="one class token then the patch grid"):
        get_strategy("convpass").prepare(registers, tiny_trial("", "convpass"))
