"""Convpass (PETL_Vision model/convpass.py): a bottleneck whose middle is a 3x3 convolution over
the patch grid. down (a 1x1 conv as a Linear), QuickGELU, the convolution on the patch tokens laid
out as their grid and, apart, on the class token as a 1x1 map (so only its centre tap and bias act),
QuickGELU, dropout 0.1, up, times the `scaler` knob. The projections start as PETL_Vision's
`lora_xavier` (default_vtab_processed.yml:26: up zero, so the model starts as the frozen one); the
convolution Xavier-uniform or, by default, the identity on its centre tap (the `xavier_init` knob),
bias zero. The tokens must be the class token then the patch grid."""
from __future__ import annotations

import torch
from torch import nn

from common.errors import StudyInputError
from trainables.adapters import ADAPTER_DROPOUT, MERGE_FACTOR, init_weight

CONVPASS_INIT = "lora_xavier"   # experiment/config/default_vtab_processed.yml:26


class QuickGELU(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.sigmoid(1.702 * x)


class ConvPass(nn.Module):
    def __init__(self, dim: int, bottleneck: int, scaler: float, xavier_init: bool,
                 grid: tuple[int, int]):
        super().__init__()
        if bottleneck < 1:
            raise StudyInputError(f"convpass bottleneck must be >= 1, got {bottleneck}")
        self.adapter_conv = nn.Conv2d(bottleneck, bottleneck, 3, 1, 1)
        with torch.no_grad():
            if xavier_init:
                nn.init.xavier_uniform_(self.adapter_conv.weight)
            else:
                weight = self.adapter_conv.weight
                nn.init.zeros_(weight)
                weight[:, :, 1, 1] += torch.eye(bottleneck, dtype=weight.dtype,
                                                device=weight.device)
            nn.init.zeros_(self.adapter_conv.bias)
        self.adapter_down = nn.Linear(dim, bottleneck)
        self.adapter_up = nn.Linear(bottleneck, dim)
        init_weight(self.adapter_down, self.adapter_up, CONVPASS_INIT)
        self.act = QuickGELU()
        self.dropout = nn.Dropout(ADAPTER_DROPOUT)
        self.scale = scaler
        self.grid = grid

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch = x.shape[0]
        height, width = self.grid
        channels = self.adapter_conv.in_channels
        down = self.act(self.adapter_down(x))
        patches = down[:, 1:].reshape(batch, height, width, channels).permute(0, 3, 1, 2)
        patches = self.adapter_conv(patches).permute(0, 2, 3, 1).reshape(batch, -1, channels)
        cls = down[:, :1].reshape(batch, 1, 1, channels).permute(0, 3, 1, 2)
        cls = self.adapter_conv(cls).permute(0, 2, 3, 1).reshape(batch, 1, channels)
        down = self.dropout(self.act(torch.cat([cls, patches], dim=1)))
        return self.adapter_up(down) * self.scale * MERGE_FACTOR


def convpass_maker(vit: nn.Module, bottleneck: int, scaler: float, xavier_init: bool):
    """`make(dim)` for `trainables.adapters.insert`: a ConvPass on this ViT's patch grid, which
    must follow exactly one class token at a fixed input size."""
    if (getattr(vit, "cls_token", None) is None or getattr(vit, "num_prefix_tokens", 0) != 1
            or getattr(vit, "dynamic_img_size", False)):
        raise StudyInputError(f"Convpass needs a ViT whose tokens are one class token then the "
                              f"patch grid, at a fixed input size; {type(vit).__name__} is not one")
    grid = tuple(vit.patch_embed.grid_size)

    def make(dim: int) -> ConvPass:
        return ConvPass(dim, bottleneck, scaler, xavier_init, grid)
    return make
