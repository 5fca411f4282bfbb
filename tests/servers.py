"""What the cluster tests share: the servers a cluster runs beside the study, started for real
on loopback (PostgreSQL from Debian's packages, which `tests/install_debian_packages.sh`
installs, in a private data folder; `mlflow server` over it with a local artifact root, which a
test can stop and start again on the same port), a headless Chromium that renders the MLflow UI,
and the smoke study run as a user runs it, with the checks that compare its MLflow record with an
uninterrupted run's."""
from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import pandas as pd
from mlflow.tracking import MlflowClient

from results.runs import load_runs
from results.table import paper_tables

PG_BIN = Path("/usr/lib/postgresql/15/bin")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until(ready, what: str, seconds: float = 60) -> None:
    deadline = time.monotonic() + seconds
    while not ready():
        if time.monotonic() > deadline:
            raise RuntimeError(f"waited {seconds:.0f} s for {what} in vain")
        time.sleep(0.25)


class Postgres:
    """A PostgreSQL server of its own, on 127.0.0.1 and a free port, with trust auth for
    loopback; as the `postgres` user when started by root (initdb refuses root)."""

    def __init__(self):
        self.bin = next((p for p in (PG_BIN, Path(shutil.which("initdb") or "/").parent)
                         if (p / "initdb").exists()), None)
        if self.bin is None:
            raise RuntimeError("PostgreSQL is not installed: run tests/install_debian_packages.sh")
        self.folder = Path(tempfile.mkdtemp(prefix="vpt-postgres-"))
        self.port = free_port()
        self.as_user = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
        if self.as_user:
            shutil.chown(self.folder, "postgres")

    def _run(self, *command: str) -> None:
        subprocess.run([*self.as_user, *command], check=True, capture_output=True)

    def start(self) -> str:
        data = self.folder / "data"
        self._run(str(self.bin / "initdb"), "-D", str(data), "-U", "postgres", "--auth=trust")
        self._run(str(self.bin / "pg_ctl"), "-D", str(data), "-l", str(self.folder / "log"),
                  "-w", "-o", f"-p {self.port} -k {self.folder} -c listen_addresses=127.0.0.1",
                  "start")
        self._run(str(self.bin / "createdb"), "-h", "127.0.0.1", "-p", str(self.port),
                  "-U", "postgres", "mlflow")
        return f"postgresql://postgres@127.0.0.1:{self.port}/mlflow"

    def stop(self) -> None:
        subprocess.run([*self.as_user, str(self.bin / "pg_ctl"), "-D",
                        str(self.folder / "data"), "-m", "immediate", "stop"],
                       capture_output=True)
        shutil.rmtree(self.folder, ignore_errors=True)


class MlflowServer:
    """`mlflow server` on 127.0.0.1 over `backend` with artifacts under `artifacts`."""

    def __init__(self, backend: str, artifacts: Path):
        self.backend, self.artifacts = backend, artifacts
        self.port = free_port()
        self.uri = f"http://127.0.0.1:{self.port}"
        self.process: subprocess.Popen | None = None

    def answers(self) -> bool:
        try:
            urllib.request.urlopen(f"{self.uri}/health", timeout=1).close()
            return True
        except OSError:
            return False

    def start(self) -> str:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "mlflow", "server", "--host", "127.0.0.1",
             "--port", str(self.port), "--backend-store-uri", self.backend,
             "--artifacts-destination", str(self.artifacts), "--workers", "1"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        wait_until(self.answers, "the MLflow server", 120)
        return self.uri

    def stop(self) -> None:
        if self.process:
            os.killpg(self.process.pid, 15)          # the server and its workers
            self.process.wait(timeout=30)
            self.process = None


def dump_dom(url: str, profile: Path) -> str:
    """The page at `url` as a real headless Chromium renders it (Debian's package), after 20 s
    of the page's own time."""
    return subprocess.run(
        ["chromium", "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
         "--no-first-run", "--disable-background-networking", "--disable-component-update",
         "--disable-sync", f"--user-data-dir={profile}", "--virtual-time-budget=20000",
         "--dump-dom", url], capture_output=True, text=True, timeout=120).stdout


ROOT = Path(__file__).resolve().parents[1]
STUDY = "demo-smoke"


def study_command(cache: Path, storage: Path) -> list[str]:
    return [sys.executable, "-m", "study", "run", "demo", "--smoke", "--cache-dir", str(cache),
            "--storage-path", str(storage)]


def run_study(cache: Path, storage: Path, uri: str) -> subprocess.CompletedProcess:
    return subprocess.run(study_command(cache, storage), cwd=ROOT, capture_output=True,
                          text=True, timeout=600, env={**os.environ, "MLFLOW_TRACKING_URI": uri})


def table(uri: str):
    runs = load_runs(STUDY, uri)
    return paper_tables(runs[runs["stage"] == "final"]).single, runs


def trials_of(runs):
    return runs[runs["stage"].isin(["tune", "final"])]


def assert_same_table(uri: str, reference: str):
    got, runs = table(uri)
    expected, _ = table(reference)
    pd.testing.assert_frame_equal(got.mean, expected.mean)
    pd.testing.assert_frame_equal(got.cells, expected.cells)
    return runs


def assert_every_epoch_once(uri: str, trials, reference_uri: str) -> None:
    """Each trial's per-epoch history holds the same steps as the uninterrupted run's: none
    missing, none twice."""
    ref = trials_of(table(reference_uri)[1]).set_index("trial_id")["run_id"]
    client, ref_client = MlflowClient(uri), MlflowClient(reference_uri)

    def steps(c, run_id):
        return sorted(m.step for m in c.get_metric_history(run_id, "train_loss"))
    for row in trials.itertuples():
        assert steps(client, row.run_id) == steps(ref_client, ref[row.trial_id]), row.trial_id
