"""A study is a Python function, registered by name, that returns a frozen `StudySpec`: tasks,
strategies, backbone, search space, epochs, batch size, seeds. Its docstring gives the command
that runs it and what it should produce. Per-stage trial configs are derived from the spec."""
from __future__ import annotations

import functools
import inspect
from dataclasses import dataclass, field, replace
from itertools import product
from typing import Any, Callable, Mapping, NamedTuple

import torch

from common.errors import StudyInputError, UnknownName
from common.keys import Cell
from common.registry import add
from search_spaces import PROJECT_TABLES, PerTask, SearchSpace
from tasks import TASKS, get_task
from tasks.splits import setting_splits, supports
from trainables.backbones import create_backbone, timm_vit
from trainables.config import BackboneSpec, Execution, Recipe, TrialConfig
from trainables.strategy import Knob, all_strategies, get_strategy

FINAL_SEEDS = (42, 44, 82, 100, 800)
TUNE_PRIORS_BYTES = 2 ** 30      # disk that a tune stage's kept prior runs may take (`trial`)


class Point(NamedTuple):
    """One point of a cell's search: base lr, weight decay and the values of the knobs searched
    beside them, as (name, value) pairs."""
    base_lr: float
    weight_decay: float
    knobs: tuple[tuple[str, Any], ...] = ()

    def label(self) -> str:
        return ",".join([f"lr={self.base_lr:g}", f"wd={self.weight_decay:g}",
                         *(f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}"
                           for k, v in self.knobs)])


Selection = Mapping[Cell, Point]     # cell -> its selected point (or a (base lr, wd) pair)


@dataclass(frozen=True)
class KnobChoice:
    """How a study sets one knob of one strategy: `mode` "fixed" (`value`), "per task" (`table`)
    or "searched" (`values`, a grid axis beside lr and wd); `origin` says who set it: the study
    (`StudySpec.knobs`), its search space's table, or the strategy's declaration."""
    knob: Knob
    mode: str
    origin: str
    value: Any = None
    values: tuple = ()
    table: PerTask | None = None

    def for_task(self, task: str) -> Any:
        """The value for a task: from `table_for` it, else (an imported task) the knob's
        default."""
        if self.table is None:
            return self.value
        table = self.table_for(task)
        return self.knob.default if table is None else table.value(task)

    def table_for(self, task: str) -> PerTask | None:
        """The table holding the task's value: the study's, else the project's own for the knob
        (tasks no paper lists); None for an imported task neither lists. A built-in task that
        neither lists is an error that says where its row goes."""
        for table in (self.table, PROJECT_TABLES.get(self.knob.name)):
            if table is not None and task in table.values:
                return table
        if task in TASKS:
            raise StudyInputError(
                f"no {self.knob.name} for task '{task}' in table '{self.table.name}' or the "
                f"project's: add a row for it to the project's table under search_spaces/data/")
        return None


@functools.lru_cache(maxsize=None)
def weights_bytes(backbone: BackboneSpec) -> int:
    """The size of a backbone's weights, from the model built on the meta device (no memory)."""
    with torch.device("meta"):
        model = create_backbone(replace(backbone, weights=None, hub_weights=False), 2)
    return sum(t.numel() * t.element_size() for t in model.state_dict().values())


