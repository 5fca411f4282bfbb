"""FT-then-PT: the trial first finetunes the whole network (the `full_ft` prior, with the study's
FT recipe), then adds deep prompts to the finetuned weights and prompt-tunes them with a fresh
head, as the paper's code does: its two-step loader keeps every finetuned weight but the head
(VPT-or-FT src/models/build_vit_backbone.py:582-602, `head*` keys dropped at line 599) and its
model builds a new VPT head (src/models/vit_models.py:208-214). The new head is the official VPT
init drawn from the trial's seed. `ft_then_pt_kept_head` is the other reading, the FT head kept."""
from trainables.backbones import fresh_vpt_head
from trainables.prompts import prompting
from trainables.strategy import PROMPT_KNOBS, Strategy, prompts_and_head, register

deep_prompts = prompting(deep=True)


def adapt(model, cfg):
    return fresh_vpt_head(deep_prompts(model, cfg), cfg.seed)


STRATEGY = register(Strategy("ft_then_pt", grid="prompt", trains=prompts_and_head, adapt=adapt,
                             knobs=PROMPT_KNOBS, prior="full_ft", revision=1,   # the fresh head
                             summary="full_ft, then deep prompts + a fresh head on the FT "
                                     "weights"))
