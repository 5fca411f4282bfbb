"""A transcription of PETL_Vision's ViT (OSU-MLB/PETL_Vision, commit 245d262) for the equivalence
tests of FacT, LoRA and VPT: its FacT, LoRA and VPT modules as written (model/fact.py, model/lora.py,
model/vpt.py), and the forward of its attention, MLP, block and ViT on the paths these methods take
(no SSF, VQT, DiffFit or adapter module; model/attention.py:47-94, model/mlp.py:46-69,
model/block.py:89-174, model/vision_transformer.py:214-272). `petl_model` attaches the modules to a
plain timm ViT where VisionTransformerPETL holds them, so the reference's parameters have
PETL_Vision's names; `petl_forward` runs it without the timm blocks' own forward. Only the weights'
init differs from PETL_Vision's model, which the tests overwrite anyway. The last part holds the
tests' shared checks of the project's adapted model against it."""
from __future__ import annotations

import copy
import dataclasses
import math
from functools import reduce
from operator import mul
from types import SimpleNamespace
from typing import Callable

import timm
import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.nn.modules.utils import _pair

from tests.conftest import TINY_VIT, tiny_trial
from trainables.backbones import create_backbone
from trainables.strategy import get_strategy

# experiment/build_model.py:13: a parameter trains when one of these is a substring of its name
TUNE_MODULES = ['ft_attn_module', 'ft_mlp_module', 'head', 'vpt', 'ssf_scale', 'ssf_shift', 'lora',
                'fact', 'vqt', 'difffit']


def petl_params(**given) -> SimpleNamespace:
    """PETL_Vision's `params` for these methods (experiment/config/default_vtab_processed.yml)."""
    defaults = dict(vpt_mode=None, vpt_num=10, vpt_layer=None, vpt_dropout=0.1, lora_bottleneck=0,
                    fact_dim=8, fact_type=None, fact_scaler=1.0, merge_factor=1, ssf=False,
                    vqt_num=0)
    return SimpleNamespace(**{**defaults, **given})


def official_trainable(model: nn.Module) -> set[str]:
    return {n for n, _ in model.named_parameters() if any(m in n for m in TUNE_MODULES)}


# ---- model/fact.py, as written ----
TOTAL_WEIGHT_MATRIX = 12


