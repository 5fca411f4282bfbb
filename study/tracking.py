"""MLflow tracking owned by the study, not by Ray's callback: one experiment per study (a model
training experiment, so the UI opens on its runs), exactly one run per trial (tagged study,
stage, task, group, strategy, backbone, seed, trial id, the git commit and library versions;
named task/strategy/stage/point), a child of its stage's parent run, params at start, per-epoch
metrics with step = epoch gathered and written in one `log_batch` call at most every
`flush_seconds` per trial (and with the summary), the summary at the end, and an honest terminal
status (FINISHED, FAILED, KILLED). The selection is written back as tags: `selected=true` on the
tune run chosen per cell, `selected_from=<its run id>` on the final runs. Runs left RUNNING by a
killed driver are closed as KILLED when the study starts again. The store defaults to
`sqlite:///mlflow.db` in the working directory; MLFLOW_TRACKING_URI overrides it. A sqlite
store's artifacts live beside its database, and stay beside it when the folder is moved or
copied (`keep_artifacts_beside`).

A tracking server that stops answering mid-study (a restart, a network cut) loses nothing: every
call waits and retries with backoff (`PatientClient`), saying so once per outage, while the trials
wait at their next report; a run is created at most once however often its creation is retried.
After `VPT_MLFLOW_PATIENCE_SECONDS` (default 1800) without an answer a call gives up with one
line (what finished is stored, and the same command continues the study)."""
from __future__ import annotations

import contextlib
import functools
import importlib.metadata
import math
import os
import re
import socket
import sqlite3
import subprocess
import tempfile
import time
import urllib.parse
import urllib.request
import uuid
from pathlib import Path

import requests

from mlflow.entities import Metric, Param, RunTag
from mlflow.exceptions import MlflowException

from common.errors import StudyInputError, say
from common.keys import SUMMARY
from results.runs import open_client, search_all, store_lock
from study.summary import set_description
from tasks import get_task
from trainables.config import TrialConfig

EPOCH_METRICS = ("lr", "diverged", "train_loss", "train_acc", "val_loss", "val_acc",
                 "test_loss", "test_acc")
SUMMARY_METRICS = ("trainable_params", "total_params", "tuned_percent", "images_per_second",
                   "wall_seconds", "final_train_loss", "final_val_acc", "final_val_loss",
                   "final_test_acc", "final_test_loss")
SUMMARY_PARAMS = ("train_size", "eval_size", "device", "machine", "precision", "normalization",
                  "node", "saved_weights")
SUMMARY_TAGS = ("outcome", "prior")     # prior: "trained" or "replayed" (trainables.priors)
ARTIFACTS = "mlartifacts"               # beside a sqlite store's database file
DATABASE_PORTS = {"postgresql": 5432, "mysql": 3306, "mssql": 1433}


def tracking_uri() -> str:
    return os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{Path('mlflow.db').resolve()}"


def sqlite_file(uri: str) -> Path | None:
    """The database file of a sqlite store's URI (None for any other store)."""
    return Path(uri[len("sqlite:///"):]) if uri.startswith("sqlite:///") else None


def artifact_root(uri: str) -> str | None:
    """Artifacts of a sqlite store live beside its database file (as `mlflow server` keeps
    ./mlartifacts), not in the working directory; a server decides for itself."""
    database = sqlite_file(uri)
    return None if database is None else (database.parent / ARTIFACTS).resolve().as_uri()


