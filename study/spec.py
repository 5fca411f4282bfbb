"""A study is a Python function, registered by name, that returns a frozen `StudySpec`: tasks,
strategies, backbone, search space, epochs, batch size, seeds. Its docstring gives the command
that runs it and what it should produce. Per-stage trial configs are derived from the spec."""
from __future__ import annotations

import inspect
from dataclasses import dataclass, replace
from typing import Callable, Mapping

from search_spaces import SearchSpace, prompt_length
from study.errors import StudyInputError, UnknownName
from tasks import get_task
from tasks.splits import setting_splits, supports
from trainables.config import BackboneSpec, Execution, Recipe, TrialConfig
from trainables.strategy import get_strategy

FINAL_SEEDS = (42, 44, 82, 100, 800)


@dataclass(frozen=True)
class Upstream:
    """How the project pretrains a backbone itself when its weights file is missing."""
    task: str
    recipe: Recipe
    seed: int = 0


@dataclass(frozen=True)
class StudySpec:
    name: str
    tasks: tuple[str, ...]
    strategies: tuple[str, ...]
    backbones: tuple[BackboneSpec, ...]
    search_space: SearchSpace
    epochs: int = 100
    warmup_epochs: int = 10
    batch_size: int = 64
    seeds: tuple[int, ...] = FINAL_SEEDS
    tune_seed: int = 42
    prompt_dropout: float = 0.1
    eval_every: int = 1                       # evaluate every n epochs (and after the last)
    save_full_weights: bool = False           # final stage: keep full weights of strategies that
                                              # train everything (prompts and heads always kept)
    lora_rank: int = 8
    prior_base_lr: float = 0.001              # FT phase of FT-then-PT (on the "full" grid's optimiser)
    settings: tuple[str, ...] = ("800",)         # train sizes, "1shot", or "full" (FGVC)
    upstream: Upstream | None = None
    description: str = ""

    def __post_init__(self):
        for task in self.tasks:
            get_task(task)
        for strategy in self.strategies:
            self.search_space.grid_for(get_strategy(strategy).grid)
        for setting in self.settings:
            setting_splits(setting)
        if not self.tasks or not self.strategies or not self.seeds or not self.backbones:
            raise StudyInputError(f"study '{self.name}' has no tasks, strategies, backbones or "
                                  f"seeds")

    def cells(self) -> list[tuple[BackboneSpec, str, str, str]]:
        """(backbone, setting, task, strategy) combinations, skipping settings a task lacks."""
        return [(backbone, setting, task, strategy) for backbone in self.backbones
                for setting in self.settings for task in self.tasks
                if supports(get_task(task), setting) for strategy in self.strategies]

    def recipe(self, grid_key: str, base_lr: float, weight_decay: float) -> Recipe:
        optimizer = self.search_space.grid_for(grid_key).optimizer
        return Recipe(optimizer, base_lr, weight_decay, self.epochs, self.warmup_epochs,
                      self.batch_size, self.eval_every)

    def trial(self, stage: str, backbone: BackboneSpec, setting: str, task: str, strategy: str,
              base_lr: float, weight_decay: float, seed: int, cache_dir: str = "",
              execution: Execution = Execution()) -> TrialConfig:
        chosen = get_strategy(strategy)
        tune, final = setting_splits(setting)
        train_split, eval_split = tune if stage == "tune" else final
        prior = get_strategy(chosen.prior) if chosen.prior else None
        return TrialConfig(
            study=self.name, stage=stage, task=task, strategy=strategy, backbone=backbone,
            recipe=self.recipe(chosen.grid, base_lr, weight_decay), seed=seed,
            train_split=train_split, eval_split=eval_split, setting=setting,
            prompt_length=prompt_length(task) if chosen.prompted else 0,
            prompt_dropout=self.prompt_dropout if chosen.prompted else 0.0,
            lora_rank=self.lora_rank if chosen.grid == "lora" else 0,
            prior_recipe=self.recipe(prior.grid, self.prior_base_lr, 0.0) if prior else None,
            cache_dir=cache_dir, execution=execution, save=self._save(stage, chosen))

    def _save(self, stage: str, strategy) -> str:
        if stage != "final":
            return ""
        if not strategy.changes_backbone:
            return "trainable"
        return "all" if self.save_full_weights else ""

    def tune_trials(self, **where) -> list[TrialConfig]:
        """The grid of every cell. Grid points after the first of a strategy with a prior are
        queued last, so that they replay the prior the first one trained (trainables.priors)."""
        leaders, followers = [], []
        for backbone, setting, task, strategy in self.cells():
            points = self.search_space.grid_for(get_strategy(strategy).grid).points()
            for index, (lr, wd) in enumerate(points):
                queue = followers if index and get_strategy(strategy).prior else leaders
                queue.append(self.trial("tune", backbone, setting, task, strategy, lr, wd,
                                        self.tune_seed, **where))
        return leaders + followers

    def final_trials(self, selected, **where) -> list[TrialConfig]:
        """Every seed of each selected (backbone, setting, task, strategy) row."""
        backbones = {backbone.tag: backbone for backbone in self.backbones}
        return [self.trial("final", backbones[row.backbone], row.setting, row.task, row.strategy,
                           row.base_lr, row.weight_decay, seed, **where)
                for row in selected.itertuples() for seed in self.seeds]


STUDIES: dict[str, Callable[..., StudySpec]] = {}


def register_study(name: str):
    def wrap(fn: Callable[..., StudySpec]) -> Callable[..., StudySpec]:
        STUDIES[name] = fn
        return fn
    return wrap


def get_study(name: str, smoke: bool = False, **overrides) -> StudySpec:
    import study.studies  # noqa: F401  (fills the registry)
    try:
        fn = STUDIES[name]
    except KeyError:
        raise UnknownName("study", name, STUDIES) from None
    spec = fn(smoke=smoke)
    return replace(spec, **{k: v for k, v in overrides.items() if v is not None})


def study_doc(name: str) -> str:
    import study.studies  # noqa: F401
    return inspect.getdoc(STUDIES[name]) or ""


def all_studies() -> Mapping[str, Callable[..., StudySpec]]:
    import study.studies  # noqa: F401
    return dict(STUDIES)
