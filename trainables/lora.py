"""LoRA for a timm VisionTransformer: every attention `qkv` projection becomes
W x + (alpha / r) * B A x with A Kaiming-uniform and B zero, so the adapted model starts as the
identity of the frozen one (loralib's init and forward; its default alpha is 1, so scale 1 / r).
Parameter names keep the `lora_` prefix that the strategy trains."""
from __future__ import annotations

import math

import torch
from torch import nn

from common.errors import StudyInputError


class LoRALinear(nn.Module):
    def __init__(self, base: nn.Linear, rank: int, alpha: float | None = None,
                 dropout: float = 0.0):
        super().__init__()
        self.base = base
        self.scale = (alpha or rank) / rank
        self.dropout = nn.Dropout(dropout) if dropout else nn.Identity()    # on the update's input
        self.lora_a = nn.Parameter(torch.empty(rank, base.in_features))
        self.lora_b = nn.Parameter(torch.zeros(base.out_features, rank))
        nn.init.kaiming_uniform_(self.lora_a, a=math.sqrt(5))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.base(x) + (self.dropout(x) @ self.lora_a.t() @ self.lora_b.t()) * self.scale


def add_lora(vit: nn.Module, rank: int, alpha: float | None = None,
             dropout: float = 0.0) -> nn.Module:
    """One low-rank update of each block's whole qkv projection, as `loralib.Linear(r=rank,
    lora_alpha=alpha)` in TOAST (visual_classification/src/models/vit_models.py:106-113);
    `dropout` on the update's input (loralib's lora_dropout, PETL_Vision's 0.1)."""
    if rank < 1:
        raise ValueError(f"LoRA rank must be >= 1, got {rank}")
    blocks = list(getattr(vit, "blocks", ()))
    if not blocks or not all(isinstance(getattr(b.attn, "qkv", None), nn.Linear) for b in blocks):
        raise StudyInputError(f"LoRA updates each block's fused attn.qkv projection; "
                              f"{type(vit).__name__} has none (e.g. EVA-02's separate q, k, v)")
    for block in blocks:
        block.attn.qkv = LoRALinear(block.attn.qkv, rank, alpha, dropout)
    return vit