@dataclass(frozen=True)
class Upstream:
    """How the project pretrains a backbone itself when its weights file is missing. `shipped`
    names a copy of what this pretraining produced that the project ships in study/data/ (with
    its card): a study starts from it instead (`python -m study pretrain` pretrains anyway)."""
    task: str
    recipe: Recipe
    seed: int = 0
    shipped: str | None = None


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
    eval_every: int = 1                       # evaluate every n epochs (and after the last)
    save_full_weights: bool = False           # final stage: keep full weights of strategies that
                                              # train everything (prompts and heads always kept)
    knobs: Mapping[str, Any] = field(default_factory=dict)   # "knob" or "strategy.knob" -> a
                                              # value (fixed), a tuple or list (searched) or a
                                              # PerTask table; otherwise as the strategy declares
    schedule: str = "step"                    # lr schedule (trainables.optimizers.SCHEDULES)
    settings: tuple[str, ...] = ("800",)         # train sizes, "1shot", or "full" (FGVC)
    upstream: Upstream | None = None
    description: str = ""
    origins: tuple[tuple[str, str], ...] = field(default=(), compare=False)   # a setting a
                                              # study file or a flag set -> "set in <file>" or
                                              # "set on the command line" (study.compose)

    def __post_init__(self):
        for task in self.tasks:
            get_task(task)
        for strategy in self.strategies:
            chosen = get_strategy(strategy)
            self.search_space.grid_for(chosen.grid)
            if chosen.prior and chosen.prior not in self.strategies:
                raise StudyInputError(f"study '{self.name}': {strategy} starts from {chosen.prior}"
                                      f"'s selected recipe, so {chosen.prior} must be in it too")
        for setting in self.settings:
            setting_splits(setting)
        self._check_knobs()
        if not self.tasks or not self.strategies or not self.seeds or not self.backbones:
            raise StudyInputError(f"study '{self.name}' has no tasks, strategies, backbones or "
                                  f"seeds")

    def cells(self) -> list[Cell]:
        """Every (backbone, setting, task, strategy), skipping settings a task lacks."""
        return [Cell(backbone.tag, setting, task, strategy) for backbone in self.backbones
                for setting in self.settings for task in self.tasks
                if supports(get_task(task), setting) for strategy in self.strategies]

    def backbone(self, tag: str) -> BackboneSpec:
        return next(b for b in self.backbones if b.tag == tag)

    def recipe(self, grid_key: str, base_lr: float, weight_decay: float) -> Recipe:
        grid = self.search_space.grid_for(grid_key)
        warmup = self.warmup_epochs if grid.warmup_epochs is None else grid.warmup_epochs
        return Recipe(grid.optimizer, base_lr, weight_decay, self.epochs, warmup,
                      grid.batch_size or self.batch_size, self.eval_every, self.schedule)

    def _check_knobs(self) -> None:
        """Every knob the study sets exists, with values of its type: a plain name is a knob of
        some registered strategy (the study's presets share theirs with variants that leave a
        strategy out), "strategy.knob" one of that strategy, in the study."""
        for key, given in self.knobs.items():
            for knob in self._knobs_named(key, self.strategies if "." in key else
                                          all_strategies()):
                values = given if isinstance(given, (tuple, list)) else (
                    () if isinstance(given, PerTask) else (given,))
                if isinstance(given, (tuple, list)) and not given:
                    raise StudyInputError(f"study '{self.name}': knob '{key}' searches no "
                                          f"values")
                for value in values:
                    knob.parse(value)

    def _knobs_named(self, key: str, strategies) -> list[Knob]:
        """The knobs a key names among these strategies, or a one-line error naming theirs."""
        strategy, _, name = key.rpartition(".")
        taken = {f"{s}.{k.name}": k for s in strategies if not strategy or s == strategy
                 for k in get_strategy(s).knobs}
        found = [k for full, k in taken.items() if full.endswith(f".{name}")]
        if not found:
            offered = sorted({f"{s}.{k.name}" for s in self.strategies
                              for k in get_strategy(s).knobs})
            who = f"no strategy '{strategy}' of it" if strategy else "no strategy of it"
            raise StudyInputError(f"study '{self.name}': {who} takes a knob '{name}'; its "
                                  f"strategies take {', '.join(offered) or 'none'}")
        return found

    def with_knobs(self, given: Mapping[str, Any]) -> "StudySpec":
        """The study with these knobs set (from the command line): each must be taken by one of
        the study's own strategies."""
        for key in given:
            self._knobs_named(key, self.strategies)
        return replace(self, knobs={**self.knobs, **given})

    def knob_choices(self, strategy: str) -> tuple[KnobChoice, ...]:
        """How the study sets each knob of a strategy: what the study gives ("strategy.knob"
        before "knob"), else the search space's per-task table for a per-task knob, else the
        declaration (its searched values, or its default)."""
        choices = []
        for knob in get_strategy(strategy).knobs:
            key = next((k for k in (f"{strategy}.{knob.name}", knob.name) if k in self.knobs),
                       None)
            given = self.knobs.get(key) if key else None
            table = self.search_space.table(knob.name) if knob.per_task else None
            if isinstance(given, PerTask) or (key is None and table):
                choices.append(KnobChoice(knob, "per task", "study" if key else
                                          f"search space '{self.search_space.name}'",
                                          table=given if key else table))
            elif isinstance(given, (tuple, list)) or (key is None and knob.search):
                values = tuple(knob.parse(v) for v in (given if key else knob.search))
                choices.append(KnobChoice(knob, "searched", "study" if key else "strategy",
                                          values=values))
            else:
                choices.append(KnobChoice(knob, "fixed", "study" if key else "strategy",
                                          value=knob.parse(given if key else knob.default)))
        return tuple(choices)

    def points(self, strategy: str) -> list[Point]:
        """The points a cell of the strategy searches: its grid's lr x wd, times the values of
        each searched knob."""
        searched = [c for c in self.knob_choices(strategy) if c.mode == "searched"]
        return [Point(lr, wd, tuple(zip([c.knob.name for c in searched], values)))
                for lr, wd in self.search_space.grid_for(get_strategy(strategy).grid).points()
                for values in product(*(c.values for c in searched))]

    def trial(self, *, stage: str, cell: Cell, point: Point, seed: int,
              prior: Recipe | None = None, cache_dir: str = "",
              execution: Execution = Execution()) -> TrialConfig:
        """One trial of a cell at a point; `prior` is the recipe of the strategy's prior
        phase (FT-then-PT's FT: full_ft's selected recipe for the same task)."""
        chosen = get_strategy(cell.strategy)
        tune, final = setting_splits(cell.setting, get_task(cell.task))
        train_split, eval_split = tune if stage == "tune" else final
        knobs = {c.knob.name: c.for_task(cell.task) for c in self.knob_choices(cell.strategy)
                 if c.mode != "searched"}
        return TrialConfig(
            study=self.name, stage=stage, task=cell.task, strategy=cell.strategy,
            backbone=self.backbone(cell.backbone),
            recipe=self.recipe(chosen.grid, point.base_lr, point.weight_decay), seed=seed,
            train_split=train_split, eval_split=eval_split, setting=cell.setting,
            knobs=tuple({**knobs, **dict(point.knobs)}.items()),
            searched=tuple(name for name, _ in point.knobs), revision=chosen.revision,
            prior_recipe=prior, cache_dir=cache_dir, execution=execution,
            save=self._save(stage, chosen),
            kept_as_prior=self.is_prior(cell.strategy) and (
                stage == "final" or self.keeps_tune_priors()))

    def point_of(self, cfg: TrialConfig) -> Point:
        """The point a trial of this study ran at (the inverse of `trial`)."""
        searched = [c.knob.name for c in self.knob_choices(cfg.strategy) if c.mode == "searched"]
        return Point(cfg.recipe.base_lr, cfg.recipe.weight_decay,
                     tuple((name, cfg.knob(name)) for name in searched))

    def is_prior(self, strategy: str) -> bool:
        """Whether another strategy of the study starts from this one (full_ft, for FT-then-PT)."""
        return any(get_strategy(other).prior == strategy for other in self.strategies)

    def keeps_tune_priors(self) -> bool:
        """Whether every tune run of a prior strategy keeps its weights, so that the strategies
        starting from it replay the selected one instead of training it again: only when they
        all fit in TUNE_PRIORS_BYTES of disk (the demo's 14 take 12 MB; `paper`'s ViT-B/16 runs
        would take about 105 GB, so there each task's first FT-then-PT trial trains it)."""
        runs = [(cell, len(self.points(cell.strategy))) for cell in self.cells()
                if self.is_prior(cell.strategy)]
        return sum(points * weights_bytes(self.backbone(cell.backbone))
                   for cell, points in runs) <= TUNE_PRIORS_BYTES

    def pretraining_here(self) -> "StudySpec":
        """The study with its backbone pretrained on this machine (when the cache has none)
        rather than copied from the project's shipped weights."""
        if self.upstream is None:
            raise StudyInputError(f"study '{self.name}' has no pretraining of its own: its "
                                  f"backbones' weights come from files")
        return replace(self, upstream=replace(self.upstream, shipped=None))

    def prior_recipe(self, cell: Cell, selected: Selection) -> Recipe | None:
        """The recipe selected for the strategy's prior in the same task (None without one)."""
        prior = get_strategy(cell.strategy).prior
        if prior is None:
            return None
        point = Point(*selected[cell._replace(strategy=prior)])
        return self.recipe(get_strategy(prior).grid, point.base_lr, point.weight_decay)

    def _save(self, stage: str, strategy) -> str:
        if stage != "final":
            return ""
        if not strategy.changes_backbone:
            return "trainable"
        return "all" if self.save_full_weights else ""

    def tune_trials(self, selected: Selection | None = None, **where) -> list[TrialConfig]:
        """The grid of every cell. Without `selected`: the strategies trained from the
        pretrained backbone. With the selection they produced: the strategies that start from a
        prior's selected recipe (cells whose prior has no selection are left out); grid points
        after a cell's first are queued last, so that they replay the prior the first one
        trained (trainables.priors)."""
        leaders, followers = [], []
        for cell in self.cells():
            chosen = get_strategy(cell.strategy)
            if (selected is None) != (chosen.prior is None) or (
                    chosen.prior and cell._replace(strategy=chosen.prior) not in selected):
                continue
            prior = self.prior_recipe(cell, selected or {})
            for index, point in enumerate(self.points(cell.strategy)):
                queue = followers if index and prior else leaders
                queue.append(self.trial(stage="tune", cell=cell, point=point,
                                        seed=self.tune_seed, prior=prior, **where))
        return leaders + followers

    def final_trials(self, selected: Selection, **where) -> list[TrialConfig]:
        """Every seed of each selected cell (whose prior, if it has one, is selected too). The
        cells with a prior are queued last, so that each seed replays its prior's own final run
        of that seed (trainables.priors)."""
        leaders, followers = [], []
        for key, point in selected.items():
            point = Point(*point)                 # (base lr, weight decay) will do
            cell = Cell(*key)
            prior = get_strategy(cell.strategy).prior
            if prior and cell._replace(strategy=prior) not in selected:
                continue
            recipe = self.prior_recipe(cell, selected)
            (followers if prior else leaders).extend(
                self.trial(stage="final", cell=cell, point=point, seed=seed, prior=recipe,
                           **where) for seed in self.seeds)
        return leaders + followers

    def first_points(self) -> Selection:
        """Each cell's first grid point, as a selection: what `study plan` prices."""
        return {cell: self.points(cell.strategy)[0] for cell in self.cells()}


