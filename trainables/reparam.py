"""The PETL methods whose trained update folds into the weights, on a timm VisionTransformer, as
PETL_Vision (Mai et al., CVPR 2025; OSU-MLB/PETL_Vision at 245d262) builds them into its own ViT:
SSF's scale and shift after each layer, DiffFit's per-channel gamma on both residual branches,
RepAdapter's grouped bottleneck before attention and before the MLP; and the name rules by which
BitFit, LN tuning and DiffFit pick the pretrained weights they train (PETL_Vision selects by
substring of the parameter name: experiment/build_model.py:13-34,77, 'head' always included).

timm is not forked: each added parameter lives on the module whose input or output it changes,
and a forward (pre-)hook of that module applies it (module-level hook functions, no closures), so
timm's own parameter names stay as they are. PETL_Vision's names and ours:

    patch_embed.ssf_{scale,shift}_1          patch_embed.proj.ssf_{scale,shift} (per channel)
    patch_embed.ssf_*_2 (with a patch norm)  patch_embed.norm.ssf_*
    blocks.i.ssf_*_1, blocks.i.ssf_*_2       blocks.i.norm1.ssf_*, blocks.i.norm2.ssf_*
    blocks.i.attn.ssf_*_qkv, _linear         blocks.i.attn.qkv.ssf_*, blocks.i.attn.proj.ssf_*
    blocks.i.mlp.ssf_*_hidden, _out          blocks.i.mlp.fc1.ssf_*, blocks.i.mlp.fc2.ssf_*
    ssf_* (after the final norm)             norm.ssf_*
    blocks.i.difffit_gamma1, _gamma2         blocks.i.ls1.difffit_gamma, blocks.i.ls2.difffit_gamma
    blocks.i.ft_attn_module.*, ft_mlp_module.*   blocks.i.attn.repadapter.*, blocks.i.mlp.repadapter.*

Every other parameter name is the same in both (PETL_Vision's ViT subclasses timm's), so its
substrings 'bias' and 'norm' select the same pretrained weights here: on ViT-B/16 every bias
(patch_embed.proj, qkv, attn.proj, fc1, fc2, the LayerNorms', the head's) and every LayerNorm
(norm1, norm2, the final norm; fc_norm, norm_pre, patch_embed.norm where a backbone has them)."""
from __future__ import annotations

from typing import Callable

import torch
from timm.layers import Mlp
from timm.layers.attention import Attention
from timm.models.vision_transformer import Block
from torch import nn

from common.errors import StudyInputError
from trainables.strategy import head_only

REPADAPTER_DROPOUT = 0.1        # PETL_Vision model/repadapter.py:16, fixed


def vit_blocks(vit: nn.Module, method: str) -> list[Block]:
    """The blocks of a timm VisionTransformer, or a one-line error naming what is not one: the
    hooks below sit where timm's `Block`, `Attention` and `Mlp` call their layers."""
    blocks = list(getattr(vit, "blocks", ()))
    if not (blocks and hasattr(vit, "patch_embed") and hasattr(vit, "norm")) or not all(
            type(b) is Block and type(b.attn) is Attention and type(b.mlp) is Mlp
            for b in blocks):
        raise StudyInputError(f"{method} is defined on timm ViT blocks (Block, Attention, Mlp); "
                              f"{type(vit).__name__} does not have them")
    return blocks


# -- which parameters train, by name --------------------------------------------------------

def bias(name: str) -> bool:
    """A layer's bias. PETL_Vision's substring 'bias' selects the same on a ViT; on Swin it would
    also take the relative position bias tables, which are no layer's bias."""
    return name.endswith(".bias")


def norm(name: str) -> bool:
    """A normalisation layer's weight or bias (PETL_Vision's substring 'norm')."""
    return "norm" in name


def ssf(name: str) -> bool:
    return name.endswith((".ssf_scale", ".ssf_shift"))


def difffit_gamma(name: str) -> bool:
    return name.endswith(".difffit_gamma")


def repadapter(name: str) -> bool:
    return ".repadapter." in name


def head_and(*rules: Callable[[str], bool]) -> Callable[[str], bool]:
    """A strategy's `trains`: the head and whatever one of `rules` names."""
    def trains(name: str) -> bool:
        return head_only(name) or any(rule(name) for rule in rules)
    return trains


# -- SSF ----------------------------------------------------------------------------------------

def _scale_shift(module: nn.Module, args, output: torch.Tensor) -> torch.Tensor:
    """model/ssf.py:14-21 `ssf_ada`: x * scale + shift on the channels (dim 1 of a conv's
    NCHW output, as PETL_Vision applies it after the patch embedding's flatten)."""
    scale, shift = module.ssf_scale, module.ssf_shift
    if isinstance(module, nn.Conv2d):
        scale, shift = scale[:, None, None], shift[:, None, None]
    return output * scale + shift


