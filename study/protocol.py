"""The paper's protocol as one function: prepare what the study needs, stage `tune` (the lr x wd
grid, one seed, train800 -> val200), selection from the MLflow runs (results.selection), stage
`final` (selected hyperparameters, every seed, train800val200 -> test), the table, and the
study's summary run in MLflow (`study.summary`). Strategies that start from a prior (FT-then-PT)
are tuned after the others, from their prior's selected recipe. Each stage runs only the trials
that MLflow does not already hold as FINISHED, so rerunning the same command after an
interruption continues where it stopped. The runner (Ray Tune) is passed in."""
from __future__ import annotations

import time
from typing import Callable, Protocol

from common.errors import StudyInputError
from common.keys import Cell
from results.runs import counted, load_runs
from results.selection import select_best
from results.table import PaperTables, paper_tables
from study import card
from study.lease import DriverLease
from study.spec import Selection, StudySpec
from study.summary import write_summary
from study.tracking import StudyTracker
from study.upstream import ensure_backbones, weights_cards
from tasks import TaskNotPrepared, get_task
from tasks.cache import verify
from tasks.prepare import TasksNotPrepared, prepare
from tasks.splits import check_sweep, setting_splits, supports
from tasks.views import model_sizes
from trainables.backbones import spec_input_size
from trainables.config import Execution, TrialConfig
from trainables.priors import discard_final_priors
from trainables.strategy import get_strategy


class Runner(Protocol):
    def __call__(self, configs: list[TrialConfig], stage: str) -> float: ...


def prepare_tasks(spec: StudySpec, cache_dir: str, log: Callable[[str], None]) -> None:
    """Generate what can be generated, then check every split the study reads: its checksums,
    that a sweep's split holds what the task now reads, and that its images are the size each
    backbone takes. The tasks not prepared are named together, with the command that prepares
    them."""
    sizes = {backbone.tag: spec_input_size(backbone) for backbone in spec.backbones}
    missing = []
    for slug in spec.tasks:
        task = get_task(slug)
        if task.source.startswith("demo:") and prepare(task, cache_dir):
            log(f"data: generated demo task '{slug}' into {cache_dir}")
        try:
            for setting in spec.settings:
                if supports(task, setting):
                    _check_setting(cache_dir, task, setting, sizes)
        except TaskNotPrepared:
            missing.append(slug)
    if missing:
        sweep = sorted(int(s) for s in spec.settings if s.isdigit() and s != "800")
        raise TasksNotPrepared(missing, cache_dir, (f" --sweep {','.join(map(str, sweep))}"
                                                    if sweep else "") +
                               (" --one-shot" if "1shot" in spec.settings else ""))


def _check_setting(cache_dir: str, task, setting: str, sizes: dict[str, int]) -> None:
    """One setting's splits of a prepared task: checksums, the sweep's contents, image sizes."""
    splits = [split for pair in setting_splits(setting, task) for split in pair]
    verify(cache_dir, task.slug, splits)
    if setting.isdigit():
        check_sweep(cache_dir, task, int(setting))
    cached = model_sizes(cache_dir, task.slug, splits)
    for tag, size in sizes.items():
        if cached != {size}:
            raise StudyInputError(
                f"task '{task.slug}' is cached at {'/'.join(map(str, sorted(cached)))} px "
                f"but backbone {tag} takes {size} px: prepare it again with `python -m "
                f"tasks prepare {task.slug} --image-size {size} --force`")


def run_stage(stage: str, configs: list[TrialConfig], tracker: StudyTracker, runner: Runner,
              log: Callable[[str], None], label: str = "") -> None:
    done = tracker.finished_trial_ids(stage)
    todo = [c for c in configs if c.trial_id not in done]
    log(f"[{stage}{label}] {len(configs)} trials: {len(configs) - len(todo)} already finished, "
        f"{len(todo)} to run")
    if todo:
        tracker.open_stage(stage)
        status = "KILLED"
        try:
            runner(todo, stage)
            status = "FINISHED"                 # how each trial ended, its own run says
        finally:
            tracker.close_stage(stage, status)


def stage_runs(spec: StudySpec, tracker: StudyTracker, stage: str, configs: list[TrialConfig]):
    """The MLflow runs of these trials."""
    runs = load_runs(spec.name, tracker.uri, stage)
    return runs[runs["trial_id"].isin({c.trial_id for c in configs})]


def execution_note(stage: str, runs) -> str | None:
    """One line when a stage's finished runs ran on more than one kind of device or precision,
    as a study resumed on another machine or with another --precision does: their numbers are
    not bit-comparable, and the table mixes them."""
    done = counted(runs)
    if done.empty:
        return None
    kinds = (done["device"].fillna("?").str.split(":").str[0] + "/"
             + done["precision"].fillna("?")).value_counts()
    if len(kinds) < 2:
        return None
    ran = ", ".join(f"{kind} ({n})" for kind, n in kinds.items())
    return (f"[{stage}] note: its runs ran on {ran}; a study resumed on another device or "
            f"precision mixes them (each run's `device` and `precision` params say which)")


