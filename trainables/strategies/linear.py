"""Linear probe: only the classifier head trains on the frozen backbone's class token."""
from trainables.strategy import Strategy, head_only, register

STRATEGY = register(Strategy("linear", grid="prompt", trains=head_only, summary="head only"))
