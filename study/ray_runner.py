"""The one module that imports ray. It turns a list of `TrialConfig`s into a Ray Tune grid (a
function trainable calling `trainables.trial.run_trial`, or another function of the same
signature, with `tune.report`), with per-trial resources from the command line (each
strategy's share of a GPU, settled before the first stage by `fit_resources`: a probe task placed
as a trial is finds the card, and a request no node meets or a GPU torch cannot use is refused in
one line; workers granted no GPU see none), `reuse_actors=True`, a local Ray by default or a
cluster by address, and Tune callbacks: one hands every report to the study's MLflow tracker
(timing what that costs the driver) and tells the progress lines (trials done / total, elapsed,
and an ETA from the mean trial time and how many trials run at once) how each trial ended; one
halts the stage when a trial fails because a disk is full (the trials still running end KILLED,
with one line: every later trial would fail the same way). After each trial the worker hands back
the memory it freed (`common.memory`). With
`halving`, the tune stage runs ASHA within each cell (`CellHalving`); a trial it stops is a
FINISHED run tagged outcome=stopped."""
from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import socket
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Mapping

import ray
from ray import tune
from ray.tune.execution.placement_groups import resource_dict_to_pg_factory
from ray.tune.schedulers import AsyncHyperBandScheduler, FIFOScheduler, TrialScheduler

from common.errors import StudyInputError, say
from common.files import disk_full
from common.keys import SUMMARY, Cell
from common.memory import release
from study.halving import Halving
from trainables.config import TrialConfig
from trainables.devices import AUTO, MOST_TRIALS_PER_GPU, Card, Shares, amount, fit_shares, \
    share_of
from trainables.faults import ENV as FAULTS_ENV
from trainables.loop import MetricsSink
from trainables.trial import run_trial

if TYPE_CHECKING:          # workers import this module for `_trainable`: no MLflow there
    from study.tracking import StudyTracker

TrialFunction = Callable[[TrialConfig, MetricsSink], dict]

# How Tune runs the study's trials, set around each fit (a value already in the environment wins):
# the study's own progress lines instead of Ray's, and no per-trial CSV/JSON/TensorBoard files
# (MLflow is the record). Tune's result grid then warns once per trial that it found no such file;
# the study never reads that grid.
TUNE_ENVIRONMENT = {"RAY_AIR_NEW_OUTPUT": "0", "TUNE_DISABLE_AUTO_CALLBACK_LOGGERS": "1"}
logging.getLogger("ray.tune.analysis.experiment_analysis").setLevel(logging.ERROR)
AUTH_NOTICES = "ray._private.authentication.authentication_token_setup"
# Ray (since ray-project/ray#54868) leaves CUDA_VISIBLE_DEVICES alone in a worker granted no GPU,
# so a CPU trial would see every GPU of its node; with this it sees none (CUDA_VISIBLE_DEVICES="")
HIDE_UNGRANTED_GPUS = {"RAY_ACCEL_ENV_VAR_OVERRIDE_ON_ZERO": "1"}
GPU_NODE_WAIT_SECONDS = 1200.0   # an autoscaling cluster's time to start a GPU node (boot, setup)
PROBE_SECONDS = 120.0            # a node that has the resources: a worker's start and torch import


@contextlib.contextmanager
def tune_environment():
    added = {k: v for k, v in TUNE_ENVIRONMENT.items() if k not in os.environ}
    os.environ.update(added)
    try:
        yield
    finally:
        for key in added:
            os.environ.pop(key, None)


def _trainable(config: dict, trial: TrialFunction) -> None:
    node = ray.get_runtime_context().get_node_id()

    def report(metrics: dict) -> None:        # the summary says which node ran the trial
        tune.report({**metrics, "node": node} if SUMMARY in metrics else metrics)
    try:
        trial(TrialConfig.from_dict(config["trial"]), report)
    finally:
        release()


def worker_env(given: Mapping[str, str]) -> dict[str, str]:
    """The environment every worker gets: GPUs hidden from a worker granted none, and the fault
    injection spec when set (`trainables.faults`); none that the job's runtime env already sets
    (a driver started by `ray job submit` shares its job's env_vars with the workers, and Ray
    refuses to set one twice)."""
    env = dict(HIDE_UNGRANTED_GPUS)
    if os.environ.get(FAULTS_ENV):
        env[FAULTS_ENV] = os.environ[FAULTS_ENV]
    return {key: value for key, value in env.items() if key not in given}


