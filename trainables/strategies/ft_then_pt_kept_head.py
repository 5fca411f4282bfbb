"""FT-then-PT with the finetuned head kept: as `ft_then_pt`, but the prompt phase goes on from
the FT phase's head instead of a fresh one. The paper's text (P:176) is silent on the head and
the released code switches its two-step loader off, so this is the other reading of the
protocol; both strategies replay the same FT phase, so a study comparing them trains it once."""
from trainables.prompts import prompting
from trainables.strategy import PROMPT_KNOBS, Strategy, prompts_and_head, register

STRATEGY = register(Strategy("ft_then_pt_kept_head", grid="prompt", trains=prompts_and_head,
                             adapt=prompting(deep=True), knobs=PROMPT_KNOBS, prior="full_ft",
                             summary="full_ft, then deep prompts + the FT head on the FT weights"))
