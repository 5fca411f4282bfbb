"""The Pfeiffer adapter with LoRA-style init as PETL_Vision runs it
(experiment/config/method/lora_p_adapter.yml:2-6): an adapter after every block's MLP only, on its
output with its own residual ("sequential_after": model/block.py:150-153), with `lora_xavier` init
(model/utils.py:13-17: down Xavier, up zero, so the model starts as the frozen one); the adapters
and the head train."""
from trainables.adapters import SEQUENTIAL_AFTER, adapter_knobs, adapting, trains
from trainables.strategy import Strategy, register

STRATEGY = register(Strategy(
    "lora_p_adapter", grid="petl", trains=trains,
    adapt=adapting("lora_xavier", mlp=SEQUENTIAL_AFTER),
    knobs=adapter_knobs("lora_p_adapter", (4, 8, 16, 32, 64), (0.01, 0.1, 1.0, 10.0),
                        lines=(5, 4)),
    frozen_eval=False, summary="zero-started adapter after each MLP + head"))
