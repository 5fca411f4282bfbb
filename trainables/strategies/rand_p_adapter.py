"""The Pfeiffer adapter with random init as PETL_Vision runs it
(experiment/config/method/rand_p_adapter.yml:2-6): an adapter after every block's MLP only, on its
output with its own residual ("sequential_after": model/block.py:150-153), Xavier-initialised
(`xavier`, model/utils.py:18-22); the adapters and the head train."""
from trainables.adapters import SEQUENTIAL_AFTER, adapter_knobs, adapting, trains
from trainables.strategy import Strategy, register

STRATEGY = register(Strategy(
    "rand_p_adapter", grid="petl", trains=trains, adapt=adapting("xavier", mlp=SEQUENTIAL_AFTER),
    knobs=adapter_knobs("rand_p_adapter", (4, 8, 16, 32), (0.01, 0.1, 1.0, 10.0), lines=(5, 4)),
    frozen_eval=False, summary="adapter after each MLP + head"))
