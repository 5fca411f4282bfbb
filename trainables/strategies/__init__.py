"""One module per tuning strategy; importing this package registers them all."""
from trainables.strategies import (full_ft, vpt_deep, vpt_shallow, linear, mixed,  # noqa: F401
                                   ft_then_pt, lora)
from trainables.strategies import (fact_tk, fact_tt, petl_lora, petl_vpt_deep,  # noqa: F401
                                   petl_vpt_shallow)
