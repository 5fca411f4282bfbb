"""FacT-TT as PETL_Vision runs it (model/fact.py:15-34,59-80; grid
experiment/config/method/fact_tt.yml): each block's q, k, v, proj, fc1 and fc2 updates factorised
through projections shared by the network and per-block cores; only the factors and the head train
(experiment/build_model.py:13), the whole model in train mode (engine/trainer.py:100)."""
from trainables.fact import fact_adapter, fact_knobs, trains
from trainables.strategy import Strategy, register

STRATEGY = register(Strategy("fact_tt", grid="petl", trains=trains, adapt=fact_adapter("tt"),
                             knobs=fact_knobs((8, 16, 32), "fact_tt.yml"),
                             trains_backbone=False, frozen_eval=False, merges=True,
                             summary="FacT-TT: shared low-rank factors, per-block cores + head"))
