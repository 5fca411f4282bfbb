"""One driver per study and store. The driver running a study holds a lease in the study's
MLflow experiment (the tag `driver_lease`: who holds it and until when), renews it every third
of its time to live from a background thread, and releases it when it ends. A second driver
started on the same study and store while the lease is live is refused with one line naming
the holder, before it touches any run, so the runs of a live driver are never closed as KILLED
by another. A killed driver's lease is taken over at once on its own host (its process is
gone) and elsewhere once it expires (`VPT_STUDY_LEASE_SECONDS`, default 120). MLflow has no
compare-and-swap: on a sqlite store, drivers take the lease in turns under a lock beside the
database; on a server, a taker writes, waits a moment and reads back, so of two drivers starting
together only the last writer keeps the lease and the other is refused."""
from __future__ import annotations

import json
import os
import socket
import threading
import time
import uuid
from dataclasses import asdict, dataclass
from typing import Callable

import psutil

from common.errors import StudyInputError
from results.runs import open_client, store_lock

TAG = "driver_lease"
TTL_ENV = "VPT_STUDY_LEASE_SECONDS"
SETTLE_SECONDS = 0.5           # between writing the lease and reading it back


@dataclass(frozen=True)
class Holder:
    token: str
    host: str
    pid: int
    process_started: float     # the pid's start time: a reused pid is another process
    command: str
    until: float               # epoch seconds

    @classmethod
    def me(cls, command: str, ttl: float) -> "Holder":
        return cls(uuid.uuid4().hex, socket.gethostname(), os.getpid(),
                   psutil.Process().create_time(), command, time.time() + ttl)

    def gone(self) -> bool:
        """Expired, or a process of this host that no longer runs."""
        if self.until < time.time():
            return True
        if self.host != socket.gethostname():
            return False
        try:
            return psutil.Process(self.pid).create_time() != self.process_started
        except psutil.NoSuchProcess:
            return True

    def describe(self) -> str:
        return (f"pid {self.pid} on {self.host} ({self.command or 'python -m study'}), "
                f"whose lease runs {max(0, self.until - time.time()):.0f} s more unless renewed")


class DriverLease:
    def __init__(self, uri: str, experiment_id: str, study: str, command: str = "",
                 ttl: float | None = None, log: Callable[[str], None] = print):
        self.client, self.uri = open_client(uri), uri
        self.experiment_id, self.study, self.log = experiment_id, study, log
        self.ttl = ttl or float(os.environ.get(TTL_ENV, 120))
        self.holder = Holder.me(command, self.ttl)
        self.stopping = threading.Event()
        self.renewer: threading.Thread | None = None

    def _read(self) -> Holder | None:
        text = self.client.get_experiment(self.experiment_id).tags.get(TAG)
        return Holder(**json.loads(text)) if text else None

    def _write(self, holder: Holder) -> None:
        self.client.set_experiment_tag(self.experiment_id, TAG, json.dumps(asdict(holder)))

    def _refuse(self, other: Holder) -> None:
        raise StudyInputError(f"study '{self.study}' is being run by {other.describe()}; wait "
                              f"for it to end, or stop it and run the same command again")

    def acquire(self) -> None:
        with store_lock(self.uri):
            current = self._read()
            if current and current.token != self.holder.token:
                if not current.gone():
                    self._refuse(current)
                self.log(f"lease: taking over from pid {current.pid} on {current.host}, which "
                         f"no longer runs or renews it")
            self._write(self.holder)
            time.sleep(SETTLE_SECONDS)
            current = self._read()
            if current is None or current.token != self.holder.token:
                self._refuse(current or self.holder)
        self.renewer = threading.Thread(target=self._renew, name="driver-lease", daemon=True)
        self.renewer.start()

    def _renew(self) -> None:
        while not self.stopping.wait(self.ttl / 3):
            try:
                self.holder = Holder(**{**asdict(self.holder),
                                        "until": time.time() + self.ttl})
                self._write(self.holder)
            except Exception:          # the store is away: the next tick tries again
                pass

    def release(self) -> None:
        self.stopping.set()
        if self.renewer:
            self.renewer.join()
        try:
            current = self._read()
            if current and current.token == self.holder.token:
                self.client.delete_experiment_tag(self.experiment_id, TAG)
        except Exception:              # an unreleased lease expires by itself
            pass

    def __enter__(self) -> "DriverLease":
        self.acquire()
        return self

    def __exit__(self, *exc) -> None:
        self.release()
