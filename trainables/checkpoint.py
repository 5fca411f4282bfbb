"""A trial's trained weights on disk and back: `save_trained` keeps what trained (or everything)
beside the trial's config, `load_trained` rebuilds the adapted model from them (the analyses'
attributions read the final runs' models so)."""
from __future__ import annotations

import json
from pathlib import Path

import torch

from common.files import write_atomically, write_text_atomically
from tasks import get_task
from trainables.config import TrialConfig
from trainables.model import build_model


def weights_path(cfg: TrialConfig) -> Path:
    return Path(cfg.cache_dir) / "weights" / cfg.study / f"{cfg.trial_id}.safetensors"


def save_trained(model: torch.nn.Module, cfg: TrialConfig) -> str:
    """Keep the trained weights for later analyses: only what trained (prompts and head for
    VPT), or everything with `save="all"`; the path goes into the summary."""
    if not cfg.save:
        return ""
    from safetensors.torch import save_file
    trained = {n for n, p in model.named_parameters() if p.requires_grad}
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()
             if cfg.save == "all" or k in trained}
    path = weights_path(cfg)
    write_atomically(path, lambda partial: save_file(state, partial))
    write_text_atomically(path.with_suffix(".json"), json.dumps(cfg.to_dict()))
    return str(path)


def load_trained(path: str | Path, cache_dir: str | Path) -> tuple[torch.nn.Module, TrialConfig]:
    """Rebuild a trained model from `save_trained`'s file: the pretrained, adapted architecture,
    then the saved weights on top."""
    from safetensors.torch import load_file
    path = Path(path)
    cfg = TrialConfig.from_dict(json.loads(path.with_suffix(".json").read_text()))
    model = build_model(cfg, get_task(cfg.task).num_classes, cache_dir)
    missing, unexpected = model.load_state_dict(load_file(str(path)), strict=False)
    if unexpected:
        raise ValueError(f"{path} has weights the model lacks: {unexpected[:3]}")
    return model.eval(), cfg