def keep_artifacts_beside(uri: str, log=say) -> None:
    """A sqlite store that was moved or copied (a renamed project folder, a store sent to a
    colleague) still records the artifact folder beside its old place; MLflow keeps absolute
    locations. Point them beside the database again, so that new artifacts land there and the
    old ones are read from there; refuse, naming the old folder, when that folder was not
    brought along."""
    database = sqlite_file(uri)
    if database is None or not database.is_file():
        return
    here = (database.parent / ARTIFACTS).resolve().as_uri()
    # under the store's lock: another driver may be making a fresh store's tables
    with store_lock(uri), contextlib.closing(sqlite3.connect(database)) as db, db:
        if not db.execute("select 1 from sqlite_master where name = 'experiments'").fetchone():
            return
        roots = {found.group(1) for (location,) in
                 db.execute("select artifact_location from experiments")
                 if (found := re.match(rf"^(file://.*/{ARTIFACTS})(/.*)?$", location or ""))}
        for root in sorted(roots - {here}):
            old = Path(urllib.parse.unquote(urllib.parse.urlparse(root).path))
            if old.is_dir() and not (database.parent / ARTIFACTS).is_dir():
                raise StudyInputError(
                    f"the store {database} keeps its artifacts in {old}, not beside it: copy "
                    f"that folder next to {database.name} (or open the store where it was)")
            for table, column in (("experiments", "artifact_location"), ("runs", "artifact_uri")):
                db.execute(f"update {table} set {column} = ? || substr({column}, ?) "
                           f"where {column} = ? or substr({column}, 1, ?) = ?",
                           (here, len(root) + 1, root, len(root) + 1, root + "/"))
            log(f"mlflow: the store was moved from {old.parent}; its artifacts are read and "
                f"written beside it, in {database.parent / ARTIFACTS}")
            from mlflow.tracking._tracking_service import utils  # runs' artifact places,
            utils._artifact_repos_cache.clear()                  # remembered per process


def _now_ms() -> int:
    return int(time.time() * 1000)


@functools.lru_cache(maxsize=None)
def provenance() -> dict[str, str]:
    """The code behind a run: its source and git commit (MLflow's own tags, shown on the run's
    page), whether tracked files had changes, and the versions of the libraries its numbers
    depend on."""
    root = Path(__file__).resolve().parents[1]

    def git(*args: str) -> str:
        try:
            return subprocess.run(["git", *args], cwd=root, capture_output=True, text=True,
                                  timeout=30).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            return ""
    tags = {"mlflow.source.name": "python -m study", "mlflow.source.type": "LOCAL",
            "mlflow.source.git.commit": git("rev-parse", "HEAD") or "unknown",
            "git_dirty": str(bool(git("status", "--porcelain", "--untracked-files=no"))).lower()}
    for package in ("torch", "timm", "ray", "mlflow"):
        tags[f"version.{package}"] = importlib.metadata.version(package)
    return tags


def run_name(cfg: TrialConfig) -> str:
    """What tells a run from its neighbours, first: task/strategy/stage/grid point or seed."""
    knobs = dict(cfg.knobs)
    point = (",".join([f"lr={cfg.recipe.base_lr:g}", f"wd={cfg.recipe.weight_decay:g}",
                       *(f"{name}={knobs[name]}" for name in cfg.searched)])
             if cfg.stage == "tune" else f"seed={cfg.seed}")
    setting = "" if cfg.setting == "800" else f"@{cfg.setting}"
    return f"{cfg.task}/{cfg.strategy}/{cfg.stage}{setting}/{point}"


def trial_tags(cfg: TrialConfig) -> dict[str, str]:
    return {"study": cfg.study, "stage": cfg.stage, "setting": cfg.setting, "task": cfg.task,
            "group": get_task(cfg.task).group, "strategy": cfg.strategy,
            "backbone": cfg.backbone.tag, "seed": str(cfg.seed), "trial_id": cfg.trial_id,
            "mlflow.runName": run_name(cfg), **provenance()}


def trial_params(cfg: TrialConfig) -> dict[str, object]:
    r = cfg.recipe
    params = {"base_lr": r.base_lr, "lr": r.lr, "weight_decay": r.weight_decay,
              "batch_size": r.batch_size, "epochs": r.epochs, "warmup_epochs": r.warmup_epochs,
              "optimizer": r.optimizer, "schedule": r.schedule,
              **dict(cfg.knobs),
              "train_split": cfg.train_split, "eval_split": cfg.eval_split,
              "backbone_name": cfg.backbone.name, "backbone_weights": cfg.backbone.weights or "",
              "backbone_overrides": dict(cfg.backbone.overrides),
              "backbone_dropout": cfg.backbone.dropout, "head_init": cfg.backbone.head_init}
    if cfg.prior_recipe:
        params.update(prior_optimizer=cfg.prior_recipe.optimizer,
                      prior_base_lr=cfg.prior_recipe.base_lr,
                      prior_weight_decay=cfg.prior_recipe.weight_decay,
                      prior_batch_size=cfg.prior_recipe.batch_size,
                      prior_epochs=cfg.prior_recipe.epochs)
    return params


