"""The `halving` section of `python -m bench`: the tune stage by successive halving against the
full grid, side by side from one cache, on the demo backbone (pretrained here once, as the demo
does) with grids of 12 points per cell. It reports trial-epochs and wall time, how many cells
select the same (lr, wd), and for the others the val accuracy and the final test accuracy
(over seeds) of both picks; then the same on a grid whose largest FT lrs diverge (the paper's
text's FT grid). The `halving-long` section measures at a schedule like the presets': their grid
sizes (4 x 4 FT points, 10 x 4 SGD points) and 50 epochs after a 4-epoch warm-up, so that three
rungs (5, 15, 45) fit; about 90 minutes on two cores, kept out of the default run."""
from __future__ import annotations

import re
from dataclasses import dataclass, replace
from pathlib import Path
from types import MappingProxyType

import pandas as pd

from bench.measure import DEMO, prepared_cache, run_project


@dataclass(frozen=True)
class HalvingSize:
    tasks: tuple[str, ...] = ("photos", "digits", "count")
    strategies: tuple[str, ...] = ("full_ft", "vpt_deep", "linear")
    epochs: int = 12
    warmup_epochs: int = 2
    seeds: tuple[int, ...] = (42, 44)


QUICK = HalvingSize(tasks=("digits",), epochs=4, warmup_epochs=1, seeds=(42,))
LONG = HalvingSize(epochs=50, warmup_epochs=4)


def spaces():
    """(12-point grids per strategy, the diverging FT grid): the SGD lrs as the paper's text
    gives them for FT (`paper-as-written`)."""
    from search_spaces import PROJECT_LENGTHS, PAPER_AS_WRITTEN, Grid, SearchSpace, prompt_lengths
    twelve = SearchSpace("bench_halving", MappingProxyType({
        "full": Grid("bench_full", "adamw", (0.008, 0.004, 0.002, 0.001, 0.0005, 0.00025),
                     (0.0, 0.05)),
        "prompt": Grid("bench_prompt", "sgd", (10.0, 5.0, 2.5, 1.0, 0.5, 0.25), (0.0, 0.001)),
    }), prompt_lengths(PROJECT_LENGTHS))
    written = PAPER_AS_WRITTEN.grid_for("full")
    diverging = SearchSpace("bench_diverging", MappingProxyType({
        "full": replace(written, weight_decays=(0.01, 0.0), batch_size=None, warmup_epochs=None),
    }), prompt_lengths(PROJECT_LENGTHS))
    return twelve, diverging


def preset_sized():
    """Grids of the presets' sizes (`paper`: 16 FT points, 40 SGD points) with lrs that suit
    the demo ViT: the demo grid's widened, and the presets' four weight decays."""
    from search_spaces import PROJECT_LENGTHS, Grid, SearchSpace, prompt_lengths
    decays = (0.01, 0.001, 0.0001, 0.0)
    return SearchSpace("bench_halving_long", MappingProxyType({
        "full": Grid("bench_long_full", "adamw", (0.008, 0.004, 0.002, 0.001), decays),
        "prompt": Grid("bench_long_prompt", "sgd", (20.0, 10.0, 5.0, 2.5, 1.0, 0.5, 0.25, 0.1,
                                                     0.05, 0.025), decays),
    }), prompt_lengths(PROJECT_LENGTHS))


def trial_epochs(tracker) -> int:
    """Epochs the tune runs of a store trained (stopped and diverged trials included)."""
    total = 0
    for run in tracker.runs("tune"):
        history = tracker.client.get_metric_history(run.info.run_id, "train_loss")
        total += max((m.step for m in history), default=0)
    return total


def picks(tracker, study: str) -> pd.DataFrame:
    from results.runs import load_runs
    from results.selection import CELL, select_best
    return select_best(load_runs(study, tracker.uri, "tune")).set_index(CELL)


def halved_against_grid(spec, cache: str, work: Path, label: str, halvings, figures) -> None:
    """Run the spec's tune grid in full, then by each halving; report cost and agreement."""
    configs = spec.tune_trials(cache_dir=cache)
    points = "-".join(str(n) for n in sorted({sum(c.strategy == s for c in configs) //
                                              len(spec.tasks) for s in spec.strategies}))
    print(f"[halving] {label}: {len(configs)} tune trials, the full grid", flush=True)
    slug = re.sub(r"[^a-z0-9]+", "-", label.lower())            # a file name
    full, full_wall, _ = run_project(configs, spec.name, "tune", work, f"{slug}-grid")
    full_epochs, grid_pick = trial_epochs(full), picks(full, spec.name)
    recipe = spec.recipe("full", 0, 0)
    for halving in halvings:
        described = halving.describe(recipe)
        print(f"[halving] {label}: the same trials, {described}", flush=True)
        store = f"{slug}-grace{halving.grace(recipe)}"           # one MLflow store per run
        halved, wall, _ = run_project(configs, spec.name, "tune", work, store, halving=halving)
        epochs = trial_epochs(halved)
        stopped = sum(r.data.tags.get("outcome") == "stopped" for r in halved.runs("tune"))
        figures.add(f"halving vs full grid, {label} ({len(spec.tasks)} tasks x "
                    f"{len(spec.strategies)} strategies x {points} points, {described}): "
                    f"{full_epochs / max(epochs, 1):.2f}x fewer trial-epochs ({full_epochs} vs "
                    f"{epochs}; {stopped} of {len(configs)} trials stopped), wall time "
                    f"{full_wall / wall:.2f}x ({full_wall:.0f} s vs {wall:.0f} s)")
        agreement(spec, cache, work, store, grid_pick, picks(halved, spec.name), figures)


