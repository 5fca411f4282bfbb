"""LoRA (the paper's appendix): low-rank updates of every attention qkv projection and the head
train; the backbone's weights stay frozen but, as in TOAST (whose protocol the paper's Table 20
follows), the whole model runs in train mode, drop-path included
(visual_classification/src/engine/trainer.py:196)."""
from trainables.lora import add_lora
from trainables.strategy import LORA_KNOBS, Strategy, register


def trains(name: str) -> bool:
    return name.startswith("head.") or ".lora_" in name


def adapt(model, cfg):
    return add_lora(model, cfg.knob("lora_rank"), cfg.knob("lora_alpha"))


STRATEGY = register(Strategy("lora", grid="lora", trains=trains, adapt=adapt, knobs=LORA_KNOBS,
                             frozen_eval=False, merges=True,
                             summary="rank-r qkv updates + head"))