def check_reachable(uri: str, timeout: float = 5.0) -> None:
    """An MLflow server, or the database of a store, that does not answer is refused in one
    line within `timeout` seconds (before any trial starts, or before a command reads)."""
    where = urllib.parse.urlparse(uri)
    scheme = where.scheme.split("+")[0]
    if scheme in ("http", "https"):
        try:
            with urllib.request.urlopen(f"{uri.rstrip('/')}/health", timeout=timeout):
                pass
        except (OSError, ValueError) as error:
            reason = getattr(error, "reason", None) or error
            raise StudyInputError(f"MLflow server {uri} does not answer: {reason}") from None
    elif scheme in DATABASE_PORTS and where.hostname:
        address = (where.hostname, where.port or DATABASE_PORTS[scheme])
        try:
            socket.create_connection(address, timeout).close()
        except OSError as error:
            raise StudyInputError(f"the MLflow store's {scheme} database at "
                                  f"{address[0]}:{address[1]} does not answer: "
                                  f"{error.strerror or error}") from None


def check_readable(uri: str) -> None:
    """What a command that reads a store checks first: that the store exists (MLflow would
    create an empty one, and its folder, at a mistyped path) and answers."""
    database = sqlite_file(uri)
    local = uri[len("file://"):] if uri.startswith("file://") else \
        uri if ":" not in uri and uri != "databricks" else None      # a folder of MLflow's own
    missing = database if database is not None and not database.is_file() else \
        local if local is not None and not Path(local).is_dir() else None
    if missing is not None:
        raise StudyInputError(f"no MLflow store at {missing} (this command reads one and makes "
                              f"none): check --tracking-uri or $MLFLOW_TRACKING_URI")
    check_reachable(uri)


def unanswered(error: Exception) -> bool:
    """The server did not answer (refused, reset, timed out, or still starting), as opposed to
    answering with an error about the request."""
    if isinstance(error, requests.exceptions.ConnectionError):
        return True
    text = str(error)
    return isinstance(error, MlflowException) and text.startswith("API request to") and (
        "failed with exception" in text or "failed with timeout exception" in text
        or any(f"error code {code}" in text for code in (502, 503, 504)))


class PatientClient:
    """An MlflowClient whose calls wait out a tracking server that does not answer: each is
    retried with exponential backoff (1 s doubling to 30 s) until it answers or `patience`
    seconds pass. The outage is announced once and its end once. `create_run` tags each run
    with a token and, on a retry, first looks for a run already holding it, so a request that
    reached the server before the connection broke does not create a second run. Once it has
    given up, a call the server does not answer fails at once (closing the study's runs does not
    wait out a second patience)."""

    def __init__(self, uri: str, log=say, patience: float | None = None):
        self.uri, self.log = uri, log
        self.patience = patience or float(os.environ.get("VPT_MLFLOW_PATIENCE_SECONDS", 1800))
        self.client = open_client(uri)
        self.gave_up = False

    def __getattr__(self, name: str):
        method = getattr(self.client, name)
        return lambda *args, **kwargs: self.call(method, *args, **kwargs)

    def call(self, method, *args, already_done=None, **kwargs):
        delay, down_since = 1.0, None
        while True:
            try:
                done = already_done() if down_since is not None and already_done else None
                result = done if done is not None else method(*args, **kwargs)
            except Exception as error:
                if not unanswered(error):
                    raise
                now = time.monotonic()
                if down_since is None:
                    down_since = now
                    self.log(f"mlflow: {self.uri} does not answer; holding the study's writes and "
                             f"retrying with backoff (trials wait at their next report)")
                if self.gave_up or now - down_since > self.patience:
                    self.gave_up = True
                    raise StudyInputError(
                        f"MLflow server {self.uri} has not answered for {self.patience:.0f} s; "
                        f"what finished is stored: run the same command again once it answers"
                    ) from None
                time.sleep(delay)
                delay = min(2 * delay, 30.0)
                continue
            self.gave_up = False
            if down_since is not None:
                self.log(f"mlflow: {self.uri} answers again after "
                         f"{time.monotonic() - down_since:.0f} s; nothing was lost")
            return result

    def create_run(self, experiment_id: str, tags: dict[str, str]):
        token = uuid.uuid4().hex

        def created():
            found = self.client.search_runs([experiment_id], f"tags.create_token = '{token}'")
            return found[0] if found else None
        return self.call(self.client.create_run, experiment_id,
                         tags={**tags, "create_token": token}, already_done=created)


