"""RepAdapter as PETL_Vision runs it (experiment/config/method/repadapter.yml): a grouped
bottleneck adapter x + s * B(dropout(A x)) on the input of every block's attention and of its MLP
('sequential_before', model/block.py:112-113,154-155; model/repadapter.py), trained with the head
(experiment/build_model.py:13, 'ft_attn_module', 'ft_mlp_module'), the whole model in train mode
(engine/trainer.py:100). Being linear, the adapter folds into the qkv and fc1 projections after
training."""
from trainables.reparam import add_repadapter, head_and, repadapter
from trainables.strategy import Knob, Strategy, register

KNOBS = (
    Knob("bottleneck", int, 8, search=(8, 16, 32),
         source="PETL_Vision experiment/config/method/repadapter.yml:6; default "
                "experiment/config/default_vtab_processed.yml:37"),
    Knob("scaler", float, 1.0, search=(0.1, 0.5, 1.0, 5.0, 10.0),
         source="PETL_Vision experiment/config/method/repadapter.yml:7; default "
                "experiment/config/default_vtab_processed.yml:39"),
    Knob("groups", int, 2, source="PETL_Vision experiment/config/default_vtab_processed.yml:40 "
                                  "(repadapter_group, not searched)"))


def adapt(model, cfg):
    return add_repadapter(model, cfg.knob("bottleneck"), cfg.knob("groups"), cfg.knob("scaler"))


STRATEGY = register(Strategy("repadapter", grid="petl", trains=head_and(repadapter), adapt=adapt,
                             knobs=KNOBS, frozen_eval=False, merges=True,
                             summary="grouped adapters before attention and MLP + head"))
