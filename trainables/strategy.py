"""The strategy registry. A strategy is data plus two small functions: `adapt` changes the
backbone in place (adds prompts, adapters or LoRA), `trains` says by parameter name which parameters
receive gradients. `grid` names the search-space grid it is tuned on; `knobs` declares the settings
of its own that its trials take (prompt length, LoRA rank, an adapter's bottleneck), each with a
type, a default, the values searched beside lr and wd (if any) and the source of both; `prior`
names a strategy trained first in the same trial, whose weights this one starts from (FT-then-PT).
`prepare` is the one place a model is adapted and frozen. The training loop, the study, the card
and the cost model read these fields and never branch on a strategy's name."""
from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Any, Callable

from torch import nn

from common.errors import StudyInputError, UnknownName
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


@dataclass(frozen=True)
class Knob:
    """A setting of a strategy's own. A study fixes it (the default, or a value it sets), takes it
    per task from its search space's table (`per_task`, as VPT's prompt lengths), or searches it
    beside lr and wd (`search`: the values, a grid axis; a study may search others or fix it)."""
    name: str
    type: type                          # int | float | bool | str
    default: Any                        # None where the strategy reads it so (LoRA's alpha)
    search: tuple = ()                  # searched over these by default; () fixed or per task
    per_task: bool = False              # one value per task, from the search space's table
    source: str = "project choice"      # where the default and the searched values come from
    shapes_model: bool | None = None    # changes the model's parameters and FLOPs (a bottleneck,
                                        # a rank, a prompt length); None: an int knob does

    def __post_init__(self):
        if self.shapes_model is None:
            object.__setattr__(self, "shapes_model", self.type is int)
        for value in (self.default, *self.search):
            self.parse(value)

    def parse(self, value: Any) -> Any:
        """The value as the knob's type (text from the command line included), or a one-line
        error: a bool is not a number, 4.5 is not an int."""
        if value is None and self.default is None:
            return None
        if isinstance(value, str) and self.type is not str:
            value = _from_text(value, self)
        numeric = self.type is float and isinstance(value, int)
        if isinstance(value, bool) != (self.type is bool) or not (
                isinstance(value, self.type) or numeric):
            raise StudyInputError(f"knob '{self.name}' takes {self.type.__name__}, got "
                                  f"{value!r} ({type(value).__name__})")
        return self.type(value)


BOOLEANS = {"true": True, "yes": True, "1": True, "false": False, "no": False, "0": False}


def _from_text(text: str, knob: Knob) -> Any:
    try:
        return BOOLEANS[text.strip().lower()] if knob.type is bool else knob.type(text.strip())
    except (KeyError, ValueError):
        raise StudyInputError(f"knob '{knob.name}' takes {knob.type.__name__}, got "
                              f"'{text}'") from None


PROMPT_KNOBS = (
    Knob("prompt_length", int, 10, per_task=True,
         source="VPT-or-FT README.md:125 (VPT's per-task lengths); the search space's table"),
    Knob("prompt_dropout", float, 0.1, source="VPT-or-FT README.md:142-143 "
                                              "(MODEL.PROMPT.DROPOUT 0.1)"))
LORA_KNOBS = (
    Knob("lora_rank", int, 8, source="project choice (microsoft/LoRA's examples use 4-16)"),
    Knob("lora_alpha", float, None, source="None: alpha = rank, scale 1 (loralib's default "
                                           "alpha is 1: set 1.0 for TOAST's scale 1/r)"))


@dataclass(frozen=True)
class Strategy:
    name: str
    grid: str                       # "full" | "prompt" | "mixed" | "lora" | ...: a SearchSpace key
    trains: Callable[[str], bool]
    adapt: Callable[[nn.Module, TrialConfig], nn.Module] = unchanged
    knobs: tuple[Knob, ...] = ()    # its own settings, each in every trial's `knobs`
    prior: str | None = None
    trains_backbone: bool = False   # the pretrained weights themselves train (full_ft, mixed)
    frozen_eval: bool = True        # frozen modules (their dropout, drop-path) run in eval mode;
                                    # False: the whole model in train mode
    merges: bool = False            # the trained update folds into the weights after training
                                    # (LoRA, BitFit, SSF...): no inference cost
    revision: int = 0               # raised when what its trials compute changes, so that stores
                                    # run them again rather than resume with older results
    summary: str = ""

    def prepare(self, model: nn.Module, cfg: TrialConfig) -> nn.Module:
        """The model adapted for this strategy, with gradients on exactly what it trains (never
        on what the backbone keeps fixed)."""
        model = self.adapt(model, cfg)
        for name, param in model.named_parameters():
            param.requires_grad_(self.trains(name) and not name.startswith(cfg.backbone.fixed))
        return model

    def knob(self, name: str) -> Knob:
        for knob in self.knobs:
            if knob.name == name:
                return knob
        raise UnknownName(f"knob of strategy '{self.name}'", name,
                          [k.name for k in self.knobs] or ["(none)"])

    def knob_values(self, **given) -> tuple[tuple[str, Any], ...]:
        """A trial's `knobs`: each knob's default, or the value given for it (given values of
        knobs it lacks are ignored, so one call serves every strategy)."""
        return tuple((k.name, k.parse(given.get(k.name, k.default))) for k in self.knobs)

    @property
    def prompted(self) -> bool:
        return any(knob.name == "prompt_length" for knob in self.knobs)

    @property
    def changes_backbone(self) -> bool:
        """Whether the trained backbone differs from the pretrained one (its weights train, or
        a prior phase trained them)."""
        return self.trains_backbone or self.prior is not None


STRATEGIES: dict[str, Strategy] = {}


def register(strategy: Strategy) -> Strategy:
    return add(STRATEGIES, "strategy", strategy.name, strategy)


def get_strategy(name: str) -> Strategy:
    """A strategy by name; one not registered yet is looked for in the module of its name under
    trainables/strategies/ (a file added since the package was imported)."""
    import trainables.strategies  # noqa: F401  (fills the registry)
    module = f"trainables.strategies.{name}"
    if name not in STRATEGIES and name.isidentifier():
        try:
            importlib.import_module(module)
        except ModuleNotFoundError as error:
            if error.name != module:
                raise
    try:
        return STRATEGIES[name]
    except KeyError:
        raise UnknownName("strategy", name, STRATEGIES) from None


def all_strategies() -> dict[str, Strategy]:
    import trainables.strategies  # noqa: F401
    return dict(STRATEGIES)
