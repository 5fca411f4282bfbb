"""FacT (Jie & Deng, AAAI 2023) as PETL_Vision runs it (model/fact.py, applied in
model/attention.py:55-56,90-91 and model/mlp.py:52-53,64-65), on a timm VisionTransformer without
forking it. The weight updates of every block's q, k, v, proj, fc1 and fc2 are factorised through a
pair of projections shared by the whole network, u: D -> r and v: r -> D, and a small per-block,
per-weight core: its own r x r (r x 4r for the MLP) matrices ("tt"), or slices of one r x r x r
tensor mixed by an r x (12 * depth) matrix ("tk"). Each update is added, times `scaler`, to the
output of the frozen linear layer it belongs to, through a forward hook, so the backbone keeps its
parameter names; the factors live in `vit.fact` under PETL_Vision's own names (FacTu, FacTv,
per_block_para, FacTp, FacTc). Dropout 0.1 acts between core and v (model/fact.py:27,32,49-50)."""
from __future__ import annotations

from functools import partial

import torch
from torch import nn

from common.errors import StudyInputError
from trainables.petl_init import TIMM_INIT, timm_linear_init
from trainables.strategy import Knob

DROPOUT = 0.1              # model/fact.py:27,32,49-50
WEIGHTS_PER_BLOCK = 12     # model/fact.py:4: q, k, v, proj, then fc1 and fc2 as 4 slices each
KINDS = ("tt", "tk")
SCALER = Knob("scaler", float, 1.0, search=(0.01, 0.1, 1.0, 10.0, 100.0), source=(
    "PETL_Vision experiment/config/method/fact_tt.yml:3, experiment/config/method/fact_tk.yml:3; "
    "default experiment/config/default_vtab_processed.yml:36"))


