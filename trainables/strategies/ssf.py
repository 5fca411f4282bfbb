"""SSF as PETL_Vision runs it (experiment/config/method/ssf.yml): a per-channel scale and shift
after the patch projection, after norm1, qkv, attn.proj, norm2, fc1 and fc2 of every block and
after the final norm (model/ssf.py, with its insertion points in patch_embed.py, block.py,
attention.py, mlp.py and vision_transformer.py: `trainables.reparam.add_ssf`); they and the head
train (experiment/build_model.py:13, 'ssf_scale', 'ssf_shift'), the whole model in train mode
(engine/trainer.py:100). Each scale and shift folds into the layer before it after training."""
from trainables.reparam import add_ssf, head_and, ssf
from trainables.strategy import Strategy, register


def adapt(model, cfg):
    return add_ssf(model)


STRATEGY = register(Strategy("ssf", grid="petl", trains=head_and(ssf), adapt=adapt,
                             frozen_eval=False, merges=True,
                             summary="scale + shift after every layer + head"))
