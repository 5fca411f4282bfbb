"""Mixed: deep prompts are added and the whole network trains with them (the paper's Mixed), tuned
on its own grid key: the paper's code runs it as a prompt run (`--train-type prompt`, SGD grid)."""
from trainables.prompts import prompting
from trainables.strategy import PROMPT_KNOBS, Strategy, everything, register

STRATEGY = register(Strategy("mixed", grid="mixed", trains=everything, adapt=prompting(deep=True),
                             knobs=PROMPT_KNOBS, trains_backbone=True,
                             summary="deep prompts + all weights train"))
