"""VPT-shallow: prompts inserted once, after the position embedding; prompts and head train."""
from trainables.prompts import add_prompts
from trainables.strategy import PROMPT_SETTINGS, Strategy, prompts_and_head, register


def adapt(model, cfg):
    return add_prompts(model, cfg.prompt_length, deep=False, dropout=cfg.prompt_dropout,
                       pooled=cfg.backbone.prompts_in_pool)


STRATEGY = register(Strategy("vpt_shallow", grid="prompt", trains=prompts_and_head, adapt=adapt,
                             takes=PROMPT_SETTINGS, summary="prompts at the input + head"))
