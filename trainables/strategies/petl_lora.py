"""LoRA as PETL_Vision runs it (model/lora.py, applied in model/attention.py:43-44,63-64; grid
experiment/config/method/lora.yml). Like the `lora` strategy, one rank-r update B A x of each
block's whole qkv projection (B: 3D x r, so q, k and v all change), scale 1 (merge_factor 1,
default_vtab_processed.yml:60), A Kaiming-uniform and B zero as written (model/lora.py:11-14); it
differs in dropout 0.1 on the update's input (model/lora.py:9,18), in its rank searched over
(1, 8, 16, 32), and in how A and B really start: timm's ViT init draws them again, trunc-normal
std 0.02 (`trainables.petl_init`). Only the factors and the head train
(experiment/build_model.py:13), the whole model in train mode (engine/trainer.py:100)."""
from trainables.lora import add_lora
from trainables.petl_init import TIMM_INIT, timm_linear_init
from trainables.strategies.lora import trains
from trainables.strategy import Knob, Strategy, register

DROPOUT = 0.1       # model/lora.py:9

RANK = Knob("bottleneck", int, 8, search=(1, 8, 16, 32), source=(
    "PETL_Vision experiment/config/method/lora.yml:2 (lora_bottleneck); its default 0 "
    "(experiment/config/default_vtab_processed.yml:33) turns LoRA off, so 8, a searched value"))


def adapt(vit, cfg):
    add_lora(vit, cfg.knob("bottleneck"), dropout=DROPOUT)
    if cfg.knob("timm_init"):
        timm_linear_init(*(p for block in vit.blocks
                           for p in (block.attn.qkv.lora_a, block.attn.qkv.lora_b)))
    return vit


STRATEGY = register(Strategy("petl_lora", grid="petl", trains=trains, adapt=adapt,
                             knobs=(RANK, TIMM_INIT), trains_backbone=False, frozen_eval=False,
                             merges=True, summary="PETL_Vision's LoRA: rank-r qkv updates with "
                                                  "input dropout + head"))
