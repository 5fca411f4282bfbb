"""Adapters on a timm VisionTransformer as PETL_Vision (Mai et al., CVPR 2025) adds them: a module
beside or after a block's attention and/or MLP. Each block becomes a `PETLBlock` that holds timm's
own submodules under their own names (`blocks.3.attn.qkv.weight` stays) plus the added module under
PETL_Vision's names, `ft_attn_module` / `ft_mlp_module`, and runs PETL_Vision's block forward
(model/block.py:89-174). With f the attention or MLP, n = norm(x), dp drop-path, ls layer scale
and A the added module, a branch adds to the residual stream x:
- parallel:         dp(ls(f(n))) + dp(ls(A(x)))      (ln "before": A reads the block's input)
                    dp(ls(f(n))) + dp(ls(A(n)))      (ln "after": A reads the normalised input)
- sequential_after: dp(ls(A(y) + y)), y = dp(ls(f(n)))
Every dp call draws its own mask, as there: in parallel the two terms drop apart; in
sequential_after y passes drop-path twice. `Adapter` is PETL_Vision's bottleneck adapter
(model/adapter.py), initialised by `init_weight` (model/utils.py); its outputs are scaled by the
`scaler` knob and by PETL_Vision's merge factor, 1 in every run."""
from __future__ import annotations

import math
from dataclasses import dataclass
from functools import partial
from typing import Callable

import torch
from timm.models.vision_transformer import Block
from torch import nn

from common.errors import StudyInputError
from trainables.petl_init import TIMM_INIT, timm_init_linears
from trainables.strategy import Knob

ADAPTER_DROPOUT = 0.1   # model/adapter.py:14 (and model/convpass.py:24)
MERGE_FACTOR = 1.0      # experiment/config/default_vtab_processed.yml:60, applied at
                        # model/adapter.py:49-52 and model/convpass.py:49
DEFAULTS = "PETL_Vision experiment/config/default_vtab_processed.yml"


def _lora(down: nn.Linear, up: nn.Linear, init_down: Callable) -> None:
    init_down(down.weight)
    nn.init.zeros_(up.weight)
    nn.init.zeros_(down.bias)
    nn.init.zeros_(up.bias)


def _xavier(down: nn.Linear, up: nn.Linear) -> None:
    nn.init.xavier_uniform_(down.weight)
    nn.init.xavier_uniform_(up.weight)
    nn.init.normal_(down.bias, std=1e-6)
    nn.init.normal_(up.bias, std=1e-6)


INITS = {   # model/utils.py:6-22 (its "zero" option, unused here, zeroes down.weight twice)
    "lora_kaiming": partial(_lora, init_down=partial(nn.init.kaiming_uniform_, a=math.sqrt(5))),
    "lora_xavier": partial(_lora, init_down=nn.init.xavier_uniform_),
    "xavier": _xavier,
}


@torch.no_grad()
def init_weight(down: nn.Linear, up: nn.Linear, option: str) -> None:
    """PETL_Vision's init of a down/up projection pair (model/utils.py:6-29)."""
    INITS[option](down, up)


class Adapter(nn.Module):
    """up(dropout(relu(down(x)))) * scaler (model/adapter.py:34-54, no adapter LayerNorm: the
    block builds it without `adapter_layernorm_option`, model/block.py:73-76); the residual of
    sequential_after is added by the block."""

    def __init__(self, dim: int, bottleneck: int, scaler: float, init: str):
        super().__init__()
        if bottleneck < 1:
            raise StudyInputError(f"adapter bottleneck must be >= 1, got {bottleneck}")
        self.down_proj = nn.Linear(dim, bottleneck)
        self.up_proj = nn.Linear(bottleneck, dim)
        self.dropout = nn.Dropout(ADAPTER_DROPOUT)
        self.scale = scaler
        init_weight(self.down_proj, self.up_proj, init)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        up = self.up_proj(self.dropout(torch.relu(self.down_proj(x))))
        return up * self.scale * MERGE_FACTOR


@dataclass(frozen=True)
class Placement:
    """Where an added module acts on one branch of a block: PETL_Vision's ft_attn_mode/ft_mlp_mode
    and, for parallel, ft_attn_ln/ft_mlp_ln ("before": on the block's input, its default at
    default_vtab_processed.yml:17,20; "after": on the normalised input)."""
    mode: str               # "parallel" | "sequential_after"
    ln: str = "before"

    def __post_init__(self):
        if self.mode not in ("parallel", "sequential_after") or self.ln not in ("before", "after"):
            raise ValueError(f"no placement {self.mode}/{self.ln}")


PARALLEL_BEFORE = Placement("parallel", "before")
PARALLEL_AFTER = Placement("parallel", "after")
SEQUENTIAL_AFTER = Placement("sequential_after")
BLOCK_PARTS = ("norm1", "attn", "ls1", "drop_path1", "norm2", "mlp", "ls2", "drop_path2")


