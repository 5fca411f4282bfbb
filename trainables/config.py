"""Typed, frozen configuration of one trial and of the backbone it starts from. A `TrialConfig`
round-trips through a plain dict (what Ray Tune's param_space carries) and has a stable
`trial_id`, a hash of what the trial computes (not of how it runs: cache path, `Execution`,
which weights to keep), which keys the trial's MLflow run and lets a rerun skip the trials it
already finished."""
from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class BackboneSpec:
    """A timm architecture by `arch.tag` name, with optional timm keyword overrides and an
    optional local weights file (safetensors, .pth or the original ViT .npz)."""
    name: str
    overrides: tuple[tuple[str, Any], ...] = ()
    weights: str | None = None        # local file; relative paths resolve against the cache dir
    hub_weights: bool = False         # ask timm for its own pretrained weights (needs the hub)
    label: str = ""                   # short name for tables and tags
    key_prefix: str = ""              # keep only weights under this prefix, stripped (MoCo v3)
    mean_std: tuple[tuple[float, ...], tuple[float, ...]] | None = None   # else timm's config
    dropout: float = 0.0              # ViT dropout on the embeddings and MLP outputs (`backbones`)
    head_init: str = "timm"           # "timm" or "vpt" (the official VPT head: `backbones`)
    fresh: tuple[str, ...] = ()       # model keys (prefixes) left at init, not read from the file
    unused: tuple[str, ...] = ()      # file keys (prefixes) the model does not read
    fixed: tuple[str, ...] = ()       # parameters (prefixes) no strategy trains (MoCo v3's
                                      # fixed sin-cos position embedding)
    prompts_in_pool: bool = False     # average pooling includes visual prompts (official MAE)
    obtain: str = field(default="", compare=False)   # where to get the weights file

    @property
    def tag(self) -> str:
        return self.label or self.name


@dataclass(frozen=True)
class Recipe:
    """How parameters are optimised: optimiser by name, base lr (scaled by batch / 256), weight
    decay, epochs with warm-up then cosine decay, stepped per step or per epoch (the optimisers
    and schedules are `trainables.optimizers`)."""
    optimizer: str                    # "sgd" | "adamw" | "vpt_sgd" | "vpt_adamw"
    base_lr: float
    weight_decay: float
    epochs: int
    warmup_epochs: int
    batch_size: int
    eval_every: int = 1               # evaluate every n epochs (and always after the last)
    schedule: str = "step"            # "step" | "vpt_epoch"
    eval_at: tuple[int, ...] = ()     # evaluate after these epochs (and after the last) instead
    # of every `eval_every`: successive halving's rungs (`study.halving`). It changes neither the
    # weights nor the final val accuracy, so no identity holds it (trial ids, kept priors)

    def __post_init__(self):
        object.__setattr__(self, "eval_at", tuple(self.eval_at))

    @property
    def lr(self) -> float:
        return self.base_lr * self.batch_size / 256

    def evaluates_after(self, epoch: int) -> bool:
        """Whether val is evaluated after `epoch` (1-based, of this recipe's phase)."""
        if epoch == self.epochs:
            return True
        return epoch in self.eval_at if self.eval_at else epoch % self.eval_every == 0

    def evaluations(self, epochs: int) -> int:
        """The val passes of a phase that ran its first `epochs` epochs."""
        return sum(self.evaluates_after(epoch) for epoch in range(1, epochs + 1))

    def identity(self) -> dict:
        """The fields that make its results: all but `eval_at`."""
        return {k: v for k, v in dataclasses.asdict(self).items() if k != "eval_at"}


PRECISIONS = ("auto", "fp32", "tf32", "bf16")


@dataclass(frozen=True)
class Execution:
    """How a trial runs on its worker: CPU threads, numeric precision ("auto" is bf16 autocast
    on CUDA, and on a CPU with native bf16 for models of 5M parameters or more: see
    `trainables.trial.autocast_dtype`; "tf32" is fp32 with TF32 matrix products on CUDA, fp32
    on a CPU), `torch.compile`, the share of one GPU it was given (its
    process may use no more of that GPU's memory), and whether a probe that trains only the
    head does so on features computed once."""
    threads: int = 1
    precision: str = "auto"
    compile: bool = False
    gpu_share: float = 0.0
    cache_features: bool = True

    def __post_init__(self):
        if self.precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {PRECISIONS}, got '{self.precision}'")


