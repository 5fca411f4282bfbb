"""Everything that runs inside one trial: the backbone from timm, the tuning strategies (one
module each under `trainables/strategies/`), the prompted-ViT and LoRA model code, the generic
training loop and `run_trial`, the function the Ray Tune trainable wraps. Nothing here imports
ray; results leave through a `report(metrics)` callable."""
