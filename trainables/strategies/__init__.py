"""One module per tuning strategy; importing this package registers them all."""
from trainables.strategies import (full_ft, vpt_deep, vpt_shallow, linear, mixed,  # noqa: F401
                                   ft_then_pt, ft_then_pt_kept_head, lora)