class FacT(nn.Module):
    def __init__(self, dim, depth, params):
        super().__init__()

        self.per_block_para = nn.ModuleList()
        self.fact_dim = params.fact_dim
        self.params = params
        self.depth = depth
        if params.fact_type == 'tt':
            self.FacTu = nn.Linear(dim, self.fact_dim, bias=False)
            self.FacTv = nn.Linear(self.fact_dim, dim, bias=False)
            nn.init.zeros_(self.FacTv.weight)

            for i in range(depth):
                self.per_block_para.append(nn.ModuleDict({
                    'attn': nn.ModuleList([
                        nn.Linear(self.fact_dim, self.fact_dim, bias=False),
                        nn.Linear(self.fact_dim, self.fact_dim, bias=False),
                        nn.Linear(self.fact_dim, self.fact_dim, bias=False),
                        nn.Linear(self.fact_dim, self.fact_dim, bias=False),
                        nn.Dropout(0.1)
                    ]),
                    'mlp': nn.ModuleList([
                        nn.Linear(self.fact_dim, self.fact_dim * 4, bias=False),
                        nn.Linear(self.fact_dim * 4, self.fact_dim, bias=False),
                        nn.Dropout(0.1)
                    ])
                }))

        elif params.fact_type == 'tk':
            self.FacTu = nn.Linear(dim, self.fact_dim, bias=False)
            self.FacTv = nn.Linear(self.fact_dim, dim, bias=False)
            self.FacTp = nn.Parameter(torch.zeros([self.fact_dim, TOTAL_WEIGHT_MATRIX * depth],
                                                  dtype=torch.float), requires_grad=True)
            self.FacTc = nn.Parameter(
                torch.zeros([self.fact_dim, self.fact_dim, self.fact_dim], dtype=torch.float),
                requires_grad=True)

            nn.init.zeros_(self.FacTv.weight)
            nn.init.xavier_uniform_(self.FacTc)
            nn.init.xavier_uniform_(self.FacTp)
            for i in range(depth):
                self.per_block_para.append(nn.ModuleDict({
                    'attn': nn.Dropout(0.1),
                    'mlp': nn.Dropout(0.1)

                }))

        else:
            raise NotImplementedError

    def forward(self, x, block_idx, mode, B, N, C):

        if self.params.fact_type == 'tt':
            if mode == 'attn_qkv':
                q_FacTs, k_FacTs, v_FacTs, _, dp = self.per_block_para[block_idx]['attn']
                q = self.FacTv(dp(q_FacTs(self.FacTu(x))))
                k = self.FacTv(dp(k_FacTs(self.FacTu(x))))
                v = self.FacTv(dp(v_FacTs(self.FacTu(x))))
                return torch.cat([q, k, v], dim=2) * self.params.fact_scaler * self.params.merge_factor
            elif mode == 'attn_proj':
                _, _, _, proj_FacTs, dp = self.per_block_para[block_idx]['attn']
                return self.FacTv(dp(proj_FacTs(self.FacTu(x)))) * self.params.fact_scaler * self.params.merge_factor
            elif mode == 'mlp_1':
                fc1_FacTs, _, dp = self.per_block_para[block_idx]['mlp']
                return self.FacTv(dp(fc1_FacTs(self.FacTu(x))).reshape(
                    B, N, 4, self.fact_dim)).reshape(
                    B, N, 4 * C) * self.params.fact_scaler * self.params.merge_factor
            elif mode == 'mlp_2':
                x = x.reshape(B, N, 4, C)
                _, fc2_FacTs, dp = self.per_block_para[block_idx]['mlp']
                return self.FacTv(dp(fc2_FacTs(self.FacTu(x).reshape(
                    B, N, 4 * self.fact_dim)))) * self.params.fact_scaler * self.params.merge_factor
            else:
                raise NotImplementedError
        elif self.params.fact_type == 'tk':
            if mode == 'attn_qkv':
                dp = self.per_block_para[block_idx]['attn']
                start_idx = block_idx * TOTAL_WEIGHT_MATRIX
                FacTc = self.FacTc @ self.FacTp[:, start_idx:start_idx + 4]
                q_FacTc, k_FacTc, v_FacTc = FacTc[:, :, 0], FacTc[:, :, 1], FacTc[:, :, 2]
                q = self.FacTv(dp(self.FacTu(x) @ q_FacTc))
                k = self.FacTv(dp(self.FacTu(x) @ k_FacTc))
                v = self.FacTv(dp(self.FacTu(x) @ v_FacTc))
                return torch.cat([q, k, v], dim=2) * self.params.fact_scaler * self.params.merge_factor
            elif mode == 'attn_proj':
                dp = self.per_block_para[block_idx]['attn']
                start_idx = block_idx * TOTAL_WEIGHT_MATRIX
                FacTc = self.FacTc @ self.FacTp[:, start_idx:start_idx + 4]
                proj_FacTc = FacTc[:, :, 3]
                return self.FacTv(dp(self.FacTu(x) @ proj_FacTc)) * self.params.fact_scaler * self.params.merge_factor
            elif mode == 'mlp_1':
                dp = self.per_block_para[block_idx]['mlp']
                start_idx = block_idx * TOTAL_WEIGHT_MATRIX + 4
                FacTc = self.FacTc @ self.FacTp[:, start_idx:start_idx + 8]
                fc1_FacTc, _ = FacTc[:, :, :4].reshape(self.fact_dim, self.fact_dim * 4), FacTc[:, :, 4:].reshape(
                    self.fact_dim,
                    self.fact_dim * 4)
                return self.FacTv(dp(self.FacTu(x) @ fc1_FacTc).reshape(
                            B, N, 4, self.fact_dim)).reshape(
                            B, N, 4 * C) * self.params.fact_scaler * self.params.merge_factor
            elif mode == 'mlp_2':
                x = x.reshape(B, N, 4, C)
                dp = self.per_block_para[block_idx]['mlp']
                start_idx = block_idx * TOTAL_WEIGHT_MATRIX + 4
                FacTc = self.FacTc @ self.FacTp[:, start_idx:start_idx + 8]
                _, fc2_FacTc = FacTc[:, :, :4].reshape(self.fact_dim, self.fact_dim * 4), FacTc[:, :, 4:].reshape(
                    self.fact_dim,
                    self.fact_dim * 4)
                return self.FacTv(dp(self.FacTu(x).reshape(
                        B, N, 4 * self.fact_dim) @ fc2_FacTc.t())) * self.params.fact_scaler * self.params.merge_factor
            else:
                raise NotImplementedError


