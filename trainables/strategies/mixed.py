"""Mixed: deep prompts are added and the whole network trains with them (the paper's Mixed), tuned
on its own grid key: the paper's code runs it as a prompt run (`--train-type prompt`, SGD grid)."""
from trainables.prompts import add_prompts
from trainables.strategy import PROMPT_SETTINGS, Strategy, everything, register


def adapt(model, cfg):
    return add_prompts(model, cfg.prompt_length, deep=True, dropout=cfg.prompt_dropout,
                       pooled=cfg.backbone.prompts_in_pool)


STRATEGY = register(Strategy("mixed", grid="mixed", trains=everything, adapt=adapt,
                             takes=PROMPT_SETTINGS, summary="deep prompts + all weights train"))
