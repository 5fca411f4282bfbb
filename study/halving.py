"""Successive halving of the tune stage (`study run <study> --scheduler halving`): within each
cell, every grid point starts; at each rung (the epochs `grace * reduction**k` before the last)
a trial whose val accuracy falls below the best 1/reduction of those that reached the rung
before it is stopped, as Ray Tune's ASHA decides (`study.ray_runner` builds it, one per cell).
ASHA judges a rung at the first val result at or after it, so the tune stage's trials evaluate
val after each rung's epoch (and after the last) and at no other: `Halving.judged`.
The schedule of a trial that continues is never shortened, and selection reads only trials that
ran it to the end. This module holds the rung arithmetic that `study plan` prices; it imports
no Ray."""
from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass, replace

from common.errors import StudyInputError
from common.keys import Cell
from trainables.config import Recipe, TrialConfig


@dataclass(frozen=True)
class Halving:
    reduction: float = 3.0
    grace_epochs: int | None = None       # None: the first epoch after the warm-up

    def __post_init__(self):
        if self.reduction <= 1:
            raise StudyInputError(f"--reduction must be > 1, got {self.reduction:g}")
        if self.grace_epochs is not None and self.grace_epochs < 1:
            raise StudyInputError(f"--grace-epochs must be >= 1, got {self.grace_epochs}")

    def grace(self, recipe: Recipe) -> int:
        """The first rung: no trial is judged before it (by default, before its lr has
        warmed up to its peak)."""
        return self.grace_epochs or recipe.warmup_epochs + 1

    def rungs(self, recipe: Recipe) -> list[float]:
        """The epochs (of the strategy's own phase) at which trials are compared, up to the one
        before the last: a trial that ran its whole schedule is never stopped."""
        rungs, milestone = [], float(self.grace(recipe))
        while milestone <= recipe.epochs - 1:
            rungs.append(milestone)
            milestone *= self.reduction
        return rungs

    def rung_epochs(self, recipe: Recipe) -> tuple[int, ...]:
        """The epochs after which the rungs are judged: each rung's, rounded up."""
        return tuple(sorted({math.ceil(rung) for rung in self.rungs(recipe)}))

    def judged(self, cfg: TrialConfig) -> TrialConfig:
        """The tune trial as halving runs it: val evaluated after each rung epoch and the last."""
        return replace(cfg, recipe=replace(cfg.recipe, eval_at=self.rung_epochs(cfg.recipe)))

    def epochs_by_rank(self, points: int, recipe: Recipe) -> list[float]:
        """The epochs each of one cell's grid of `points` trials runs, by synchronous successive
        halving's arithmetic (the top ceil(n / reduction) continue at each rung, the others stop
        there), best first: the first run the whole schedule."""
        epochs, alive = [float(recipe.epochs)] * points, points
        for milestone in self.rung_epochs(recipe):
            kept = max(1, math.ceil(alive / self.reduction))
            epochs[kept:alive] = [milestone] * (alive - kept)
            alive = kept
        return epochs

    def ranked(self, trials: list[TrialConfig], points: dict[str, int]
               ) -> list[tuple[TrialConfig, float]]:
        """Each tune trial as halving runs it (`judged`), with the share of its own phase's epochs
        it is expected to run: a cell's trials, in order, take the ranks of `epochs_by_rank` over
        its strategy's grid of `points[strategy]` (which trial has which rank is known only as
        they run; the plan prices them all at the cell's first point)."""
        ranks, ranked = Counter(), []
        for cfg in trials:
            cell = Cell(cfg.backbone.tag, cfg.setting, cfg.task, cfg.strategy)
            epochs = self.epochs_by_rank(points[cfg.strategy], cfg.recipe)[ranks[cell]]
            ranks[cell] += 1
            ranked.append((self.judged(cfg), epochs / cfg.recipe.epochs))
        return ranked

    def expected_epochs(self, points: int, recipe: Recipe) -> float:
        """Trial-epochs of one cell's grid of `points` trials, by synchronous successive
        halving's arithmetic (ASHA, which decides as results arrive, runs somewhat more)."""
        return sum(self.epochs_by_rank(points, recipe))

    def describe(self, recipe: Recipe) -> str:
        return (f"successive halving, reduction {self.reduction:g}, rungs at epochs "
                f"{', '.join(f'{r:g}' for r in self.rungs(recipe)) or 'none'} of "
                f"{recipe.epochs}")