# ---- model/lora.py, as written ----
class LoRA(nn.Module):
    def __init__(self, dim, num_heads, params):
        super().__init__()
        self.down_size = params.lora_bottleneck
        self.lora_drop = nn.Dropout(p=0.1)
        self.num_heads = num_heads
        self.lora_a = nn.Linear(dim, self.down_size, bias=False)
        nn.init.kaiming_uniform_(self.lora_a.weight, a=math.sqrt(5))
        self.lora_b = nn.Linear(self.down_size, dim * 3, bias=False)
        nn.init.zeros_(self.lora_b.weight)
        self.params = params

    def forward(self, x, q, k, v, B, N, C):
        qkv_delta = self.lora_a(self.lora_drop(x))

        qkv_delta = self.lora_b(qkv_delta).reshape(B, N, 3, self.num_heads,
                                                   C // self.num_heads).permute(2, 0, 3, 1, 4)
        q_delta, k_delta, v_delta = qkv_delta.unbind(0)
        q, v, k = q + self.params.merge_factor * q_delta, v + self.params.merge_factor * v_delta, k+ self.params.merge_factor * k_delta
        return q, k, v


# ---- model/vpt.py, as written ----
class VPT(nn.Module):

    def __init__(self, params, depth, patch_size, embed_dim):
        super().__init__()
        self.params = params
        self.depth = depth
        if params.vpt_mode == 'shallow':
            prompt_layer = 1
        elif params.vpt_mode == 'deep':
            if params.vpt_layer:
                prompt_layer = params.vpt_layer
            else:
                prompt_layer = depth

        else:
            raise ValueError
        val = math.sqrt(6. / float(3 * reduce(mul, _pair(patch_size), 1) + embed_dim))
        self.prompt_embeddings = nn.Parameter(torch.zeros(
            prompt_layer, params.vpt_num, embed_dim))
        # xavier_uniform initialization
        nn.init.uniform_(self.prompt_embeddings.data, -val, val)
        self.prompt_dropout = nn.Dropout(params.vpt_dropout)

    def retrieve_prompt(self, index, batch_size):
        if self.params.vpt_layer:
            index = index - (self.depth - self.params.vpt_layer)
            if index < 0:
                return None
        if index < len(self.prompt_embeddings):
            return self.prompt_dropout(self.prompt_embeddings[index]).expand(batch_size, -1, -1)
        else:
            return None


# ---- where VisionTransformerPETL holds them (model/vision_transformer.py:155-189,
# model/block.py:41-86, model/attention.py:38-45, model/mlp.py:38-43) ----
def petl_model(vit: nn.Module, params: SimpleNamespace) -> nn.Module:
    """A copy of a plain timm ViT with PETL_Vision's modules for `params` where its model has them:
    `vpt` on the ViT, one FacT shared by every block's attn and mlp, a LoRA per attn."""
    model = copy.deepcopy(vit)
    model.params = params
    depth, dim = len(model.blocks), model.embed_dim
    model.vpt = (VPT(params, depth, model.patch_embed.patch_size, dim) if params.vpt_mode
                 else None)
    fact = FacT(dim, depth, params) if params.fact_type else None
    for block in model.blocks:
        block.attn.fact = block.mlp.fact = block.fact = fact
        if params.lora_bottleneck > 0:
            block.attn.lora = LoRA(dim, block.attn.num_heads, params)
    return model.to(next(vit.parameters()).dtype)


# ---- the forward (AttentionPETL, MlpPETL, BlockPETL, VisionTransformerPETL) ----
def attention_forward(self, x, block_idx, params):                 # model/attention.py:47-94
    B, N, C = x.shape
    qkv = self.qkv(x)
    if self.fact:
        qkv += self.fact(x, block_idx, 'attn_qkv', B, N, C)
    qkv = qkv.reshape(B, N, 3, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4)
    q, k, v = qkv.unbind(0)
    if params.lora_bottleneck > 0:
        q, k, v = self.lora(x, q, k, v, B, N, C)
    q, k = self.q_norm(q), self.k_norm(k)
    if self.fused_attn:
        x = F.scaled_dot_product_attention(
            q, k, v,
            dropout_p=self.attn_drop.p if self.training else 0.,
        )
    else:
        q = q * self.scale
        attn = q @ k.transpose(-2, -1)
        attn = attn.softmax(dim=-1)
        attn = self.attn_drop(attn)
        x = attn @ v
    x = x.transpose(1, 2).reshape(B, N, C)
    proj = self.proj(x)
    if self.fact:
        proj += self.fact(x, block_idx, 'attn_proj', B, N, C)
    x = self.proj_drop(proj)
    return x


def mlp_forward(self, x, block_idx):                                 # model/mlp.py:46-69
    B, N, C = x.shape
    h = self.fc1(x)
    if self.fact:
        h += self.fact(x, block_idx, 'mlp_1', B, N, C)
    x = self.act(h)
    x = self.drop1(x)
    x = self.norm(x)
    h = self.fc2(x)
    if self.fact:
        h += self.fact(x, block_idx, 'mlp_2', B, N, C)
    x = self.drop2(h)
    return x


def block_forward(self, x, idx, params):              # model/block.py:89-174, no ft module
    residual_attn = x
    x_norm1 = self.norm1(x)
    x_ft_attn = self.drop_path1(self.ls1(attention_forward(self.attn, x_norm1, idx, params)))
    x = x_ft_attn + residual_attn
    residual_mlp = x
    x_norm2 = self.norm2(x)
    x_ft_mlp = self.drop_path2(self.ls2(mlp_forward(self.mlp, x_norm2, idx)))
    x = x_ft_mlp + residual_mlp
    return x


def petl_forward(self, x):                            # model/vision_transformer.py:214-272
    params = self.params
    x = self.patch_embed(x)
    x = self._pos_embed(x)
    x = self.patch_drop(x)
    x = self.norm_pre(x)
    for idx, block in enumerate(self.blocks):
        if params.vpt_mode:
            prompt = self.vpt.retrieve_prompt(idx, x.shape[0])
            if prompt is not None:
                x = torch.cat([prompt, x], dim=1)
        x = block_forward(block, x, idx, params)
        if params.vpt_mode and prompt is not None:
            x = x[:, params.vpt_num:, :]
    x = self.norm(x)
    if self.global_pool == 'avg':
        output_feature = x[:, self.num_prefix_tokens:].mean(dim=1)
    else:
        output_feature = x[:, 0]  # class token
    output_feature = self.fc_norm(output_feature)
    output_feature = self.head_drop(output_feature)
    return self.head(output_feature)


# ---- the project's adapted model against the reference ----
# the tiny test ViT with PETL_Vision's drop-path (default_vtab_processed.yml:3)
BACKBONE = dataclasses.replace(TINY_VIT, overrides=TINY_VIT.overrides + (("drop_path_rate", 0.1),))


def models(strategy: str, params: SimpleNamespace, seed: int = 0, **knobs):
    """(ours, reference) in float64 from one random tiny ViT: the strategy's adapted model (with
    these knobs) and PETL_Vision's model for `params`, their added weights still apart."""
    torch.manual_seed(seed)
    plain = create_backbone(BACKBONE, num_classes=10).double()
    reference = petl_model(plain, params)
    cfg = tiny_trial("", strategy, backbone=BACKBONE, **knobs)
    return get_strategy(strategy).prepare(copy.deepcopy(plain), cfg).double(), reference


def images(n: int = 3, seed: int = 0) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(n, 3, 32, 32, dtype=torch.float64, generator=generator)


@torch.no_grad()
def randomise(*tensors: torch.Tensor, std: float = 0.3) -> None:
    """Random values (so a zero-initialised factor does not make the update vanish)."""
    for tensor in tensors:
        tensor.normal_(0.0, std)


@torch.no_grad()
def assert_same_forward(ours: nn.Module, reference: nn.Module, x: torch.Tensor) -> None:
    """The same logits in eval mode, and in train mode (the whole model, as PETL_Vision trains)
    from the same random state: the same dropout and drop-path draws in the same order."""
    ours.eval()
    reference.eval()
    expected = petl_forward(reference, x)
    torch.testing.assert_close(ours(x), expected, rtol=0, atol=1e-10)
    ours.train()
    reference.train()
    torch.manual_seed(1)
    trained = ours(x)
    torch.manual_seed(1)
    torch.testing.assert_close(trained, petl_forward(reference, x), rtol=0, atol=1e-10)
    assert (trained - expected).abs().max() > 1e-6, "dropout and drop-path did not act"


def assert_same_gradients(ours: nn.Module, reference: nn.Module, x: torch.Tensor,
                          counterparts: Callable[[str], list[str]]) -> None:
    """Exactly what PETL_Vision trains (TUNE_MODULES on its names; `counterparts` maps one to
    ours, whose gradients are concatenated along dim 0) trains in ours, with the same
    gradients for the same loss, in eval mode."""
    official = official_trainable(reference)
    for name, param in reference.named_parameters():
        param.requires_grad_(name in official)
    labels = torch.arange(len(x)) % 10
    ours.eval()
    reference.eval()
    F.cross_entropy(ours(x), labels).backward()
    F.cross_entropy(petl_forward(reference, x), labels).backward()
    ours_params, official_params = dict(ours.named_parameters()), dict(reference.named_parameters())
    assert {n for n, p in ours_params.items() if p.requires_grad} == {
        mine for name in official for mine in counterparts(name)}
    assert all(p.grad is None for p in ours_params.values() if not p.requires_grad)
    for name in official:
        grad = torch.cat([ours_params[mine].grad for mine in counterparts(name)])
        assert grad.abs().max() > 0, f"no gradient reaches {name}"
        torch.testing.assert_close(grad, official_params[name].grad, rtol=0, atol=1e-10)


def inserted_parameters(strategy: str, **knobs) -> int:
    """PETL_Vision's `inserted_parameters` (utils/log_utils.py:73: what trains, but for names
    holding 'head') of the strategy's model on timm's ViT-B/16, built on the meta device."""
    with torch.device("meta"):
        model = timm.create_model("vit_base_patch16_224", num_classes=100)
        model = get_strategy(strategy).prepare(model, tiny_trial("", strategy, **knobs))
    return sum(p.numel() for n, p in model.named_parameters() if p.requires_grad and "head" not in n)
