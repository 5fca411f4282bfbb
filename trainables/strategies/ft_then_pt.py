"""FT-then-PT: the trial first finetunes the whole network (the `full_ft` prior, with the study's
FT recipe), then adds deep prompts to the finetuned weights and prompt-tunes them with the head."""
from trainables.prompts import prompting
from trainables.strategy import PROMPT_KNOBS, Strategy, prompts_and_head, register

STRATEGY = register(Strategy("ft_then_pt", grid="prompt", trains=prompts_and_head,
                             adapt=prompting(deep=True), knobs=PROMPT_KNOBS, prior="full_ft",
                             summary="full_ft, then deep prompts + head on the FT weights"))
