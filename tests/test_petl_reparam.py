"""BitFit, LN tuning, DiffFit, SSF and RepAdapter against PETL_Vision (OSU-MLB/PETL_Vision at
245d262): a transcription of its ViT (model/vision_transformer.py, block.py, attention.py, mlp.py,
patch_embed.py, ssf.py, repadapter.py, utils.py) computes what the adapted timm model computes
with the same weights, in float64; the parameters its name selection trains
(experiment/build_model.py) are exactly the ones that train here; and on ViT-B/16 the trainable
parameters (the head aside) number what PETL_Vision records as `inserted_parameters`."""
from __future__ import annotations

import re
from functools import partial
from types import SimpleNamespace

import pytest
import timm
import torch
import torch.nn.functional as F
from timm.layers import LayerScale
from torch import nn

from common.errors import StudyInputError
from tests.conftest import TINY_VIT, tiny_trial
from trainables.strategy import get_strategy

# ---- the official code, transcribed (branches of other methods left out) ----------------------


def init_ssf_scale_shift(dim):                                  # model/ssf.py:4-11
    scale = nn.Parameter(torch.ones(dim))
    shift = nn.Parameter(torch.zeros(dim))
    nn.init.normal_(scale, mean=1, std=.02)
    nn.init.normal_(shift, std=.02)
    return scale, shift


def ssf_ada(x, scale, shift):                                   # model/ssf.py:14-21
    assert scale.shape == shift.shape
    if x.shape[-1] == scale.shape[0]:
        return x * scale + shift
    elif x.shape[1] == scale.shape[0]:
        return x * scale.view(1, -1, 1, 1) + shift.view(1, -1, 1, 1)
    raise ValueError('the input tensor shape does not match the shape of the scale factor.')


class RepAdapterPETL(nn.Module):                                # model/repadapter.py:5-27
    def __init__(self, dim, params):
        super().__init__()
        self.conv_A = nn.Conv1d(dim, params.repadapter_bottleneck, 1, groups=1, bias=True)
        self.conv_B = nn.Conv1d(params.repadapter_bottleneck, dim, 1,
                                groups=params.repadapter_group, bias=True)
        self.dropout = nn.Dropout(0.1)
        self.scale = params.repadapter_scaler
        with torch.no_grad():                                   # model/utils.py:13-17
            nn.init.xavier_uniform_(self.conv_A.weight)
            nn.init.zeros_(self.conv_B.weight)
            nn.init.zeros_(self.conv_A.bias)
            nn.init.zeros_(self.conv_B.bias)
        self.params = params

    def forward(self, x):
        x = x.transpose(1, 2)
        x = self.conv_B(self.dropout(self.conv_A(x))) * self.scale * self.params.merge_factor + x
        return x.transpose(1, 2).contiguous()


class PatchEmbedPETL(nn.Module):                                # model/patch_embed.py:14-102
    def __init__(self, patch_size, embed_dim, norm_layer, params):
        super().__init__()
        self.proj = nn.Conv2d(3, embed_dim, kernel_size=patch_size, stride=patch_size)
        self.norm = norm_layer(embed_dim) if norm_layer else nn.Identity()
        self.params, self.norm_layer = params, norm_layer
        if params.ssf:
            self.ssf_scale_1, self.ssf_shift_1 = init_ssf_scale_shift(embed_dim)
            if norm_layer:
                self.ssf_scale_2, self.ssf_shift_2 = init_ssf_scale_shift(embed_dim)

    def forward(self, x):
        x = self.proj(x).flatten(2).transpose(1, 2)
        if self.params.ssf:
            x = ssf_ada(x, self.ssf_scale_1, self.ssf_shift_1)
            if self.norm_layer:
                return ssf_ada(self.norm(x), self.ssf_scale_2, self.ssf_shift_2)
            return self.norm(x)
        return self.norm(x)


