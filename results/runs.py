"""MLflow runs of one study as a tidy pandas frame: one row per run with its tags, params,
status and summary metrics. Everything downstream (selection, tables) reads this frame. Every
MLflow store is opened here (`open_client`: the first client of a fresh sqlite store creates its
tables, which MLflow does without a lock, so processes of one host take turns), and every search
pages through here (`search_all`)."""
from __future__ import annotations

import contextlib
from pathlib import Path

import pandas as pd
from mlflow.tracking import MlflowClient

from common.errors import StudyInputError
from common.files import exclusive


def store_lock(uri: str):
    """For a sqlite store, an exclusive lock on a file beside its database (processes of one
    host that open or change it take turns); for a server, which serialises itself, none."""
    if not uri.startswith("sqlite:///"):
        return contextlib.nullcontext()
    database = Path(uri[len("sqlite:///"):])
    return exclusive(database.with_name(database.name + ".lock"))


def open_client(uri: str) -> MlflowClient:
    """A client of the store at `uri`, its tables made first if the store is new."""
    with store_lock(uri):
        return MlflowClient(uri)


def search_all(client, experiment_id: str, query: str = "") -> list:
    """Every run of the experiment that `query` selects, page by page (MLflow returns at most
    1000 a call)."""
    runs, token = [], None
    while True:
        page = client.search_runs([experiment_id], query, max_results=1000, page_token=token)
        runs.extend(page)
        token = page.token
        if not token:
            return runs

TAGS = ("study", "stage", "setting", "task", "group", "strategy", "backbone", "seed",
        "trial_id", "outcome", "error", "selected", "selected_from", "prior", "prior_from")
PARAMS = ("base_lr", "weight_decay", "optimizer", "prompt_length", "batch_size", "epochs",
          "train_size", "saved_weights", "device", "precision", "machine")
COMMIT = "mlflow.source.git.commit"           # read as the column `commit`
NUMERIC = ("seed", "base_lr", "weight_decay", "prompt_length", "batch_size", "epochs",
           "train_size")


COLUMNS = ["run_id", "status", "start_time", *TAGS, "commit", *PARAMS]   # of a study with no runs


def load_runs(study: str, uri: str, stage: str | None = None) -> pd.DataFrame:
    client = open_client(uri)
    experiment = client.get_experiment_by_name(study)
    if experiment is None:
        raise StudyInputError(f"no MLflow experiment '{study}' in {uri}: run "
                              f"`python -m study run {study}` first")
    query = f"tags.stage = '{stage}'" if stage else ""
    rows = []
    for run in search_all(client, experiment.experiment_id, query):
        row = {"run_id": run.info.run_id, "status": run.info.status,
               "start_time": run.info.start_time}
        row.update({k: run.data.tags.get(k) for k in TAGS}, commit=run.data.tags.get(COMMIT))
        row.update({k: run.data.params.get(k) for k in PARAMS})
        row.update(run.data.metrics)
        rows.append(row)
    frame = pd.DataFrame(rows, columns=None if rows else COLUMNS)
    for column in NUMERIC:
        if column in frame:
            frame[column] = pd.to_numeric(frame[column], errors="coerce")
    return frame


def counted(frame: pd.DataFrame) -> pd.DataFrame:
    """FINISHED, not diverged, one row per trial (the latest if a trial was ever logged twice)."""
    done = frame[(frame["status"] == "FINISHED") & (frame["outcome"] == "finished")]
    return done.sort_values("start_time").drop_duplicates("trial_id", keep="last")


def made_by(runs: pd.DataFrame) -> str:
    """Which runs made a table or figure, when, on which machine and at which commit: the line
    printed under it (numbers differ between CPUs; the line says whose these are)."""
    final = counted(runs[runs["stage"] == "final"])
    if final.empty:
        return "no finished final runs"
    machines = sorted(set(final["machine"].dropna())) or ["a machine the runs do not record"]
    commits = sorted({c[:10] for c in final["commit"].dropna()}) or ["unknown"]
    days = pd.to_datetime(final["start_time"], unit="ms").dt.strftime("%Y-%m-%d")
    span = days.min() if days.min() == days.max() else f"{days.min()} to {days.max()}"
    return (f"{len(final)} final runs of {span}, on {'; '.join(machines)}, commit "
            f"{', '.join(commits)}")