def _probe() -> dict:
    """What a trial granted a GPU share sees: whether torch can use CUDA, and the card."""
    import warnings

    import torch
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        usable = torch.cuda.is_available()
    node = ray.util.get_node_ip_address()
    if not usable:
        visible = os.environ.get("CUDA_VISIBLE_DEVICES")
        why = next((str(w.message).strip().splitlines()[0] for w in caught),
                   f"torch {torch.__version__} sees no CUDA device (CUDA_VISIBLE_DEVICES="
                   f"{visible!r})")
        return {"node": node, "why": why}
    card = torch.cuda.get_device_properties(0)
    return {"node": node, "name": card.name, "total": card.total_memory}


def _autoscaler_report() -> dict | None:
    """The autoscaler's last summary (node types active, launching, failed); None where nothing
    can add nodes: a local Ray or a cluster started by hand, whose summary comes from Ray's
    read-only provider, each node a type of its own."""
    from ray.autoscaler._private.util import format_readonly_node_type
    from ray.experimental.internal_kv import _internal_kv_get
    raw = _internal_kv_get("__autoscaling_status")
    report = json.loads(raw).get("autoscaler_report") if raw else None
    fixed = {format_readonly_node_type(node["NodeID"]) for node in ray.nodes()}
    if not report or (set(report.get("active_nodes", {})) <= fixed
                      and not report.get("pending_launches")):
        return None
    return report


def cluster_text() -> str:
    """The cluster's nodes and, on an autoscaling cluster, its node types, on one line."""
    nodes = [node for node in ray.nodes() if node.get("Alive")]
    text = "; ".join(f"{node['NodeManagerAddress']} with {node['Resources'].get('CPU', 0):g} "
                     f"CPUs and {node['Resources'].get('GPU', 0):g} GPUs" for node in nodes)
    report = _autoscaler_report()
    if report:
        kinds = {"active": report.get("active_nodes", {}),
                 "launching": report.get("pending_launches", {}),
                 "failed": Counter(kind for _, kind in report.get("failed_nodes", []))}
        text += "; autoscaler node types: " + (", ".join(
            f"{state} {kind} x{count}" for state, counts in kinds.items()
            for kind, count in counts.items() if count) or "none active")
    return f"the cluster has {len(nodes)} node(s): {text}"


def _error_text(trial) -> str:
    path = getattr(trial, "error_file", None)
    if path and os.path.exists(path):
        return Path(path).read_text()
    return "the trial raised an error (no error file)"


def remaining_seconds(trial_seconds: float, done: int, left: int, slots: int) -> float:
    """A stage's time left: the mean wall time of its `done` trials, once for each round of
    `slots` trials at a time (the most seen running together) that the `left` trials need."""
    return trial_seconds / done * math.ceil(left / max(1, slots))


def _clock(seconds: float) -> str:
    seconds = int(seconds)
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


class _HaltOnFullDisk(tune.Callback):
    """Watches trials' errors; once one failed for want of disk space (`reason` says where),
    its `stopper` stops every trial: every later trial would fail the same way."""

    def __init__(self):
        self.reason = ""
        self.stopper = _StopAll(self)

    def on_trial_error(self, iteration, trials, trial, **info):
        error = _error_text(trial)
        if disk_full(error) and not self.reason:
            self.reason = next(line for line in reversed(error.splitlines())
                               if disk_full(line)).strip()


class _StopAll(tune.Stopper):
    def __init__(self, halt: _HaltOnFullDisk):
        self.halt = halt

    def __call__(self, trial_id: str, result: dict) -> bool:
        return False

    def stop_all(self) -> bool:
        return bool(self.halt.reason)


class _ShowProgress:
    """Prints a line as each trial ends: trials done / total, elapsed, an ETA from the mean
    trial time and how many trials run at once (`remaining_seconds`), and what ended."""

    def __init__(self, stage: str, total: int, log=say):
        self.stage, self.total, self.log = stage, total, log
        self.done = self.failed = 0
        self.started = time.perf_counter()
        self.began: dict[str, float] = {}      # trial id -> when its current attempt started
        self.trial_seconds = 0.0               # wall time of the trials ended so far
        self.slots = 1                         # the most trials seen running at once

    def started_trial(self, trial) -> None:
        self.began[trial.trial_id] = time.perf_counter()
        self.slots = max(self.slots, len(self.began))

    def retried(self, trial) -> None:
        self.began.pop(trial.trial_id, None)
        self.log(f"[{self.stage}] retrying {trial.config['trial']['task']} "
                 f"{trial.config['trial']['strategy']} after a failure")

    def ended(self, trial, status: str, shown: str = "") -> None:
        self.done += 1
        self.failed += status != "FINISHED"
        now = time.perf_counter()
        self.trial_seconds += now - self.began.pop(trial.trial_id, now)
        eta = remaining_seconds(self.trial_seconds, self.done, self.total - self.done, self.slots)
        cfg = trial.config["trial"]
        self.log(f"[{self.stage}] {self.done}/{self.total} trials"
                 f"{f' ({self.failed} failed)' if self.failed else ''} | elapsed "
                 f"{_clock(now - self.started)} | ETA {_clock(eta)} | {shown or status.lower()}: "
                 f"{cfg['task']} {cfg['strategy']} lr={cfg['recipe']['base_lr']:g} "
                 f"seed={cfg['seed']}")


