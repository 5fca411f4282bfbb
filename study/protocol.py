"""The paper's protocol as one function: prepare what the study needs, stage `tune` (the lr x wd
grid, one seed, train800 -> val200), selection from the MLflow runs (analysis.selection), stage
`final` (selected hyperparameters, every seed, train800val200 -> test) and the table. Each stage
runs only the trials that MLflow does not already hold as FINISHED, so rerunning the same command
after an interruption continues where it stopped. The runner (Ray Tune) is passed in."""
from __future__ import annotations

import time
from typing import Callable, Protocol

from analysis.runs import load_runs
from analysis.selection import CELL, select_best
from analysis.table import PaperTables, paper_tables
from study.spec import StudySpec
from study.tracking import StudyTracker
from study.upstream import ensure_backbones
from tasks import get_task
from tasks.cache import verify
from tasks.splits import setting_splits, supports
from tasks.prepare import prepare
from trainables.config import Execution, TrialConfig


class Runner(Protocol):
    def __call__(self, configs: list[TrialConfig], stage: str) -> float: ...


def prepare_tasks(spec: StudySpec, cache_dir: str, log: Callable[[str], None]) -> None:
    """Generate what can be generated, then verify every split the study reads (checksums)."""
    for slug in spec.tasks:
        task = get_task(slug)
        if task.source.startswith("demo:") and prepare(task, cache_dir):
            log(f"data: generated demo task '{slug}' into {cache_dir}")
        for setting in spec.settings:
            if supports(task, setting):
                verify(cache_dir, slug, [split for pair in setting_splits(setting)
                                         for split in pair])


def run_stage(stage: str, configs: list[TrialConfig], tracker: StudyTracker, runner: Runner,
              log: Callable[[str], None]) -> None:
    done = tracker.finished_trial_ids(stage)
    todo = [c for c in configs if c.trial_id not in done]
    log(f"[{stage}] {len(configs)} trials: {len(configs) - len(todo)} already finished, "
        f"{len(todo)} to run")
    if todo:
        runner(todo, stage)


def run_study(spec: StudySpec, runner: Runner, tracker: StudyTracker, cache_dir: str,
              execution: Execution = Execution(),
              log: Callable[[str], None] = print) -> PaperTables:
    started = time.perf_counter()
    closed = tracker.close_interrupted()
    if closed:
        log(f"mlflow: closed {closed} run(s) left RUNNING by an interrupted driver as KILLED")
    prepare_tasks(spec, cache_dir, log)
    ensure_backbones(spec, cache_dir, tracker, log)

    tune = spec.tune_trials(cache_dir=cache_dir, execution=execution)
    run_stage("tune", tune, tracker, runner, log)
    ids = {c.trial_id for c in tune}
    tune_runs = load_runs(spec.name, tracker.uri, "tune")
    tune_runs = tune_runs[tune_runs["trial_id"].isin(ids)]
    selected = select_best(tune_runs)
    cells = {(b.tag, setting, t, s) for b, setting, t, s in spec.cells()}
    missing = cells - set(selected[list(CELL)].itertuples(index=False, name=None))
    if missing:
        log(f"[select] no usable tune run (all failed or diverged) for: "
            f"{', '.join('/'.join(cell) for cell in sorted(missing))}")
    for row in selected.itertuples():
        log(f"[select] {row.backbone} @{row.setting} {row.task:>20} {row.strategy:<12} "
            f"base_lr={row.base_lr:g} wd={row.weight_decay:g} val={row.final_val_acc:.1f}%")

    final = spec.final_trials(selected, cache_dir=cache_dir, execution=execution)
    run_stage("final", final, tracker, runner, log)
    final_ids = {c.trial_id for c in final}
    final_runs = load_runs(spec.name, tracker.uri, "final")
    final_runs = final_runs[final_runs["trial_id"].isin(final_ids)]
    log(f"study '{spec.name}' done in {time.perf_counter() - started:.0f} s")
    return paper_tables(final_runs, spec.strategies, spec.tasks, tune_runs=tune_runs)
