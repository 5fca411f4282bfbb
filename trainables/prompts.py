"""Visual prompts for a timm VisionTransformer, as in the official VPT code, added without
forking timm: a `prompt` submodule holds the embeddings and forward pre-hooks on the blocks put
them in place. Shallow: P prompts are inserted after the class token (and any register tokens:
timm's `num_prefix_tokens`) and before the patch tokens, at the input of block 0: after the
position embedding and after `norm_pre` (CLIP's pre-norm normalises the image tokens, not the
prompts, as the prompts of the official VPT enter after the embeddings). Deep: before every later
block, that slice is replaced by the layer's own prompts; a RoPE attention (EVA-02) leaves the
prompts unrotated, as it does the class token. Init is Xavier-uniform with bound
sqrt(6 / (3 * patch_h * patch_w + D)); prompt dropout acts on the prompts only: the backbone's own
dropout and drop-path are turned off, since the official prompted ViT runs its encoder in eval
mode whatever trains (VPT src/models/vit_prompt/vit.py:89-100), Mixed included. Prompts are counted as prefix tokens, so
average pooling skips them, unless the backbone pools them as the official MAE model does; the
head of a class-token model still reads the class token after the final norm.

`add_petl_prompts` is VPT as PETL_Vision runs it (model/vpt.py,
model/vision_transformer.py:223-241): each prompted block gets its layer's prompts prepended before
the class token and drops them from its output; shallow prompts enter block 0 only. Same init; one
dropout mask for the whole batch (model/vpt.py:39); the backbone's dropout and drop-path are left as
they are, since PETL_Vision trains the whole model in train mode (engine/trainer.py:100)."""
from __future__ import annotations

import math
from functools import partial

import torch
from timm.layers import DropPath
from torch import nn

from common.errors import StudyInputError


class VisualPrompts(nn.Module):
    """Prompt embeddings: layer 0 as [1, P, D], later layers as [depth - 1, P, D] when deep."""

    def __init__(self, length: int, dim: int, depth: int, deep: bool, dropout: float,
                 patch_area: int, batch_mask: bool = False):
        super().__init__()
        self.batch_mask = batch_mask            # one dropout mask for the batch (PETL_Vision)
        bound = math.sqrt(6.0 / float(3 * patch_area + dim))
        self.embeddings = nn.Parameter(torch.empty(1, length, dim).uniform_(-bound, bound))
        self.deep_embeddings = (nn.Parameter(torch.empty(depth - 1, length, dim)
                                             .uniform_(-bound, bound)) if deep else None)
        self.dropout = nn.Dropout(dropout)
        self.length = length

    def at_layer(self, layer: int, batch: int) -> torch.Tensor:
        prompts = self.embeddings[0] if layer == 0 else self.deep_embeddings[layer - 1]
        if self.batch_mask:
            return self.dropout(prompts).expand(batch, -1, -1)
        return self.dropout(prompts.expand(batch, -1, -1))


def add_prompts(vit: nn.Module, length: int, deep: bool, dropout: float,
                pooled: bool = False) -> nn.Module:
    """Attach prompts to a timm VisionTransformer in place and return it. `pooled`: average
    pooling reads the prompts too (the official MAE model's mean over every token but the class
    token); otherwise they count as prefix tokens, which pooling skips."""
    _check(vit, length)
    if getattr(vit, "dynamic_img_size", False):
        raise StudyInputError("visual prompts need a fixed input size: with dynamic_img_size "
                              "timm resamples the position embedding past num_prefix_tokens, "
                              "which would count the prompts")
    for module in vit.modules():     # the official prompted ViT keeps its encoder in eval mode
        if isinstance(module, nn.Dropout):
            module.p = 0.0
        elif isinstance(module, DropPath):
            module.drop_prob = 0.0
    blocks = list(vit.blocks)
    patch = vit.patch_embed.patch_size
    vit.prompt = prompt = VisualPrompts(length, vit.embed_dim, len(blocks), deep, dropout,
                                        patch_area=patch[0] * patch[1])
    prefix = vit.num_prefix_tokens              # class (+ register) tokens before the patches

    # the hooks, kept by the blocks, hold the prompts only, not `vit`: a hook that held the
    # model would make a reference cycle, and the model would outlive its trial until Python's
    # cyclic collector ran (a GPU's memory with it)
    def insert(_module, args):
        x = args[0]
        prompts = prompt.at_layer(0, x.shape[0]).to(x.dtype)
        return (torch.cat([x[:, :prefix], prompts, x[:, prefix:]], dim=1), *args[1:])

    def replace_at(layer: int):
        def replace(_module, args):
            x = args[0]
            prompts = prompt.at_layer(layer, x.shape[0]).to(x.dtype)
            return (torch.cat([x[:, :prefix], prompts, x[:, prefix + length:]], dim=1), *args[1:])
        return replace

    _rope_skips(blocks, length)
    blocks[0].register_forward_pre_hook(insert)
    if deep:
        for layer, block in enumerate(blocks[1:], start=1):
            block.register_forward_pre_hook(replace_at(layer))
    if not pooled:
        vit.num_prefix_tokens = prefix + length
    return vit