class _RecordRuns(tune.Callback):
    """Hands every report to the study's MLflow tracker (one run per trial attempt, timing what
    that costs the driver), decides how each trial ended (finished, stopped by halving, killed
    with a stage that a full disk halted, failed) and tells `progress`."""

    def __init__(self, tracker: StudyTracker, halt: _HaltOnFullDisk, progress: _ShowProgress):
        self.tracker, self.halt, self.progress = tracker, halt, progress
        self.run_ids: dict[str, str] = {}
        self.tracking_seconds = 0.0           # driver time spent writing to MLflow

    def _tracked(self, write, *args, **kwargs):
        """Call the tracker, adding its time to the driver's MLflow seconds."""
        began = time.perf_counter()
        try:
            return write(*args, **kwargs)
        finally:
            self.tracking_seconds += time.perf_counter() - began

    def _run(self, trial) -> str:
        """The MLflow run of the trial's current attempt, created when the attempt starts."""
        if trial.trial_id not in self.run_ids:
            cfg = TrialConfig.from_dict(trial.config["trial"])
            self.run_ids[trial.trial_id] = self._tracked(self.tracker.start, cfg,
                                                         ray_trial_id=trial.trial_id)
        return self.run_ids[trial.trial_id]

    def on_trial_start(self, iteration, trials, trial, **info):
        self._run(trial)
        self.progress.started_trial(trial)

    def on_trial_result(self, iteration, trials, trial, result, **info):
        self._tracked(self.tracker.record, self._run(trial), result)

    def on_trial_recover(self, iteration, trials, trial, **info):
        """A failed attempt that Ray will retry: its run ends FAILED; the retry gets a new run."""
        run_id = self.run_ids.pop(trial.trial_id, None)
        if run_id:
            self.tracker.finish(run_id, "FAILED", _error_text(trial) + "\n(retried)")
        self.progress.retried(trial)

    def _ended(self, trial, status: str, error: str | None = None, shown: str = ""):
        self._tracked(self.tracker.finish, self._run(trial), status, error)
        self.run_ids.pop(trial.trial_id, None)
        self.progress.ended(trial, status, shown)

    def on_trial_complete(self, iteration, trials, trial, **info):
        last = trial.last_result or {}
        if SUMMARY in last:
            self._ended(trial, "FINISHED")
            return
        if self.halt.reason:                   # stopped with the stage, not by halving
            self._ended(trial, "KILLED", shown="stopped: a disk is full")
            return
        # ended by successive halving before its schedule's end: FINISHED, outcome=stopped
        epoch = int(last.get("epoch", 0))
        self._tracked(self.tracker.stopped, self._run(trial), epoch)
        self._ended(trial, "FINISHED", shown=f"stopped at epoch {epoch}")

    def on_trial_error(self, iteration, trials, trial, **info):
        self._ended(trial, "FAILED", _error_text(trial))

    def close_open_runs(self):
        for run_id in self.run_ids.values():
            self.tracker.finish(run_id, "KILLED")
        self.run_ids.clear()


