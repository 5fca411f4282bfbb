"""The strategy registry. A strategy is data plus two small functions: `adapt` changes the
backbone in place (adds prompts or LoRA), `trains` says by parameter name which parameters
receive gradients. `grid` names the search-space grid it is tuned on; `takes` names the study
settings its trials receive (prompt length and dropout, LoRA rank and alpha); `prior` names a
strategy trained first in the same trial, whose weights this one starts from (FT-then-PT).
`prepare` is the one place a model is adapted and frozen. The training loop, the study and the
cost model read these fields and never branch on a strategy's name."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from torch import nn

from common.errors import UnknownName
from common.registry import add
from trainables.config import TrialConfig


def unchanged(model: nn.Module, cfg: TrialConfig) -> nn.Module:
    return model


def head_only(name: str) -> bool:
    return name.startswith("head.")


def prompts_and_head(name: str) -> bool:
    return name.startswith(("prompt.", "head."))


def everything(name: str) -> bool:
    return True


PROMPT_SETTINGS = ("prompt_length", "prompt_dropout")   # TrialConfig fields a study fills in
LORA_SETTINGS = ("lora_rank", "lora_alpha")


@dataclass(frozen=True)
class Strategy:
    name: str
    grid: str                       # "full" | "prompt" | "mixed" | "lora": a SearchSpace key
    trains: Callable[[str], bool]
    adapt: Callable[[nn.Module, TrialConfig], nn.Module] = unchanged
    takes: tuple[str, ...] = ()     # study settings its trials receive (PROMPT_SETTINGS, ...)
    prior: str | None = None
    frozen_eval: bool = True        # frozen modules (their dropout, drop-path) run in eval mode;
                                    # False: the whole model in train mode
    summary: str = ""

    def prepare(self, model: nn.Module, cfg: TrialConfig) -> nn.Module:
        """The model adapted for this strategy, with gradients on exactly what it trains (never
        on what the backbone keeps fixed)."""
        model = self.adapt(model, cfg)
        for name, param in model.named_parameters():
            param.requires_grad_(self.trains(name) and not name.startswith(cfg.backbone.fixed))
        return model

    @property
    def prompted(self) -> bool:
        return "prompt_length" in self.takes

    @property
    def changes_backbone(self) -> bool:
        """Whether the trained backbone differs from the pretrained one (all weights train, or
        a prior phase trained them)."""
        return self.trains is everything or self.prior is not None


STRATEGIES: dict[str, Strategy] = {}


def register(strategy: Strategy) -> Strategy:
    return add(STRATEGIES, "strategy", strategy.name, strategy)


def get_strategy(name: str) -> Strategy:
    import trainables.strategies  # noqa: F401  (fills the registry)
    try:
        return STRATEGIES[name]
    except KeyError:
        raise UnknownName("strategy", name, STRATEGIES) from None


def all_strategies() -> dict[str, Strategy]:
    import trainables.strategies  # noqa: F401
    return dict(STRATEGIES)
