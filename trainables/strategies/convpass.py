"""Convpass as PETL_Vision runs it (experiment/config/method/convpass.yml:2-10): a convolutional
bottleneck (model/convpass.py) beside every block's attention and beside its MLP, reading the
normalised input ("parallel", ft_*_ln "after": model/block.py:99-104, 141-146); the Convpass
modules and the head train."""
from trainables.adapters import DEFAULTS, PARALLEL_AFTER, insert, redrawn, trains
from trainables.convpass import convpass_maker
from trainables.petl_init import TIMM_INIT
from trainables.strategy import Knob, Strategy, register

GRID = "PETL_Vision experiment/config/method/convpass.yml"


def adapt(vit, cfg):
    make = convpass_maker(vit, cfg.knob("bottleneck"), cfg.knob("scaler"), cfg.knob("xavier_init"))
    return redrawn(insert(vit, make, attn=PARALLEL_AFTER, mlp=PARALLEL_AFTER), cfg)


STRATEGY = register(Strategy(
    "convpass", grid="petl", trains=trains, adapt=adapt,
    knobs=(Knob("bottleneck", int, 8, search=(8, 16), source=f"{GRID}:9; default {DEFAULTS}:24"),
           Knob("scaler", float, 10.0, search=(0.01, 0.1, 1.0, 10.0, 100.0),
                source=f"{GRID}:8; default {DEFAULTS}:27"),
           Knob("xavier_init", bool, False, search=(True, False),
                source=f"{GRID}:10; default {DEFAULTS}:25"), TIMM_INIT),
    frozen_eval=False, summary="conv bottleneck beside each attention and MLP + head"))
