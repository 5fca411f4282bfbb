"""AdaptFormer as PETL_Vision runs it (experiment/config/method/adaptformer.yml:2-7): an adapter
beside every block's MLP, reading the block's input before norm2 ("parallel", ft_mlp_ln "before":
model/block.py:141-144), with `lora_kaiming` init (model/utils.py:8-12: up zero, so the model
starts as the frozen one); the adapters and the head train."""
from trainables.adapters import PARALLEL_BEFORE, adapter_knobs, adapting, trains
from trainables.strategy import Strategy, register

STRATEGY = register(Strategy(
    "adaptformer", grid="petl", trains=trains, adapt=adapting("lora_kaiming", mlp=PARALLEL_BEFORE),
    knobs=adapter_knobs("adaptformer", (4, 16, 32), (0.05, 0.1, 0.2), lines=(6, 7)),
    frozen_eval=False, summary="adapter beside each MLP + head"))