def branch(x: torch.Tensor, norm: nn.Module, f: Callable, ls: nn.Module, drop_path: nn.Module,
           added: nn.Module | None, where: Placement | None) -> torch.Tensor:
    """What one branch (attention or MLP) adds to the residual stream (model/block.py:97-120 and
    139-162)."""
    normed = norm(x)
    out = drop_path(ls(f(normed)))
    if added is None:
        return out
    if where.mode == "sequential_after":
        return drop_path(ls(added(out) + out))
    return drop_path(ls(added(x if where.ln == "before" else normed))) + out


class PETLBlock(nn.Module):
    """A timm pre-norm ViT `Block` with an added module on its attention and/or MLP branch."""

    def __init__(self, block: Block, attn: tuple[nn.Module, Placement] | None = None,
                 mlp: tuple[nn.Module, Placement] | None = None):
        super().__init__()
        for name in BLOCK_PARTS:
            setattr(self, name, getattr(block, name))
        self.attn_where = self.mlp_where = None
        if attn:
            self.ft_attn_module, self.attn_where = attn
        if mlp:
            self.ft_mlp_module, self.mlp_where = mlp
        self.train(block.training)

    def forward(self, x: torch.Tensor, attn_mask: torch.Tensor | None = None,
                is_causal: bool = False) -> torch.Tensor:
        attn = partial(self.attn, attn_mask=attn_mask, is_causal=is_causal)
        x = x + branch(x, self.norm1, attn, self.ls1, self.drop_path1,
                       getattr(self, "ft_attn_module", None), self.attn_where)
        return x + branch(x, self.norm2, self.mlp, self.ls2, self.drop_path2,
                          getattr(self, "ft_mlp_module", None), self.mlp_where)


def insert(vit: nn.Module, make: Callable[[int], nn.Module], attn: Placement | None = None,
           mlp: Placement | None = None) -> nn.Module:
    """Every block of a timm ViT, in place, becomes a `PETLBlock` with a new `make(dim)` module on
    each branch given a placement; returns the model."""
    blocks = getattr(vit, "blocks", None)
    kinds = {type(block) for block in blocks} if blocks is not None else set()
    if kinds != {Block}:
        found = ", ".join(sorted(k.__name__ for k in kinds)) or "none"
        raise StudyInputError(f"PETL_Vision's adapters act on the blocks of a pre-norm ViT (timm's "
                              f"vision_transformer.Block); {type(vit).__name__} has {found}")
    for index, block in enumerate(blocks):
        dim = block.norm1.normalized_shape[0]
        blocks[index] = PETLBlock(block, attn=(make(dim), attn) if attn else None,
                                  mlp=(make(dim), mlp) if mlp else None)
    return vit


def trains(name: str) -> bool:
    """The added modules and the head (PETL_Vision's TUNE_MODULES, experiment/build_model.py:13)."""
    return name.startswith("head.") or ".ft_attn_module." in name or ".ft_mlp_module." in name


def adapting(init: str, attn: Placement | None = None, mlp: Placement | None = None):
    """A strategy's `adapt`: an `Adapter` with the trial's `bottleneck` and `scaler` knobs and
    init `init` on the branches given a placement."""
    def adapt(vit: nn.Module, cfg) -> nn.Module:
        return redrawn(insert(vit, partial(Adapter, bottleneck=cfg.knob("bottleneck"),
                                           scaler=cfg.knob("scaler"), init=init),
                              attn=attn, mlp=mlp), cfg)
    return adapt


def redrawn(vit: nn.Module, cfg) -> nn.Module:
    """With the `timm_init` knob (PETL_Vision's runs), the added modules' nn.Linear layers drawn
    again by timm's ViT init, as VisionTransformerPETL's __init__ does after building them
    (`trainables.petl_init`)."""
    if cfg.knob("timm_init"):
        timm_init_linears(*(module for name, module in vit.named_modules()
                            if name.rsplit(".", 1)[-1] in ("ft_attn_module", "ft_mlp_module")))
    return vit


def adapter_knobs(method: str, bottlenecks: tuple[int, ...], scalers: tuple[float, ...],
                  lines: tuple[int, int]) -> tuple[Knob, Knob, Knob]:
    """The `bottleneck` and `scaler` knobs of an adapter method, searched over the values at
    `lines` of its experiment/config/method/<method>.yml (defaults 64 and 0.1), and
    `timm_init`."""
    grid = f"PETL_Vision experiment/config/method/{method}.yml"
    return (Knob("bottleneck", int, 64, search=bottlenecks,
                 source=f"{grid}:{lines[0]}; default {DEFAULTS}:21"),
            Knob("scaler", float, 0.1, search=scalers,
                 source=f"{grid}:{lines[1]}; default {DEFAULTS}:23"), TIMM_INIT)
