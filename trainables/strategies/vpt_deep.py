"""VPT-deep: prompts at the input and at every later layer; only prompts and head train, the
backbone stays frozen (and in eval mode)."""
from trainables.prompts import add_prompts
from trainables.strategy import PROMPT_SETTINGS, Strategy, prompts_and_head, register


def adapt(model, cfg):
    return add_prompts(model, cfg.prompt_length, deep=True, dropout=cfg.prompt_dropout,
                       pooled=cfg.backbone.prompts_in_pool)


STRATEGY = register(Strategy("vpt_deep", grid="prompt", trains=prompts_and_head, adapt=adapt,
                             takes=PROMPT_SETTINGS, summary="prompts at every layer + head"))
