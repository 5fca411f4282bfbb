"""How PETL_Vision's added layers really start. Its modules initialise themselves as their files
say (LoRA's B and FacT's v are zero: model/lora.py:12-14, model/fact.py:18,44), but
VisionTransformerPETL builds them inside the ViT and its __init__ ends with timm's `init_weights`
(model/vision_transformer.py:207-208), whose `init_weights_vit_timm` draws every nn.Linear again,
theirs included: weight truncated-normal with std 0.02, bias zero. So its runs start from that draw,
not from the pretrained model. Parameters that are not nn.Linear weights (FacT-tk's cores, VPT's
prompts) keep their own init. The `timm_init` knob chooses: True as PETL_Vision runs, False as its
modules are written."""
from __future__ import annotations

import torch
from timm.layers import trunc_normal_

from trainables.strategy import Knob

TIMM_INIT = Knob("timm_init", bool, True, source=(
    "PETL_Vision model/vision_transformer.py:207-208 (timm init_weights re-draws every nn.Linear, "
    "the method's own included: trunc-normal std 0.02); False: the init its module files write"))


@torch.no_grad()
def timm_linear_init(*weights: torch.Tensor) -> None:
    """timm's ViT init of an nn.Linear weight (`init_weights_vit_timm`), in place."""
    for weight in weights:
        trunc_normal_(weight, std=0.02)


@torch.no_grad()
def timm_init_linears(*modules: torch.nn.Module) -> None:
    """timm's ViT init of every nn.Linear inside these modules (`init_weights_vit_timm`: weight
    truncated-normal with std 0.02, bias zero), in place."""
    for module in modules:
        for layer in module.modules():
            if isinstance(layer, torch.nn.Linear):
                trunc_normal_(layer.weight, std=0.02)
                if layer.bias is not None:
                    layer.bias.zero_()
