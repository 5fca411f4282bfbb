"""`python -m study plan <study> --gpus N`: the study's trials as jobs for `study.schedule`
(each cell at its first grid point, as `plan` prices it; with barriers between stages as `study
run` keeps them, and pipelined without them), and the table of their simulated schedules."""
from __future__ import annotations

from collections import defaultdict
from dataclasses import replace

from common.keys import Cell
from study.cost import StageCost
from study.schedule import Job, gate, simulate
from trainables.devices import CARDS, fit_shares
from trainables.strategy import get_strategy

SCHEDULE_STAGES = ("tune", "tune from priors", "final")       # as `study run` runs them


def _selected(cell) -> str:
    return "selected " + "/".join(cell)


def study_jobs(spec, shares, halving=None) -> dict[bool, list]:
    """The study's trials as jobs (`study.schedule`), each cell at its first grid point as `plan`
    prices it, with barriers (True) and pipelined (False). A trial lasts its GPU-hours by the cost
    model at its strategy's share (with `halving`, a tune trial runs the epochs of its rank in its
    cell, the first the longest), and one that replays a prior waits for the whole trial that
    trains it (the prior is ready at the end of its phase: a little pessimistic). A gate per cell
    marks its selection (its tune trials ended), one per stage its end. With barriers, as `study
    run` runs them, each stage waits for the one before; pipelined, a cell's final trials wait
    for its own selection and FT-then-PT's tune trials for their task's full_ft selection."""
    assumed = spec.first_points()
    tune_cost = StageCost()
    points = {strategy: len(spec.points(strategy)) for strategy in spec.strategies}
    stages = zip(SCHEDULE_STAGES, (spec.tune_trials(), spec.tune_trials(assumed),
                                   spec.final_trials(assumed)), (tune_cost, tune_cost, StageCost()))
    jobs, barrier = {True: [], False: []}, ()
    for stage, trials, cost in stages:
        tuned = defaultdict(list)
        ranked = halving.ranked(trials, points) if halving and stage != "final" else \
            [(cfg, 1.0) for cfg in trials]
        for cfg, fraction in ranked:
            cell = Cell(cfg.backbone.tag, cfg.setting, cfg.task, cfg.strategy)
            own, replays = cost.add(cfg, fraction)
            trial = Job(cfg.trial_id, own.gpu_hours, shares.of(cfg.strategy), replays, stage,
                        cell)
            prior = get_strategy(cfg.strategy).prior
            selected = (_selected(cell),) if stage == "final" else (
                (_selected(cell._replace(strategy=prior)),) if prior else ())
            jobs[True].append(replace(trial, after=barrier + replays))
            jobs[False].append(replace(trial, after=selected + replays))
            tuned[cell].append(trial.name)
        gates = [gate(_selected(cell), names, stage, cell) for cell, names in tuned.items()
                 if stage != "final"]
        if trials:
            gates.append(gate(f"{stage} ends", [n for names in tuned.values() for n in names],
                              stage))
            barrier = (f"{stage} ends",)
        for made in jobs.values():
            made += gates
    return jobs


class _Unit:
    """Hours, or seconds for a schedule shorter than an hour (the demo's)."""

    def __init__(self, longest: float):
        self.name, self.scale = ("h", 1.0) if longest >= 1 else ("s", 3600.0)

    def __call__(self, hours: float) -> str:
        value = self.scale * hours
        return "0" if abs(value) < 1e-9 else f"{value:,.1f}" if value >= 10 else f"{value:.3g}"


def _barrier_idle(schedule, unit: _Unit) -> str:
    """GPU time idle in each stage's span, up to the barrier that ends it."""
    ends = [(stage, schedule.run_of(f"{stage} ends").end) for stage in SCHEDULE_STAGES
            if any(run.job.name == f"{stage} ends" for run in schedule.runs)]
    starts = [0.0] + [end for _, end in ends[:-1]]
    return ", ".join(f"{stage} {unit(schedule.idle(start, end))}"
                     for start, (stage, end) in zip(starts, ends))


def _ends_last(spec, schedule, unit: _Unit) -> str:
    """The cell whose last trial ends last: when it was selected and when its final ran."""
    cell = max((run for run in schedule.runs if run.job.cell),
               key=lambda run: run.end).job.cell
    final = [run for run in schedule.runs if run.job.cell == cell and run.job.stage == "final"]
    where = f" ({cell.backbone} @{cell.setting})" if len(spec.backbones) > 1 or \
        len(spec.settings) > 1 else ""
    return (f"{cell.task} {cell.strategy}{where}: selected at "
            f"{unit(schedule.run_of(_selected(cell)).end)} {unit.name}, final "
            f"{unit(min(run.start for run in final))}-{unit(max(run.end for run in final))} "
            f"{unit.name}")


def print_schedules(spec, halving, counts: tuple[int, ...], gpus_per_trial, peaks) -> None:
    """The study's schedule simulated on each number of GPUs (`study.schedule`), with `run`'s
    stage barriers and pipelined, for the grid and, with `halving`, successive halving: a
    markdown table, and what pipelining saves."""
    shares = fit_shares(gpus_per_trial, peaks, CARDS[0])
    tunes = {"grid": None, **({"halving": halving} if halving else {})}
    made = {(count, tune, barriers): simulate(jobs, count)
            for tune, chosen in tunes.items()
            for barriers, jobs in study_jobs(spec, shares, chosen).items() for count in counts}
    unit = _Unit(max(schedule.makespan for schedule in made.values()))
    print(f"schedule, simulated (study.schedule): each trial lasts its GPU-hours above on its "
          f"share of a GPU ({shares.describe()}; k trials of 1/k share one, each as fast as "
          f"alone); of the trials ready, the one with the longest path to the end starts "
          f"first. barriers: as `study run` runs it, each stage (tune; tune from priors: "
          f"FT-then-PT; final) once the one before has ended. pipelined: a cell's final trials once its own tune trials end, FT-then-PT's "
          f"tune trials once their task's full_ft is selected")
    print(f"| GPUs | tune | schedule | makespan {unit.name} | utilisation | idle GPU-{unit.name} "
          f"| idle GPU-{unit.name} per stage, up to its barrier | ends last |\n"
          f"|---:|---|---|---:|---:|---:|---|---|")
    for (count, tune, barriers), schedule in sorted(made.items(), key=lambda item: (
            counts.index(item[0][0]), list(tunes).index(item[0][1]), not item[0][2])):
        print(f"| {count} | {tune} | {'barriers' if barriers else 'pipelined'} | "
              f"{unit(schedule.makespan)} | {schedule.utilisation:.0%} | "
              f"{unit(schedule.idle(0.0, schedule.makespan))} | "
              f"{_barrier_idle(schedule, unit) if barriers else 'no barriers'} | "
              f"{_ends_last(spec, schedule, unit)} |")
    saved = [(count, tune, made[count, tune, True].makespan, made[count, tune, False].makespan)
             for count in counts for tune in tunes]
    print("pipelining saves: " + "; ".join(
        f"{count} GPUs, {tune}: {unit(before - after)} {unit.name} of {unit(before)} "
        f"({(before - after) / before:.0%})" for count, tune, before, after in saved))
