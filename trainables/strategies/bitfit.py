"""BitFit as PETL_Vision runs it (experiment/config/method/bitfit.yml; experiment/build_model.py:
30-31,77: every parameter whose name holds 'bias', with the head): every bias of the pretrained
ViT trains, the LayerNorms' included, with the head; the whole model in train mode
(engine/trainer.py:100). The trained biases are the model's own: nothing is added."""
from trainables.reparam import bias, head_and
from trainables.strategy import Strategy, register

STRATEGY = register(Strategy("bitfit", grid="petl", trains=head_and(bias), trains_backbone=True,
                             frozen_eval=False, merges=True, summary="every bias + head"))
