"""LayerNorm tuning as PETL_Vision runs it (experiment/config/method/ln.yml;
experiment/build_model.py:33-34,77: every parameter whose name holds 'norm', with the head): the
weight and bias of every normalisation layer of the pretrained ViT (each block's norm1 and norm2,
the final norm) train with the head; the whole model in train mode (engine/trainer.py:100)."""
from trainables.reparam import head_and, norm
from trainables.strategy import Strategy, register

STRATEGY = register(Strategy("ln", grid="petl", trains=head_and(norm), trains_backbone=True,
                             frozen_eval=False, merges=True, summary="every LayerNorm + head"))