class CellHalving(FIFOScheduler):
    """Ray Tune's ASHA within each cell (`study.halving`): one AsyncHyperBandScheduler per
    (backbone, setting, task, strategy), judging val accuracy at the epochs of the strategy's
    own phase (counted after a prior phase's, whose results all of a cell's trials share), and
    never at the last epoch."""

    def __init__(self, halving: Halving):
        super().__init__()
        self.halving = halving
        self.cells: dict[Cell, AsyncHyperBandScheduler] = {}
        self.trials: dict[str, tuple[AsyncHyperBandScheduler, int, int]] = {}

    def on_trial_add(self, tune_controller, trial) -> None:
        cfg = TrialConfig.from_dict(trial.config["trial"])
        recipe = cfg.recipe
        cell = Cell(cfg.backbone.tag, cfg.setting, cfg.task, cfg.strategy)
        if cell not in self.cells:
            self.cells[cell] = AsyncHyperBandScheduler(
                time_attr="epoch", metric="val_acc", mode="max", max_t=recipe.epochs - 0.5,
                grace_period=self.halving.grace(recipe),
                reduction_factor=self.halving.reduction, stop_last_trials=False)
        asha = self.cells[cell]
        asha.on_trial_add(tune_controller, trial)
        prior_epochs = cfg.prior_recipe.epochs if cfg.prior_recipe else 0
        self.trials[trial.trial_id] = (asha, prior_epochs, recipe.epochs)

    def on_trial_result(self, tune_controller, trial, result: dict) -> str:
        asha, prior_epochs, epochs = self.trials[trial.trial_id]
        if "epoch" not in result or "val_acc" not in result:
            return TrialScheduler.CONTINUE
        own = result["epoch"] - prior_epochs
        if own < 1 or own >= epochs:
            return TrialScheduler.CONTINUE
        return asha.on_trial_result(tune_controller, trial, {**result, "epoch": own})