def agreement(spec, cache: str, work: Path, label: str, grid_pick, halving_pick,
              figures) -> None:
    """Cells whose pick is the same; for the others, val and final test accuracy of both."""
    from common.keys import Cell
    from results.runs import counted, load_runs
    same = [cell for cell in grid_pick.index if cell in halving_pick.index and
            tuple(grid_pick.loc[cell, ["base_lr", "weight_decay"]]) ==
            tuple(halving_pick.loc[cell, ["base_lr", "weight_decay"]])]
    differ = [cell for cell in grid_pick.index if cell not in same]
    figures.add(f"  same (lr, wd) selected in {len(same)} of {len(grid_pick)} cells")
    missing = [cell for cell in differ if cell not in halving_pick.index]
    for cell in missing:
        figures.add(f"  {cell[2]} {cell[3]}: halving left no trial that ran its schedule")
    differ = [cell for cell in differ if cell not in missing]
    if not differ:
        return
    selections = [{Cell(*cell): tuple(pick.loc[cell, ["base_lr", "weight_decay"]])
                   for cell in differ} for pick in (grid_pick, halving_pick)]
    finals = [c for selection in selections
              for c in spec.final_trials(selection, cache_dir=cache)]
    tracker, _, _ = run_project(finals, spec.name, "final", work, f"{label}-final")
    runs = counted(load_runs(spec.name, tracker.uri, "final"))

    def test_accs(pick, cell):
        lr, wd = pick.loc[cell, ["base_lr", "weight_decay"]]
        return runs[(runs["task"] == cell[2]) & (runs["strategy"] == cell[3]) &
                    (runs["base_lr"] == lr) & (runs["weight_decay"] == wd)]["final_test_acc"]

    for cell in differ:
        grid_acc, halving_acc = test_accs(grid_pick, cell), test_accs(halving_pick, cell)
        val = halving_pick.loc[cell, "final_val_acc"] - grid_pick.loc[cell, "final_val_acc"]
        spread = f"{grid_acc.std(ddof=1):.1f}" if len(grid_acc) > 1 else "n/a: one seed"
        figures.add(f"  {cell[2]} {cell[3]}: halving picks lr "
                    f"{halving_pick.loc[cell, 'base_lr']:g} wd "
                    f"{halving_pick.loc[cell, 'weight_decay']:g}, the grid lr "
                    f"{grid_pick.loc[cell, 'base_lr']:g} wd "
                    f"{grid_pick.loc[cell, 'weight_decay']:g}: val {val:+.1f} points, final test "
                    f"{halving_acc.mean() - grid_acc.mean():+.1f} points (the grid pick's seeds' "
                    f"std {spread})")


def demo_spec(size: HalvingSize, space, work: Path, pretrained: bool):
    """The demo study at `size` on `space`, and its cache; `pretrained`: on the demo's
    pretrained ViT (pretrained here once), so that the picks mean something."""
    from study.spec import get_study
    from study.tracking import StudyTracker
    from study.upstream import ensure_backbones
    cache = prepared_cache(work, size.tasks)
    spec = replace(get_study("demo"), name="bench-halving", tasks=size.tasks,
                   strategies=size.strategies, search_space=space, epochs=size.epochs,
                   warmup_epochs=size.warmup_epochs, seeds=size.seeds)
    if not pretrained:                         # every code path; the picks mean nothing
        return replace(spec, backbones=(DEMO,)), cache
    ensure_backbones(spec, cache, StudyTracker(
        "bench-halving-pretrain", f"sqlite:///{work / 'pretrain.db'}"))
    return spec, cache


def measure(quick: bool, work: Path, figures) -> None:
    from study.halving import Halving
    twelve, diverging = spaces()
    spec, cache = demo_spec(QUICK if quick else HalvingSize(), twelve, work, not quick)
    halved_against_grid(spec, cache, work, "demo", (Halving(), Halving(grace_epochs=1)),
                        figures)
    halved_against_grid(replace(spec, name="bench-halving-diverging", strategies=("full_ft",),
                                search_space=diverging),
                        cache, work, "diverging FT grid", (Halving(),), figures)


def measure_long(quick: bool, work: Path, figures) -> None:
    """Halving's default (reduction 3, grace after the warm-up) at the presets' grid sizes and
    a 50-epoch schedule."""
    from study.halving import Halving
    size = QUICK if quick else LONG
    spec, cache = demo_spec(size, preset_sized(), work, not quick)
    halved_against_grid(replace(spec, name="bench-halving-long"), cache, work,
                        f"presets' grid sizes, {size.epochs} epochs", (Halving(),), figures)