class AttentionPETL(nn.Module):                                 # model/attention.py:9-94
    def __init__(self, dim, num_heads, params):
        super().__init__()
        self.num_heads, self.head_dim = num_heads, dim // num_heads
        self.scale = self.head_dim ** -0.5
        self.qkv = nn.Linear(dim, dim * 3, bias=True)
        self.proj = nn.Linear(dim, dim)
        self.params = params
        if params.ssf:
            self.ssf_scale_qkv, self.ssf_shift_qkv = init_ssf_scale_shift(dim * 3)
            self.ssf_scale_linear, self.ssf_shift_linear = init_ssf_scale_shift(dim)

    def forward(self, x):
        B, N, C = x.shape
        qkv = ssf_ada(self.qkv(x), self.ssf_scale_qkv, self.ssf_shift_qkv) \
            if self.params.ssf else self.qkv(x)
        qkv = qkv.reshape(B, N, 3, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4)
        q, k, v = qkv.unbind(0)
        attn = ((q * self.scale) @ k.transpose(-2, -1)).softmax(dim=-1)
        x = (attn @ v).transpose(1, 2).reshape(B, N, C)
        proj = self.proj(x)
        if self.params.ssf:
            proj = ssf_ada(proj, self.ssf_scale_linear, self.ssf_shift_linear)
        return proj


class MlpPETL(nn.Module):                                       # model/mlp.py:7-69
    def __init__(self, dim, hidden, params):
        super().__init__()
        self.fc1, self.act, self.fc2 = nn.Linear(dim, hidden), nn.GELU(), nn.Linear(hidden, dim)
        self.params = params
        if params.ssf:
            self.ssf_scale_hidden, self.ssf_shift_hidden = init_ssf_scale_shift(hidden)
            self.ssf_scale_out, self.ssf_shift_out = init_ssf_scale_shift(dim)

    def forward(self, x):
        h = self.fc1(x)
        if self.params.ssf:
            h = ssf_ada(h, self.ssf_scale_hidden, self.ssf_shift_hidden)
        h = self.fc2(self.act(h))
        if self.params.ssf:
            h = ssf_ada(h, self.ssf_scale_out, self.ssf_shift_out)
        return h


class BlockPETL(nn.Module):                                     # model/block.py:21-174
    def __init__(self, dim, num_heads, init_values, norm_layer, params):
        super().__init__()
        self.norm1 = norm_layer(dim)
        self.attn = AttentionPETL(dim, num_heads, params)
        self.ls1 = LayerScale(dim, init_values=init_values) if init_values else nn.Identity()
        self.norm2 = norm_layer(dim)
        self.mlp = MlpPETL(dim, 4 * dim, params)
        self.ls2 = LayerScale(dim, init_values=init_values) if init_values else nn.Identity()
        self.params = params                                    # drop-path: off in eval
        if params.ft_attn_module:
            self.ft_attn_module = RepAdapterPETL(dim, params)
        if params.ft_mlp_module:
            self.ft_mlp_module = RepAdapterPETL(dim, params)
        if params.ssf:
            self.ssf_scale_1, self.ssf_shift_1 = init_ssf_scale_shift(dim)
            self.ssf_scale_2, self.ssf_shift_2 = init_ssf_scale_shift(dim)
        if params.difffit:
            self.difffit_gamma1 = nn.Parameter(torch.ones(dim))
            self.difffit_gamma2 = nn.Parameter(torch.ones(dim))

    def forward(self, x):
        residual_attn = x
        x_norm1 = ssf_ada(self.norm1(x), self.ssf_scale_1, self.ssf_shift_1) \
            if self.params.ssf else self.norm1(x)
        if self.params.ft_attn_module:
            assert self.params.ft_attn_mode == 'sequential_before'
            x_ft_attn = self.ls1(self.attn(self.ft_attn_module(x_norm1)))
        else:
            x_ft_attn = self.ls1(self.attn(x_norm1))
        x = self.difffit_gamma1 * x_ft_attn + residual_attn if self.params.difffit \
            else x_ft_attn + residual_attn
        residual_mlp = x
        x_norm2 = ssf_ada(self.norm2(x), self.ssf_scale_2, self.ssf_shift_2) \
            if self.params.ssf else self.norm2(x)
        if self.params.ft_mlp_module:
            assert self.params.ft_attn_mode == 'sequential_before'     # sic, block.py:154
            x_ft_mlp = self.ls2(self.mlp(self.ft_mlp_module(x_norm2)))
        else:
            x_ft_mlp = self.ls2(self.mlp(x_norm2))
        return self.difffit_gamma2 * x_ft_mlp + residual_mlp if self.params.difffit \
            else x_ft_mlp + residual_mlp