@dataclass(frozen=True)
class RayRunner:
    tracker: StudyTracker
    cpus_per_trial: float = 1.0
    gpus_per_trial: float | str | None = 0.0    # a share, "auto" (one per strategy), None: auto
                                                # when the cluster has GPUs, else 0
    address: str | None = None
    storage_path: str = "ray_results"
    max_failures: int = 0
    trial: TrialFunction = run_trial
    halving: Halving | None = None          # successive halving in the tune stage
    shares: Shares | None = None            # each trial's GPU share, once `fit_resources` ran
    gpu_wait: float = GPU_NODE_WAIT_SECONDS  # autoscaling: the seconds a GPU node may take

    def preflight(self) -> None:
        """Refuse, before any trial starts, a storage path that cannot be written and a Ray
        address that does not answer."""
        if "://" not in self.storage_path:
            folder = Path(self.storage_path).resolve()
            try:
                folder.mkdir(parents=True, exist_ok=True)
                with tempfile.NamedTemporaryFile(dir=folder):
                    pass
            except OSError as error:
                raise StudyInputError(f"storage path {folder} cannot be written: "
                                      f"{error.strerror or error}") from None
        host, _, port = (self.address or "").rpartition(":")
        if host and port.isdigit() and "://" not in self.address:
            try:
                socket.create_connection((host, int(port)), timeout=5).close()
            except OSError as error:
                raise StudyInputError(f"Ray address {self.address} does not answer: "
                                      f"{error.strerror or error}") from None

    def start(self) -> None:
        if ray.is_initialized():
            return
        # workers import the project as installed (`pip install -e .` on every node)
        job = json.loads(os.environ.get("RAY_JOB_CONFIG_JSON_ENV_VAR", "{}"))
        env = worker_env(job.get("runtime_env", {}).get("env_vars", {}))
        runtime_env = {"env_vars": env} if env else None
        try:
            if self.address:
                ray.init(address=self.address, log_to_driver=False, runtime_env=runtime_env)
            else:
                # a Ray of its own ("local"): without an address, ray.init would join a Ray
                # already started on this machine (`ray start`, RAY_ADDRESS) and run the study's
                # trials there. It keeps Ray's default, token authentication, without its
                # notice that it is on
                notices = logging.getLogger(AUTH_NOTICES)
                level = notices.level
                notices.setLevel(logging.ERROR)
                try:
                    ray.init(address="local", include_dashboard=False, log_to_driver=False,
                             configure_logging=False, runtime_env=runtime_env)
                finally:
                    notices.setLevel(level)
        except ConnectionError as error:
            raise StudyInputError(f"cannot join the Ray cluster at {self.address}: "
                                  f"{str(error).splitlines()[0]}") from None

    def fit_resources(self, peaks: Callable[[], Mapping[str, int]],
                      log: Callable[[str], None] = say) -> RayRunner:
        """Start Ray and settle each trial's share of a GPU before anything runs (`peaks`: each
        strategy's peak memory per trial). A request no node can meet is refused in one line:
        at once on a local or fixed cluster, after `gpu_wait` seconds on an autoscaling one;
        so is a GPU that torch cannot use there, and a share too small for a strategy."""
        self.start()
        requested = self.gpus_per_trial
        gpus = ray.cluster_resources().get("GPU", 0)
        if requested is None:
            requested = AUTO if gpus else 0.0
        autoscaling = self.address is not None and _autoscaler_report() is not None
        probe_share = share_of(MOST_TRIALS_PER_GPU) if requested == AUTO else float(requested)
        if not autoscaling:
            self._refuse_unmet(probe_share)
        if probe_share == 0:
            if gpus:
                log(f"[resources] trials run on CPUs (--gpus-per-trial 0): the cluster's "
                    f"{gpus:g} GPU(s) stay idle, hidden from them")
            return replace(self, shares=Shares(0.0))
        card = self._probe(probe_share, self.gpu_wait if autoscaling else PROBE_SECONDS)
        shares = fit_shares(requested, peaks(), card)
        log(f"[resources] {card.name} ({amount(card.total_bytes)}): GPU share per trial: "
            f"{shares.describe()}")
        return replace(self, shares=shares)

    def _refuse_unmet(self, gpus: float) -> None:
        """Refuse a trial's request that no node of a cluster without an autoscaler meets."""
        for node in ray.nodes():
            has = node["Resources"] if node.get("Alive") else {}
            if has.get("CPU", 0) >= self.cpus_per_trial and has.get("GPU", 0) >= gpus:
                return
        raise StudyInputError(f"a trial asks {self.cpus_per_trial:g} CPU(s) and {gpus:g} GPU, "
                              f"and no node has them: {cluster_text()}")

    def _probe(self, share: float, seconds: float) -> Card:
        """The card a trial granted `share` of a GPU sees, by a task placed as a trial is."""
        probe = ray.remote(_probe).options(num_cpus=self.cpus_per_trial, num_gpus=share)
        found = probe.remote()
        ready, _ = ray.wait([found], timeout=seconds)
        if not ready:
            ray.cancel(found, force=True)
            raise StudyInputError(f"no node took a trial's {share:g} GPU and "
                                  f"{self.cpus_per_trial:g} CPU(s) in {seconds:.0f} s: "
                                  f"{cluster_text()}")
        seen = ray.get(found)
        if "why" in seen:
            raise StudyInputError(f"trials asked for GPUs, but torch cannot use CUDA on node "
                                  f"{seen['node']}: {seen['why']}")
        return Card(seen["name"], seen["total"])

    def __call__(self, configs: list[TrialConfig], stage: str) -> float:
        """Run the trials, each with its strategy's GPU share; return the driver's seconds
        spent writing to MLflow."""
        self.start()
        shares = self.shares or Shares(float(self.gpus_per_trial or 0.0))
        configs = [replace(cfg, execution=replace(cfg.execution, gpu_share=shares.of(
            cfg.strategy))) for cfg in configs]
        if self.halving and stage == "tune":       # evaluated where ASHA judges
            configs = [self.halving.judged(cfg) for cfg in configs]
        halt = _HaltOnFullDisk()
        progress = _ShowProgress(stage, len(configs))
        record = _RecordRuns(self.tracker, halt, progress)
        cpus = self.cpus_per_trial
        trainable = tune.with_resources(
            tune.with_parameters(_trainable, trial=self.trial),
            lambda config: resource_dict_to_pg_factory(
                {"cpu": cpus, "gpu": shares.of(config["trial"]["strategy"])}))
        name = f"{configs[0].study}-{stage}-{time.strftime('%Y%m%d-%H%M%S')}"
        tuner = tune.Tuner(
            trainable,
            param_space={"trial": tune.grid_search([c.to_dict() for c in configs])},
            tune_config=tune.TuneConfig(reuse_actors=True, scheduler=CellHalving(
                self.halving) if self.halving and stage == "tune" else None),
            run_config=tune.RunConfig(
                name=name, storage_path=str(Path(self.storage_path).resolve()), verbose=0,
                callbacks=[halt, record], stop=halt.stopper,
                failure_config=tune.FailureConfig(max_failures=self.max_failures)))
        try:
            with tune_environment():
                tuner.fit()
        finally:
            record.close_open_runs()
        if halt.reason:
            raise StudyInputError(f"{stage} stopped, a trial found no space left: "
                                  f"{halt.reason}; free space there and run the same "
                                  f"command again")
        progress.log(f"[{stage}] MLflow writes took {record.tracking_seconds:.1f} s of driver "
                     f"time ({1000 * record.tracking_seconds / len(configs):.0f} ms per trial)")
        return record.tracking_seconds

    def shutdown(self) -> None:
        if ray.is_initialized():
            ray.shutdown()