STUDIES: dict[str, Callable[..., StudySpec]] = {}


def register_study(name: str):
    def wrap(fn: Callable[..., StudySpec]) -> Callable[..., StudySpec]:
        return add(STUDIES, "study", name, fn)
    return wrap


def get_study(name: str, smoke: bool = False, **overrides) -> StudySpec:
    import study.studies  # noqa: F401  (fills the registry)
    try:
        fn = STUDIES[name]
    except KeyError:
        raise UnknownName("study", name, STUDIES) from None
    spec = fn(smoke=smoke)
    return replace(spec, **{k: v for k, v in overrides.items() if v is not None})


BACKBONES: dict[str, tuple[BackboneSpec, Upstream | None]] = {}


def register_backbone(backbone: BackboneSpec, upstream: Upstream | None = None) -> BackboneSpec:
    """A backbone a study file or `--backbone` names by its tag, with the pretraining that makes
    its weights where the project makes them itself (the demo's ViT)."""
    add(BACKBONES, "backbone", backbone.tag, (backbone, upstream))
    return backbone


TIMM_PREFIX = "timm:"


def get_backbone(name: str) -> tuple[BackboneSpec, Upstream | None]:
    """A registered backbone by its tag, or any timm ViT as `timm:NAME` (weights from the hub
    unless a file is given: `--weights`, `study.compose`)."""
    if name.startswith(TIMM_PREFIX):
        return timm_vit(name.removeprefix(TIMM_PREFIX), label=name), None
    import study.studies  # noqa: F401  (fills the registry)
    try:
        return BACKBONES[name]
    except KeyError:
        raise UnknownName("backbone", name, BACKBONES,
                          hint=f"; or any timm ViT as {TIMM_PREFIX}NAME") from None


def study_doc(name: str) -> str:
    import study.studies  # noqa: F401
    return inspect.getdoc(STUDIES[name]) or ""


def all_studies() -> Mapping[str, Callable[..., StudySpec]]:
    import study.studies  # noqa: F401
    return dict(STUDIES)
