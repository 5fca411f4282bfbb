"""LoRA (the paper's appendix): low-rank updates of every attention qkv projection and the head
train; the backbone stays frozen."""
from trainables.lora import add_lora
from trainables.strategy import Strategy, register


def trains(name: str) -> bool:
    return name.startswith("head.") or ".lora_" in name


def adapt(model, cfg):
    return add_lora(model, cfg.lora_rank)


STRATEGY = register(Strategy("lora", grid="lora", trains=trains, adapt=adapt,
                             summary="rank-r qkv updates + head"))
