"""Successive halving of the tune stage (`study run <study> --scheduler halving`): within each
cell, every grid point starts; at each rung (the epochs `grace * reduction**k` before the last)
a trial whose val accuracy falls below the best 1/reduction of those that reached the rung
before it is stopped, as Ray Tune's ASHA decides (`study.ray_runner` builds it, one per cell).
The schedule of a trial that continues is never shortened, and selection reads only trials that
ran it to the end. This module holds the rung arithmetic that `study plan` prices; it imports
no Ray."""
from __future__ import annotations

import math
from dataclasses import dataclass

from common.errors import StudyInputError
from trainables.config import Recipe


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

    def epochs_by_rank(self, points: int, recipe: Recipe) -> list[float]:
        """The epochs each of one cell's grid of `points` trials runs, by synchronous successive
        halving's arithmetic (the top ceil(n / reduction) continue at each rung, the others stop
        there), best first: the first run the whole schedule."""
        epochs, alive = [float(recipe.epochs)] * points, points
        for milestone in self.rungs(recipe):
            kept = max(1, math.ceil(alive / self.reduction))
            epochs[kept:alive] = [milestone] * (alive - kept)
            alive = kept
        return epochs

    def expected_epochs(self, points: int, recipe: Recipe) -> float:
        """Trial-epochs of one cell's grid of `points` trials, by synchronous successive
        halving's arithmetic (ASHA, which decides as results arrive, runs somewhat more)."""
        return sum(self.epochs_by_rank(points, recipe))

    def describe(self, recipe: Recipe) -> str:
        return (f"successive halving, reduction {self.reduction:g}, rungs at epochs "
                f"{', '.join(f'{r:g}' for r in self.rungs(recipe)) or 'none'} of "
                f"{recipe.epochs}")