def _rope_skips(blocks, length: int) -> None:
    """Blocks whose attention rotates the patch tokens by their grid position (EVA-02's RoPE,
    after its `num_prefix_tokens`) count the prompts among the tokens it leaves unrotated."""
    for block in blocks:
        attn = getattr(block, "attn", None)
        if hasattr(attn, "num_prefix_tokens"):
            attn.num_prefix_tokens += length


def _check(vit: nn.Module, length: int) -> None:
    if length < 0:                  # zero prompts: the backbone itself (a check's baseline)
        raise ValueError(f"prompt length must be >= 0, got {length}")
    if not (hasattr(vit, "blocks") and hasattr(vit, "num_prefix_tokens")):
        raise StudyInputError(f"visual prompts need a ViT-style backbone (a class token before "
                              f"the patch tokens); {type(vit).__name__} is not one")


def add_petl_prompts(vit: nn.Module, length: int, deep: bool, dropout: float) -> nn.Module:
    """PETL_Vision's VPT on a timm VisionTransformer in place: prompts prepended at the input of
    block 0 (shallow) or of every block (deep) and dropped from that block's output, so the
    sequence after each block, pooling and head are the backbone's own."""
    _check(vit, length)
    blocks = list(vit.blocks)
    patch = vit.patch_embed.patch_size
    vit.prompt = VisualPrompts(length, vit.embed_dim, len(blocks), deep, dropout,
                               patch_area=patch[0] * patch[1], batch_mask=True)
    _rope_skips(blocks if deep else blocks[:1], length)
    for layer, block in enumerate(blocks if deep else blocks[:1]):
        block.register_forward_pre_hook(partial(_prepend, vit.prompt, layer))
        block.register_forward_hook(partial(_drop_first, length))
    return vit


def _prepend(prompts: VisualPrompts, layer: int, _module, args):
    x = args[0]
    return (torch.cat([prompts.at_layer(layer, x.shape[0]).to(x.dtype), x], dim=1), *args[1:])


def _drop_first(length: int, _module, _args, output):
    return output[:, length:]


def _length(cfg) -> int:
    length = cfg.knob("prompt_length")
    if length < 1:
        raise StudyInputError(f"{cfg.strategy}: prompt_length must be >= 1, got {length}")
    return length


def prompting(deep: bool):
    """A strategy's `adapt` that adds the trial's prompts (its `prompt_length` and
    `prompt_dropout` knobs), deep or shallow."""
    def adapt(vit: nn.Module, cfg) -> nn.Module:
        return add_prompts(vit, _length(cfg), deep=deep,
                           dropout=cfg.knob("prompt_dropout"), pooled=cfg.backbone.prompts_in_pool)
    return adapt


def petl_prompting(deep: bool):
    """A strategy's `adapt` that adds the trial's prompts as PETL_Vision does, deep or shallow."""
    def adapt(vit: nn.Module, cfg) -> nn.Module:
        return add_petl_prompts(vit, _length(cfg), deep=deep,
                                dropout=cfg.knob("prompt_dropout"))
    return adapt
