"""DiffFit as PETL_Vision runs it (experiment/config/method/difffit.yml): a per-channel gamma,
initialised to ones, scales each residual branch of every block (model/block.py:82-84,123-126,
165-168); the gammas, every bias and every normalisation layer train with the head
(experiment/build_model.py:13-14,30-34,77: names holding 'difffit', 'bias' or 'norm'); the whole
model in train mode (engine/trainer.py:100). The gammas fold into attn.proj and fc2 after
training."""
from trainables.reparam import add_difffit, bias, difffit_gamma, head_and, norm
from trainables.strategy import Strategy, register


def adapt(model, cfg):
    return add_difffit(model)


STRATEGY = register(Strategy("difffit", grid="petl", trains=head_and(difffit_gamma, bias, norm),
                             adapt=adapt, trains_backbone=True, frozen_eval=False, merges=True,
                             summary="residual gammas + biases + LayerNorms + head"))