class StudyTracker:
    def __init__(self, study: str, uri: str | None = None, flush_seconds: float = 2.0,
                 log=say):
        self.uri = uri or tracking_uri()
        self.flush_seconds = flush_seconds
        self.pending: dict[str, list[Metric]] = {}       # run id -> epoch metrics not yet written
        self.flushed: dict[str, float] = {}              # run id -> time of its last write
        check_reachable(self.uri)
        keep_artifacts_beside(self.uri, log)
        if self.uri.startswith(("http://", "https://")):
            # MLflow's own retries (7, about 4 minutes, silent) would hide an outage; a couple,
            # then PatientClient's, which say so
            os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "2")
        self.client = PatientClient(self.uri, log)
        self.experiment_id = self._experiment(study)
        self.parents: dict[str, str] = {}          # stage -> its parent run, while it runs

    def _experiment(self, study: str) -> str:
        """The study's experiment, made if it is not there yet (by this driver or, at the same
        moment, another), with the tag that the MLflow UI reads as its kind. Both under the
        store's lock: two drivers writing one tag at once collide in sqlite (MLflow's tag upsert
        is a read, then an insert)."""
        with store_lock(self.uri):
            experiment = self.client.get_experiment_by_name(study)
            if experiment:
                experiment_id = experiment.experiment_id
            else:
                try:
                    experiment_id = self.client.create_experiment(study, artifact_root(self.uri))
                except MlflowException as error:
                    if error.error_code != "RESOURCE_ALREADY_EXISTS":
                        raise
                    experiment_id = self.client.get_experiment_by_name(study).experiment_id
            self.client.set_experiment_tag(experiment_id, "mlflow.experimentKind",
                                           "custom_model_development")
            return experiment_id

    def log_card(self, files: dict[str, str], heading: str = "") -> str:
        """The study's protocol card (`study.card`), under `heading` (what the study is, the
        command that ran it): the experiment's description, which the MLflow UI shows on the
        experiment's page, and artifacts of one run tagged stage=protocol."""
        set_description(self.client, self.experiment_id, card=heading + files["protocol_card.md"])
        runs = self.client.search_runs([self.experiment_id], "tags.stage = 'protocol'")
        run_id = runs[0].info.run_id if runs else self.client.create_run(
            self.experiment_id, tags={"stage": "protocol", "mlflow.runName": "protocol card",
                                      "study": self.client.get_experiment(
                                          self.experiment_id).name}).info.run_id
        with tempfile.TemporaryDirectory() as folder:
            for name, text in files.items():
                (Path(folder) / name).write_text(text)
                self.client.log_artifact(run_id, str(Path(folder) / name))
        if not runs:
            self.client.set_terminated(run_id, "FINISHED")
        return run_id

    def open_stage(self, stage: str) -> str:
        """The stage's parent run (the same one when a study is run again); the trials the
        stage starts become its children in the UI."""
        found = self.client.search_runs([self.experiment_id], f"tags.parent_of = '{stage}'")
        if found:
            run_id = found[0].info.run_id
            self.client.update_run(run_id, "RUNNING")
        else:
            name = self.client.get_experiment(self.experiment_id).name
            run_id = self.client.create_run(self.experiment_id, tags={
                "parent_of": stage, "stage": f"{stage} stage", "study": name,
                "mlflow.runName": f"{name}: {stage} stage",
                **provenance()}).info.run_id
        self.parents[stage] = run_id
        return run_id

    def close_stage(self, stage: str, status: str = "FINISHED") -> None:
        run_id = self.parents.pop(stage, None)
        if run_id:
            self.client.set_terminated(run_id, status)

    def start(self, cfg: TrialConfig, **tags: str) -> str:
        parent = {"mlflow.parentRunId": self.parents[cfg.stage]} if cfg.stage in self.parents \
            else {}
        run = self.client.create_run(self.experiment_id,
                                     tags={**trial_tags(cfg), **parent, **tags})
        self.client.log_batch(run.info.run_id, params=[
            Param(k, str(v)) for k, v in trial_params(cfg).items()])
        self.flushed[run.info.run_id] = time.monotonic()
        return run.info.run_id

    def record(self, run_id: str, result: dict) -> None:
        """Log one report of a trial: an epoch's metrics, or the summary."""
        stamp = _now_ms()
        if result.get(SUMMARY):
            metrics = [Metric(k, float(result[k]), stamp, 0) for k in SUMMARY_METRICS
                       if k in result and math.isfinite(float(result[k]))]
            self.client.log_batch(
                run_id, metrics=self.pending.pop(run_id, []) + metrics,
                params=[Param(k, str(result[k])) for k in SUMMARY_PARAMS if k in result],
                tags=[RunTag(k, str(result[k])) for k in SUMMARY_TAGS if k in result])
        elif "epoch" in result:
            step = int(result["epoch"])
            pending = self.pending.setdefault(run_id, [])
            pending.extend(Metric(k, float(result[k]), stamp, step) for k in EPOCH_METRICS
                           if k in result and math.isfinite(float(result[k])))
            waited = time.monotonic() - self.flushed.get(run_id, 0.0)
            if waited >= self.flush_seconds or len(pending) > 900:    # log_batch takes 1000
                self.flush(run_id)

    def flush(self, run_id: str) -> None:
        metrics = self.pending.pop(run_id, [])
        if metrics:
            self.client.log_batch(run_id, metrics=metrics)
        self.flushed[run_id] = time.monotonic()

    def finish(self, run_id: str, status: str, error: str | None = None) -> None:
        self.flush(run_id)
        self.flushed.pop(run_id, None)
        if error:
            self.client.set_tag(run_id, "error", error[-4000:])
        self.client.set_terminated(run_id, status)

    def mark(self, runs, tag: str, wanted: dict[str, str]) -> None:
        """Set `tag` to wanted[run id] on these runs (a frame from `results.runs`), and clear it
        where a run no longer wants it; only changed values are written."""
        for row in runs.itertuples():
            value, have = wanted.get(row.run_id, ""), getattr(row, tag)
            if (have if isinstance(have, str) else "") != value:
                if value:
                    self.client.set_tag(row.run_id, tag, value)
                else:
                    self.client.delete_tag(row.run_id, tag)

    def stopped(self, run_id: str, epoch: int) -> None:
        """A trial that successive halving ended at `epoch`, before its schedule's end."""
        self.client.log_batch(run_id, tags=[RunTag("outcome", "stopped"),
                                            RunTag("stopped_at_epoch", str(epoch))])

    def runs(self, stage: str | None = None, status: str | None = None) -> list:
        filters = [f"tags.stage = '{stage}'"] if stage else []
        if status:
            filters.append(f"attributes.status = '{status}'")
        return search_all(self.client, self.experiment_id, " and ".join(filters))

    def finished_trial_ids(self, stage: str) -> set[str]:
        return {run.data.tags.get("trial_id") for run in self.runs(stage, "FINISHED")}

    def close_interrupted(self) -> int:
        """Runs still RUNNING belong to a driver that died: end them as KILLED."""
        stale = self.runs(status="RUNNING")
        for run in stale:
            self.finish(run.info.run_id, "KILLED")
        return len(stale)