class FacT(nn.Module):
    """The factors of one network (model/fact.py:7-55) and the update each frozen linear layer
    gets (model/fact.py:57-118)."""

    def __init__(self, dim: int, depth: int, rank: int, scaler: float, kind: str):
        super().__init__()
        if kind not in KINDS:
            raise ValueError(f"FacT kind must be one of {KINDS}, got '{kind}'")
        self.kind, self.rank, self.scaler = kind, rank, scaler
        self.FacTu = nn.Linear(dim, rank, bias=False)
        self.FacTv = nn.Linear(rank, dim, bias=False)
        nn.init.zeros_(self.FacTv.weight)
        self.dropout = nn.Dropout(DROPOUT)
        if kind == "tt":                            # model/fact.py:15-34
            def square():
                return nn.Linear(rank, rank, bias=False)
            self.per_block_para = nn.ModuleList(nn.ModuleDict({
                "attn": nn.ModuleList([square(), square(), square(), square()]),
                "mlp": nn.ModuleList([nn.Linear(rank, rank * 4, bias=False),
                                      nn.Linear(rank * 4, rank, bias=False)])})
                for _ in range(depth))
        else:                                       # model/fact.py:36-52
            self.FacTp = nn.Parameter(torch.empty(rank, WEIGHTS_PER_BLOCK * depth))
            self.FacTc = nn.Parameter(torch.empty(rank, rank, rank))
            nn.init.xavier_uniform_(self.FacTc)
            nn.init.xavier_uniform_(self.FacTp)

    def linear_weights(self) -> list[torch.Tensor]:
        """Its nn.Linear weights (what timm's ViT init draws again: `trainables.petl_init`)."""
        return [m.weight for m in self.modules() if isinstance(m, nn.Linear)]

    def attn_cores(self, block: int) -> list[torch.Tensor]:
        """The r x r cores of q, k, v and proj, as right-hand matrices."""
        if self.kind == "tt":
            return [linear.weight.t() for linear in self.per_block_para[block]["attn"]]
        start = block * WEIGHTS_PER_BLOCK
        cores = self.FacTc @ self.FacTp[:, start:start + 4]
        return [cores[:, :, i] for i in range(4)]

    def mlp_cores(self, block: int) -> tuple[torch.Tensor, torch.Tensor]:
        """The cores of fc1 (r x 4r) and fc2 (4r x r), as right-hand matrices."""
        if self.kind == "tt":
            fc1, fc2 = self.per_block_para[block]["mlp"]
            return fc1.weight.t(), fc2.weight.t()
        start = block * WEIGHTS_PER_BLOCK + 4
        cores = self.FacTc @ self.FacTp[:, start:start + 8]
        return (cores[:, :, :4].reshape(self.rank, 4 * self.rank),
                cores[:, :, 4:].reshape(self.rank, 4 * self.rank).t())

    def through(self, core: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
        return self.FacTv(self.dropout(u @ core))

    def update(self, block: int, site: str, x: torch.Tensor) -> torch.Tensor:
        """The update of the linear layer `site` of block `block` for its input `x`."""
        if site in ("qkv", "proj"):
            cores = self.attn_cores(block)
            u = self.FacTu(x)
            out = (torch.cat([self.through(c, u) for c in cores[:3]], dim=-1) if site == "qkv"
                   else self.through(cores[3], u))
        else:
            fc1, fc2 = self.mlp_cores(block)
            if site == "fc1":        # r -> 4r, then v on each of the 4 slices
                hidden = self.dropout(self.FacTu(x) @ fc1).unflatten(-1, (4, self.rank))
                out = self.FacTv(hidden).flatten(-2)
            else:                    # u on each of the 4 slices of the 4D input, then 4r -> r
                u = self.FacTu(x.unflatten(-1, (4, x.shape[-1] // 4))).flatten(-2)
                out = self.through(fc2, u)
        return out * self.scaler

    def add_update(self, block: int, site: str, _module, args, output):
        """A forward hook of the frozen linear layer: its output plus the update."""
        return output + self.update(block, site, args[0]).to(output.dtype)


SITES = {"qkv": ("attn", "qkv"), "proj": ("attn", "proj"), "fc1": ("mlp", "fc1"),
         "fc2": ("mlp", "fc2")}


def _layer(block: nn.Module, path: tuple[str, ...]):
    for name in path:
        block = getattr(block, name, None)
    return block


def add_fact(vit: nn.Module, rank: int, scaler: float, kind: str) -> nn.Module:
    """FacT's factors as `vit.fact`, and a hook on each block's qkv, proj, fc1 and fc2 adding
    their update. The MLP's hidden width must be 4 x the width (the factorisation's shape)."""
    if rank < 1:
        raise ValueError(f"FacT rank must be >= 1, got {rank}")
    blocks = list(getattr(vit, "blocks", ()))
    dim = getattr(vit, "embed_dim", 0)
    layers = [(i, site, _layer(block, path)) for i, block in enumerate(blocks)
              for site, path in SITES.items()]
    if not blocks or not all(isinstance(layer, nn.Linear) for _, _, layer in layers) or any(
            block.mlp.fc1.out_features != 4 * dim for block in blocks):
        raise StudyInputError(f"FacT needs a ViT whose blocks have attn.qkv, attn.proj, mlp.fc1 "
                              f"and mlp.fc2 linear layers and an MLP 4 x as wide as the model; "
                              f"{type(vit).__name__} is not one")
    vit.fact = FacT(dim, len(blocks), rank, scaler, kind)
    for block, site, layer in layers:
        layer.register_forward_hook(partial(vit.fact.add_update, block, site))
    return vit


def fact_knobs(ranks: tuple[int, ...], config: str) -> tuple[Knob, ...]:
    """A FacT strategy's knobs: its rank (`bottleneck`, fact_dim) searched over `ranks`, the
    scale searched, and the init."""
    return (Knob("bottleneck", int, 8, search=ranks, source=(
                f"PETL_Vision experiment/config/method/{config}:2; default "
                f"experiment/config/default_vtab_processed.yml:34 (fact_dim)")),
            SCALER, TIMM_INIT)


def trains(name: str) -> bool:
    """The factors and the head (PETL_Vision's TUNE_MODULES 'fact', 'head':
    experiment/build_model.py:13)."""
    return name.startswith(("fact.", "head."))


def fact_adapter(kind: str):
    """A strategy's `adapt`: FacT of this kind with the trial's knobs."""
    def adapt(vit: nn.Module, cfg) -> nn.Module:
        add_fact(vit, cfg.knob("bottleneck"), cfg.knob("scaler"), kind)
        if cfg.knob("timm_init"):
            timm_linear_init(*vit.fact.linear_weights())
        return vit
    return adapt
