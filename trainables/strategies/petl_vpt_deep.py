"""VPT-deep as PETL_Vision runs it (model/vpt.py, model/vision_transformer.py:223-241; grid
experiment/config/method/vpt_deep.yml). Its prompted forward equals `vpt_deep`'s (prepended and
dropped around each block rather than replaced in place: attention does not see token order), but
its training differs: the whole model runs in train mode (engine/trainer.py:100), the backbone's
drop-path included, and prompt dropout draws one mask for the batch (model/vpt.py:39). Only the
prompts and the head train (experiment/build_model.py:13)."""
from trainables.prompts import petl_prompting
from trainables.strategy import Knob, Strategy, prompts_and_head, register

STRATEGY = register(Strategy(
    "petl_vpt_deep", grid="petl", trains=prompts_and_head, adapt=petl_prompting(deep=True),
    knobs=(Knob("prompt_length", int, 10, search=(5, 10, 50, 100), source=(
               "PETL_Vision experiment/config/method/vpt_deep.yml:2 (vpt_num); default "
               "experiment/config/default_vtab_processed.yml:29")),
           Knob("prompt_dropout", float, 0.1, source=(
               "PETL_Vision experiment/config/default_vtab_processed.yml:31 (vpt_dropout)"))),
    trains_backbone=False, frozen_eval=False, merges=False,
    summary="PETL_Vision's VPT: prompts at every layer (encoder in train mode) + head"))