class VisionTransformerPETL(nn.Module):                         # model/vision_transformer.py
    def __init__(self, img_size, patch_size, dim, depth, num_heads, num_classes, init_values,
                 patch_norm, params):
        super().__init__()
        norm_layer = partial(nn.LayerNorm, eps=1e-6)                                  # :109
        self.patch_embed = PatchEmbedPETL(patch_size, dim, norm_layer if patch_norm else None,
                                          params)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.pos_embed = nn.Parameter(torch.zeros(1, (img_size // patch_size) ** 2 + 1, dim))
        self.params = params
        if params.ssf:                                                                # :159
            self.ssf_scale, self.ssf_shift = init_ssf_scale_shift(dim)
        self.blocks = nn.Sequential(*[BlockPETL(dim, num_heads, init_values, norm_layer, params)
                                      for _ in range(depth)])
        self.norm = norm_layer(dim)
        self.head = nn.Linear(dim, num_classes)

    def forward(self, x):                                       # :214-272, class token pool
        x = self.patch_embed(x)
        x = torch.cat([self.cls_token.expand(x.shape[0], -1, -1), x], dim=1) + self.pos_embed
        for block in self.blocks:
            x = block(x)
        x = self.norm(x)
        if self.params.ssf:
            x = ssf_ada(x, self.ssf_scale, self.ssf_shift)
        return self.head(x[:, 0])


def official_trainable(model: nn.Module, params) -> set[str]:   # experiment/build_model.py
    tune = ['ft_attn_module', 'ft_mlp_module', 'head', 'vpt', 'ssf_scale', 'ssf_shift', 'lora',
            'fact', 'vqt', 'difffit']                                                   # :13
    if params.bitfit or params.difffit:                                                 # :30
        tune.append('bias')
    if params.ln or params.difffit:                                                     # :33
        tune.append('norm')
    return {name for name, _ in model.named_parameters() if any(m in name for m in tune)}  # :77


def defaults(**method) -> SimpleNamespace:        # experiment/config/default_vtab_processed.yml
    return SimpleNamespace(**{**dict(ssf=False, difffit=False, bitfit=False, ln=False,
                                     ft_attn_module=None, ft_attn_mode='parallel',
                                     ft_mlp_module=None, ft_mlp_mode='parallel',
                                     repadapter_bottleneck=8, repadapter_scaler=1,
                                     repadapter_group=2, merge_factor=1), **method})


# ---- the project's models, and the names that correspond ---------------------------------------

REPADAPTER = dict(bottleneck=8, scaler=0.5, groups=4)
METHODS = {                                       # experiment/config/method/<name>.yml
    "bitfit": defaults(bitfit=True),
    "ln": defaults(ln=True),
    "difffit": defaults(difffit=True),
    "ssf": defaults(ssf=True),
    "repadapter": defaults(ft_attn_module='repadapter', ft_attn_mode='sequential_before',
                           ft_mlp_module='repadapter', ft_mlp_mode='sequential_before',
                           repadapter_bottleneck=REPADAPTER["bottleneck"],
                           repadapter_scaler=REPADAPTER["scaler"],
                           repadapter_group=REPADAPTER["groups"]),
}
OURS = (                                          # PETL_Vision's name -> ours (trainables.reparam)
    (r"^patch_embed\.ssf_(scale|shift)_1$", r"patch_embed.proj.ssf_\1"),
    (r"^patch_embed\.ssf_(scale|shift)_2$", r"patch_embed.norm.ssf_\1"),
    (r"^(blocks\.\d+)\.ssf_(scale|shift)_1$", r"\1.norm1.ssf_\2"),
    (r"^(blocks\.\d+)\.ssf_(scale|shift)_2$", r"\1.norm2.ssf_\2"),
    (r"\.attn\.ssf_(scale|shift)_qkv$", r".attn.qkv.ssf_\1"),
    (r"\.attn\.ssf_(scale|shift)_linear$", r".attn.proj.ssf_\1"),
    (r"\.mlp\.ssf_(scale|shift)_hidden$", r".mlp.fc1.ssf_\1"),
    (r"\.mlp\.ssf_(scale|shift)_out$", r".mlp.fc2.ssf_\1"),
    (r"^ssf_(scale|shift)$", r"norm.ssf_\1"),
    (r"\.difffit_gamma(1|2)$", r".ls\1.difffit_gamma"),
    (r"\.ft_attn_module\.", ".attn.repadapter."),
    (r"\.ft_mlp_module\.", ".mlp.repadapter."),
)


def ours(official_name: str) -> str:
    for pattern, replacement in OURS:
        official_name = re.sub(pattern, replacement, official_name)
    return official_name


# the tiny test ViT, plain, and with LayerScale and a patch-embedding norm
VARIANTS = {"plain": dict(init_values=None, patch_norm=False),
            "layerscale+patch_norm": dict(init_values=0.1, patch_norm=True)}


def pair(method: str, variant: str, seed: int = 0):
    """(official, ours): the official ViT and the project's adapted timm ViT, same dimensions,
    ours randomised (zero-initialised factors included) and its weights copied into the official
    one by the name map, which must cover every parameter both ways (strict load)."""
    options, spec = VARIANTS[variant], dict(TINY_VIT.overrides)
    torch.manual_seed(seed)
    model = timm.create_model(TINY_VIT.name, num_classes=10, init_values=options["init_values"],
                              embed_norm_layer="layernorm" if options["patch_norm"] else None,
                              **spec)
    model = get_strategy(method).prepare(model, tiny_trial("", method, **REPADAPTER)).double()
    with torch.no_grad():
        for param in model.parameters():
            param.add_(0.1 * torch.randn_like(param))
    official = VisionTransformerPETL(spec["img_size"], spec["patch_size"], spec["embed_dim"],
                                     spec["depth"], spec["num_heads"], 10, params=METHODS[method],
                                     **options).double()
    state = model.state_dict()
    official.load_state_dict({name: state[ours(name)] for name in official.state_dict()},
                             strict=True)
    assert len(official.state_dict()) == len(state)
    return official, model


NAMES = sorted(METHODS)


@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("method", NAMES)
def test_the_adapted_timm_vit_computes_what_petl_visions_vit_computes(method, variant):
    official, model = pair(method, variant)
    official.eval(), model.eval()
    images = torch.randn(4, 3, 32, 32, dtype=torch.float64)
    expected = official(images)
    torch.testing.assert_close(model(images), expected, rtol=0, atol=1e-10)
    # the added factors act: undoing the randomisation of one changes the output
    added = [p for n, p in model.named_parameters()
             if any(part in n for part in ("ssf_", "difffit", "repadapter"))]
    for param in added[:3]:
        with torch.no_grad():
            param.mul_(1.5)
        assert (model(images) - expected).abs().max() > 1e-6
        with torch.no_grad():
            param.div_(1.5)


@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("method", NAMES)
def test_what_trains_is_what_petl_visions_name_selection_trains(method, variant):
    official, model = pair(method, variant)
    expected = {ours(name) for name in official_trainable(official, METHODS[method])}
    trainable = {name for name, p in model.named_parameters() if p.requires_grad}
    assert trainable == expected
    model.train()
    optimiser = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.1)
    images, labels = torch.randn(8, 3, 32, 32, dtype=torch.float64), torch.arange(8)
    for _ in range(2):                     # the second step: past RepAdapter's zero conv_B
        optimiser.zero_grad()
        F.cross_entropy(model(images), labels).backward()
        optimiser.step()
    with_grad = {n for n, p in model.named_parameters()
                 if p.grad is not None and p.grad.abs().sum() > 0}
    assert with_grad == expected


# tune_output/default_vtab/processed_vtab/<task>/<method>/final_result.json: inserted_parameters
# (utils/log_utils.py:73: trainable parameters whose name lacks 'head'), at the task's best_tune
RECORDED = [("bitfit", "cifar", {}, 102912), ("ln", "cifar", {}, 38400),
            ("difffit", "cifar", {}, 140544), ("ssf", "cifar", {}, 205824),
            ("repadapter", "cifar", {"bottleneck": 8}, 239808),
            ("repadapter", "dtd", {"bottleneck": 16}, 461184),
            ("repadapter", "caltech101", {"bottleneck": 32}, 903936)]


@pytest.mark.parametrize("method,task,knobs,inserted", RECORDED)
def test_vit_b16_trains_as_many_parameters_as_petl_vision_records(method, task, knobs, inserted):
    with torch.device("meta"):
        model = timm.create_model("vit_base_patch16_224", num_classes=100)
        model = get_strategy(method).prepare(model, tiny_trial("", method, **knobs))
    counted = sum(p.numel() for n, p in model.named_parameters()
                  if p.requires_grad and "head" not in n)
    assert counted == inserted


def test_methods_that_add_layers_refuse_a_backbone_without_timm_vit_blocks():
    with torch.device("meta"):
        swin = timm.create_model("swin_tiny_patch4_window7_224", num_classes=10)
    for method in ("ssf", "difffit", "repadapter"):
        with pytest.raises(StudyInputError, match="timm ViT blocks"):
            get_strategy(method).prepare(swin, tiny_trial("", method))


def test_bitfit_takes_layer_biases_only():
    """On Swin, PETL_Vision's substring 'bias' would also take the relative position tables."""
    with torch.device("meta"):
        swin = timm.create_model("swin_tiny_patch4_window7_224", num_classes=10)
    trained = {n for n, p in get_strategy("bitfit").prepare(swin, tiny_trial("", "bitfit"))
               .named_parameters() if p.requires_grad}
    assert "layers.0.blocks.0.attn.qkv.bias" in trained and "head.fc.weight" in trained
    assert not any("relative_position_bias_table" in n for n in trained)


@pytest.mark.parametrize("bottleneck,groups", [(8, 3), (0, 1), (6, 4)])
def test_repadapter_refuses_groups_that_do_not_divide(bottleneck, groups):
    model = timm.create_model(TINY_VIT.name, num_classes=10, **dict(TINY_VIT.overrides))
    cfg = tiny_trial("", "repadapter", bottleneck=bottleneck, groups=groups)
    with pytest.raises(StudyInputError, match="RepAdapter needs"):
        get_strategy("repadapter").prepare(model, cfg)


@pytest.mark.parametrize("method", ["difffit", "repadapter"])
def test_difffit_and_repadapter_start_as_the_identity(method):
    torch.manual_seed(0)
    plain = timm.create_model(TINY_VIT.name, num_classes=10, **dict(TINY_VIT.overrides)).eval()
    torch.manual_seed(0)
    model = timm.create_model(TINY_VIT.name, num_classes=10, **dict(TINY_VIT.overrides))
    model = get_strategy(method).prepare(model, tiny_trial("", method)).eval()
    images = torch.randn(2, 3, 32, 32)
    torch.testing.assert_close(model(images), plain(images), rtol=0, atol=1e-6)
