"""Which device a trial runs on and how much of a GPU it may take, as pure functions of what Ray
granted and what the card holds (no torch here, so that they are tested without a GPU).

A trial uses CUDA only when it was given a share of a GPU: with a share of 0 it runs on the CPU,
whatever the node has (the Ray runner also hides the GPUs from such a worker). A share asks for
the card's memory times the share, of which each process's CUDA context (outside PyTorch's
allocator) takes `CUDA_CONTEXT_BYTES`: the rest is what the allocator may hold
(`memory_fraction`). `fit_shares` checks a share against each strategy's peak memory per trial
(`trainables.footprint`), or picks the smallest share of the form 1/k that holds it, so that k
trials of a strategy pack one card."""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Mapping

from common.errors import StudyInputError

GIB = 2 ** 30
CUDA_CONTEXT_BYTES = 3 * GIB // 4     # an allowance per process: context, cuBLAS/cuDNN workspaces
MOST_TRIALS_PER_GPU = 8
AUTO = "auto"                          # --gpus-per-trial auto: a share per strategy


def choose_device(gpu_share: float, cuda_available: bool) -> str:
    """"cuda" when the trial was given a share of a GPU, "cpu" when it was given none; a share
    that torch cannot use is refused in one line, not run on the CPU in silence."""
    if gpu_share <= 0:
        return "cpu"
    if not cuda_available:
        raise StudyInputError(f"this trial was given {gpu_share:g} of a GPU, but torch cannot "
                              f"use CUDA in its process (no visible device, or a driver too old "
                              f"for this torch build)")
    return "cuda"


def usable_bytes(share: float, card_bytes: int, context: int = CUDA_CONTEXT_BYTES) -> int:
    """What PyTorch's allocator may hold in a process given `share` of a card."""
    return max(0, int(share * card_bytes) - context)


def memory_fraction(share: float, card_bytes: int,
                    context: int = CUDA_CONTEXT_BYTES) -> float | None:
    """The per-process memory fraction for a share of a card: the share less the CUDA context,
    as a fraction of the card; None for a whole card (no cap)."""
    if share >= 1:
        return None
    return max(usable_bytes(share, card_bytes, context), 1) / card_bytes


def share_of(trials_per_gpu: int) -> float:
    """1/k, rounded down to Ray's resolution (1e-4), so that k of them fit one GPU."""
    return math.floor(10_000 / trials_per_gpu) / 10_000


def smallest_share(peak: int, card_bytes: int, context: int = CUDA_CONTEXT_BYTES) -> float | None:
    """The smallest 1/k (k <= MOST_TRIALS_PER_GPU) whose usable memory holds `peak`; None when
    not even a whole card does."""
    for k in range(MOST_TRIALS_PER_GPU, 0, -1):
        if usable_bytes(share_of(k), card_bytes, context) >= peak:
            return share_of(k)
    return None


@dataclass(frozen=True)
class Card:
    """The GPU the trials run on, as a probe on a GPU node saw it."""
    name: str
    total_bytes: int


# cards as torch reports their memory (about), for `study plan`'s shares
CARDS = (Card("A100 40GB", int(39.4 * GIB)), Card("A100/H100 80GB", int(79.1 * GIB)),
         Card("H200", int(139.8 * GIB)))


@dataclass(frozen=True)
class Shares:
    """The share of one GPU a trial takes: its strategy's, else `default`."""
    default: float = 0.0
    by_strategy: tuple[tuple[str, float], ...] = ()

    def of(self, strategy: str) -> float:
        return dict(self.by_strategy).get(strategy, self.default)

    def describe(self) -> str:
        if not self.by_strategy:
            return f"{self.default:g} for every strategy"
        return ", ".join(f"{strategy} {share:g}" for strategy, share in self.by_strategy)


def amount(size: int) -> str:
    """Bytes in GiB, or MiB below a tenth of one."""
    return f"{size / GIB:.1f} GiB" if size >= GIB // 10 else f"{size / 2 ** 20:.0f} MiB"


def fit_shares(requested: float | str, peaks: Mapping[str, int], card: Card,
               context: int = CUDA_CONTEXT_BYTES) -> Shares:
    """Each strategy's share on `card`: the requested share, when it holds every strategy's peak
    memory per trial, or with `auto` the smallest 1/k that holds each one's; refused in one line
    when no share can."""
    usable = usable_bytes(1.0, card.total_bytes, context)
    too_big = {s: peak for s, peak in peaks.items() if peak > usable}
    if too_big:
        strategy, peak = max(too_big.items(), key=lambda item: item[1])
        raise StudyInputError(f"{strategy} needs about {amount(peak)} per trial, more than a whole "
                              f"{card.name} holds ({amount(usable)} after the CUDA context): a "
                              f"larger card or a smaller batch")
    if requested == AUTO:
        return Shares(by_strategy=tuple((s, smallest_share(peak, card.total_bytes, context))
                                        for s, peak in peaks.items()))
    share = float(requested)
    room = usable_bytes(share, card.total_bytes, context)
    short = {s: peak for s, peak in peaks.items() if peak > room}
    if short:
        strategy, peak = max(short.items(), key=lambda item: item[1])
        fits = max(smallest_share(p, card.total_bytes, context) for p in short.values())
        raise StudyInputError(
            f"--gpus-per-trial {share:g} gives a trial {amount(room)} of the {card.name}'s "
            f"{amount(card.total_bytes)} (after {amount(context)} for its CUDA context), but "
            f"{strategy} needs about {amount(peak)} per trial (`python -m study plan` lists each "
            f"strategy's): pass --gpus-per-trial {fits:g}, or auto for a share per strategy")
    return Shares(default=share)
