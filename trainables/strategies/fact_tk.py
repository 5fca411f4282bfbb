"""FacT-TK as PETL_Vision runs it (model/fact.py:36-52,81-118; grid
experiment/config/method/fact_tk.yml): each block's q, k, v, proj, fc1 and fc2 updates factorised
through projections shared by the network and slices of one shared core tensor mixed per weight;
only the factors and the head train (experiment/build_model.py:13), the whole model in train mode
(engine/trainer.py:100)."""
from trainables.fact import fact_adapter, fact_knobs, trains
from trainables.strategy import Strategy, register

STRATEGY = register(Strategy("fact_tk", grid="petl", trains=trains, adapt=fact_adapter("tk"),
                             knobs=fact_knobs((16, 32, 64), "fact_tk.yml"),
                             trains_backbone=False, frozen_eval=False, merges=True,
                             summary="FacT-TK: shared low-rank factors, one shared core + head"))