def _add_scale_shift(host: nn.Module, dim: int) -> None:
    """model/ssf.py:4-11 `init_ssf_scale_shift`: scale ~ N(1, 0.02), shift ~ N(0, 0.02)."""
    host.ssf_scale = nn.Parameter(torch.empty(dim).normal_(mean=1.0, std=0.02))
    host.ssf_shift = nn.Parameter(torch.empty(dim).normal_(std=0.02))
    host.register_forward_hook(_scale_shift)


def add_ssf(vit: nn.Module) -> nn.Module:
    """A scale and shift after the patch projection (and the patch norm if any), after norm1,
    qkv, attn.proj, norm2, fc1 and fc2 of every block, and after the final norm, where
    PETL_Vision puts them (model/patch_embed.py:61-64,93-98; block.py:78-80,93-94,134-135;
    attention.py:40-42,50-51,88-89; mlp.py:40-42,50-51,62-63; vision_transformer.py:159-160,
    246-247)."""
    blocks = vit_blocks(vit, "SSF")
    embed = vit.patch_embed
    _add_scale_shift(embed.proj, embed.proj.out_channels)
    if not isinstance(embed.norm, nn.Identity):
        _add_scale_shift(embed.norm, vit.embed_dim)
    for block in blocks:
        dim = block.attn.qkv.in_features
        _add_scale_shift(block.norm1, dim)
        _add_scale_shift(block.attn.qkv, block.attn.qkv.out_features)
        _add_scale_shift(block.attn.proj, block.attn.proj.out_features)
        _add_scale_shift(block.norm2, dim)
        _add_scale_shift(block.mlp.fc1, block.mlp.fc1.out_features)
        _add_scale_shift(block.mlp.fc2, block.mlp.fc2.out_features)
    _add_scale_shift(vit.norm, vit.num_features)
    return vit


# -- DiffFit --------------------------------------------------------------------------------------

def _times_gamma(module: nn.Module, args, output: torch.Tensor) -> torch.Tensor:
    return output * module.difffit_gamma


def add_difffit(vit: nn.Module) -> nn.Module:
    """x + gamma * branch on both residual branches of every block, gamma initialised to ones
    (model/block.py:82-84,123-126,165-168). timm's Block computes x + drop_path(ls(branch)): the
    gamma scales ls's output, and drop-path (one factor per sample) commutes with it."""
    for block in vit_blocks(vit, "DiffFit"):
        dim = block.attn.qkv.in_features
        for layer_scale in (block.ls1, block.ls2):
            layer_scale.difffit_gamma = nn.Parameter(torch.ones(dim))
            layer_scale.register_forward_hook(_times_gamma)
    return vit


# -- RepAdapter -----------------------------------------------------------------------------------

class RepAdapter(nn.Module):
    """model/repadapter.py:5-27: x + scale * conv_B(dropout(conv_A(x))) over the channels, conv_A
    dim -> bottleneck, conv_B bottleneck -> dim in `groups` groups, both 1x1 with bias; init
    'lora_xavier' (default_vtab_processed.yml:38; model/utils.py:13-17): conv_A's weight
    Xavier-uniform, the rest zero, so the adapter starts as the identity. PETL_Vision's
    `merge_factor` (1 unless its WiSE-style merging scripts run) is left out."""

    def __init__(self, dim: int, bottleneck: int, groups: int, scale: float):
        super().__init__()
        if bottleneck < 1 or groups < 1 or bottleneck % groups or dim % groups:
            raise StudyInputError(f"RepAdapter needs a bottleneck >= 1 and groups dividing both "
                                  f"it and the width {dim}; got bottleneck {bottleneck}, "
                                  f"groups {groups}")
        self.conv_A = nn.Conv1d(dim, bottleneck, 1, groups=1, bias=True)
        self.conv_B = nn.Conv1d(bottleneck, dim, 1, groups=groups, bias=True)
        self.dropout = nn.Dropout(REPADAPTER_DROPOUT)
        self.scale = scale
        nn.init.xavier_uniform_(self.conv_A.weight)
        for zeroed in (self.conv_B.weight, self.conv_A.bias, self.conv_B.bias):
            nn.init.zeros_(zeroed)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        channels = x.transpose(1, 2)
        update = self.conv_B(self.dropout(self.conv_A(channels))) * self.scale
        return (update + channels).transpose(1, 2)


def _adapt_input(module: nn.Module, args):
    return (module.repadapter(args[0]), *args[1:])


def add_repadapter(vit: nn.Module, bottleneck: int, groups: int, scale: float) -> nn.Module:
    """A RepAdapter on the input of every block's attention and of its MLP, after the norm:
    PETL_Vision's ft_attn_module / ft_mlp_module in 'sequential_before' mode
    (experiment/config/method/repadapter.yml:2-5; model/block.py:73-76,112-113,154-155)."""
    for block in vit_blocks(vit, "RepAdapter"):
        dim = block.attn.qkv.in_features
        for host in (block.attn, block.mlp):
            host.repadapter = RepAdapter(dim, bottleneck, groups, scale)
            host.register_forward_pre_hook(_adapt_input)
    return vit