RUNS_NOT_RESULTS = ("cache_dir", "execution", "save", "kept_as_prior", "searched")   # not in a
# trial's identity
# Knobs that were fields of their own before strategies declared knobs: a trial's identity holds
# them where and as it did (with these values when its strategy lacks them), so that every store
# made before keeps resuming; any other knob joins the identity under "knobs".
FIELDS_BEFORE_KNOBS = {"prompt_length": 0, "prompt_dropout": 0.0, "lora_rank": 0,
                       "lora_alpha": None}
# Backbone fields added since: in a trial's identity only when set, so that trials which do not
# use them keep their ids.
BACKBONE_FIELDS_ADDED = {"fixed": ()}


@dataclass(frozen=True)
class TrialConfig:
    study: str
    stage: str                        # "tune" | "final"
    task: str
    strategy: str
    backbone: BackboneSpec
    recipe: Recipe
    seed: int
    train_split: str                  # train800 | train800val200 | ...
    eval_split: str                   # val200 | test
    setting: str = "800"              # data setting: train size, "1shot" or "full"
    knobs: tuple[tuple[str, Any], ...] = ()   # the strategy's own settings, (name, value) by name
    searched: tuple[str, ...] = field(default=(), compare=False)   # the knobs its study searches
    revision: int = 0                 # the strategy's (`Strategy.revision`): in the identity if > 0
    prior_recipe: Recipe | None = None    # recipe of the prior strategy (FT-then-PT's FT phase)
    cache_dir: str = field(default="", compare=False)
    execution: Execution = field(default_factory=Execution, compare=False)
    save: str = field(default="", compare=False)   # "", "trainable" or "all": weights kept after
    kept_as_prior: bool = field(default=False, compare=False)   # later trials replay this one
                                                  # as their prior phase (`trainables.priors`)

    def __post_init__(self):
        object.__setattr__(self, "knobs", tuple(sorted((str(k), v) for k, v in self.knobs)))

    def knob(self, name: str) -> Any:
        """The value of one of the strategy's knobs (`trainables.strategy.Knob`)."""
        try:
            return dict(self.knobs)[name]
        except KeyError:
            raise KeyError(f"trial of {self.strategy} has no knob '{name}'; it has "
                           f"{[k for k, _ in self.knobs]}") from None

    @property
    def trial_id(self) -> str:
        identity = {k: v for k, v in self.to_dict().items()
                    if k not in RUNS_NOT_RESULTS}
        identity["recipe"] = self.recipe.identity()
        if self.prior_recipe:
            identity["prior_recipe"] = self.prior_recipe.identity()
        identity["backbone"] = {k: v for k, v in identity["backbone"].items()
                                if k not in BACKBONE_FIELDS_ADDED or v != BACKBONE_FIELDS_ADDED[k]}
        if not identity["revision"]:
            del identity["revision"]
        knobs = dict(identity.pop("knobs"))
        identity.update({k: knobs.pop(k, value) for k, value in FIELDS_BEFORE_KNOBS.items()})
        if knobs:
            identity["knobs"] = knobs
        return hashlib.sha1(json.dumps(identity, sort_keys=True).encode()).hexdigest()[:12]

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, raw: dict) -> "TrialConfig":
        raw = dict(raw)
        backbone = dict(raw.pop("backbone"))
        backbone["overrides"] = tuple(tuple(kv) for kv in backbone.get("overrides", ()))
        if backbone.get("mean_std"):
            backbone["mean_std"] = tuple(tuple(v) for v in backbone["mean_std"])
        for key in ("fresh", "unused", "fixed"):
            backbone[key] = tuple(backbone.get(key, ()))
        prior = raw.pop("prior_recipe", None)
        raw["knobs"] = tuple(tuple(kv) for kv in raw.get("knobs", ()))
        raw["searched"] = tuple(raw.get("searched", ()))
        return cls(backbone=BackboneSpec(**backbone), recipe=Recipe(**raw.pop("recipe")),
                   prior_recipe=Recipe(**prior) if prior else None,
                   execution=Execution(**raw.pop("execution", {})), **raw)
