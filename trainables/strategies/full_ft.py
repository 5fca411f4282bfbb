"""Full finetuning: every backbone weight and the new head train (the paper's FT baseline)."""
from trainables.strategy import Strategy, everything, register

STRATEGY = register(Strategy("full_ft", grid="full", trains=everything, trains_backbone=True,
                             summary="all weights train"))
