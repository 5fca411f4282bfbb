"""VPT-shallow: prompts inserted once, after the position embedding; prompts and head train."""
from trainables.prompts import prompting
from trainables.strategy import PROMPT_KNOBS, Strategy, prompts_and_head, register

STRATEGY = register(Strategy("vpt_shallow", grid="prompt", trains=prompts_and_head,
                             adapt=prompting(deep=False), knobs=PROMPT_KNOBS,
                             summary="prompts at the input + head"))