def cell_of(row) -> Cell:
    return Cell(*(getattr(row, column) for column in Cell._fields))


def prior_sources(runs, producers: dict[tuple[Cell, int], str]) -> dict[str, str]:
    """Each run that replayed its prior -> the run that kept it (`trainables.priors`): in
    `producers`, by (the cell of its prior strategy, seed)."""
    sources = {}
    for row in counted(runs).itertuples():
        key = (cell_of(row)._replace(strategy=get_strategy(row.strategy).prior), row.seed)
        if row.prior == "replayed" and key in producers:
            sources[row.run_id] = producers[key]
    return sources


def selection(spec: StudySpec, best, trials: list[TrialConfig]) -> Selection:
    """`select_best`'s rows as cell -> the point of the trial that won."""
    points = {cfg.trial_id: spec.point_of(cfg) for cfg in trials}
    return {cell_of(row): points[row.trial_id] for row in best.itertuples()}


def run_study(spec: StudySpec, runner: Runner, tracker: StudyTracker, cache_dir: str,
              execution: Execution = Execution(), log: Callable[[str], None] = print,
              command: str = "") -> PaperTables:
    """Tune the strategies trained from the pretrained backbone, select; tune those that start
    from a selected prior (FT-then-PT from the task's FT recipe), select; then the final stage.
    The driver holds the study's lease throughout (`study.lease`): one driver per study."""
    with DriverLease(tracker.uri, tracker.experiment_id, spec.name, command, log=log):
        return _run_study(spec, runner, tracker, cache_dir, execution, log, command)


def _run_study(spec: StudySpec, runner: Runner, tracker: StudyTracker, cache_dir: str,
               execution: Execution, log: Callable[[str], None], command: str) -> PaperTables:
    started = time.perf_counter()
    closed = tracker.close_interrupted()
    if closed:
        log(f"mlflow: closed {closed} run(s) left RUNNING by an interrupted driver as KILLED")
    prepare_tasks(spec, cache_dir, log)
    ensure_backbones(spec, cache_dir, tracker, log)
    about = f": {spec.description}" if spec.description not in ("", spec.name) else ""
    heading = f"**{spec.name}**{about}" + (f", run by `{command}`" if command else "") + "\n\n"
    tracker.log_card({"protocol_card.md": card.render(spec), "protocol_card.csv":
                      card.render(spec, "csv"), **weights_cards(spec, cache_dir)}, heading)

    where = {"cache_dir": cache_dir, "execution": execution}
    tune = spec.tune_trials(**where)
    run_stage("tune", tune, tracker, runner, log)
    tune_runs = stage_runs(spec, tracker, "tune", tune)
    best = select_best(tune_runs)
    after_prior = spec.tune_trials(selection(spec, best, tune), **where)
    if after_prior:
        run_stage("tune", after_prior, tracker, runner, log, label=" from selected priors")
        kept = {(cell_of(row), spec.tune_seed): row.run_id for row in best.itertuples()} \
            if spec.keeps_tune_priors() else {}          # the selected runs kept themselves
        tune += after_prior
        tune_runs = stage_runs(spec, tracker, "tune", tune)
        tracker.mark(tune_runs, "prior_from", prior_sources(tune_runs, kept))
        best = select_best(tune_runs)
    if note := execution_note("tune", tune_runs):
        log(note)
    selected = selection(spec, best, tune)
    tracker.mark(tune_runs, "selected", {run_id: "true" for run_id in best["run_id"]})
    missing = set(spec.cells()) - set(selected)
    if missing:
        log(f"[select] no usable tune run (all failed or diverged, or no selected prior) for: "
            f"{', '.join('/'.join(cell) for cell in sorted(missing))}")
    for row in best.itertuples():
        log(f"[select] {row.backbone} @{row.setting} {row.task:>20} {row.strategy:<12} "
            f"{selected[cell_of(row)].label()} val={row.final_val_acc:.1f}%")

    final = spec.final_trials(selected, **where)
    run_stage("final", final, tracker, runner, log)
    discard_final_priors(cache_dir, spec.name)
    final_runs = stage_runs(spec, tracker, "final", final)
    if note := execution_note("final", final_runs):
        log(note)
    chosen = {cell_of(row): row.run_id for row in best.itertuples()}
    tracker.mark(final_runs, "selected_from", {row.run_id: chosen[cell_of(row)] for row in
                                               final_runs.itertuples() if cell_of(row) in chosen})
    tracker.mark(final_runs, "prior_from", prior_sources(final_runs, {
        (cell_of(row), row.seed): row.run_id for row in counted(final_runs).itertuples()}))
    log(f"study '{spec.name}' done in {time.perf_counter() - started:.0f} s")
    tables = paper_tables(final_runs, spec.strategies, spec.tasks, tune_runs=tune_runs)
    write_summary(tracker.client, tracker.experiment_id, spec.name,
                  load_runs(spec.name, tracker.uri), tables)
    return tables
