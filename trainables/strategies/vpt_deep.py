"""VPT-deep: prompts at the input and at every later layer; only prompts and head train, the
backbone stays frozen (and in eval mode)."""
from trainables.prompts import prompting
from trainables.strategy import PROMPT_KNOBS, Strategy, prompts_and_head, register

STRATEGY = register(Strategy("vpt_deep", grid="prompt", trains=prompts_and_head,
                             adapt=prompting(deep=True), knobs=PROMPT_KNOBS,
                             summary="prompts at every layer + head"))
