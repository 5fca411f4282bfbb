"""A study's schedule on a cluster, simulated event by event (`python -m study plan <study> --gpus
N`). Jobs last a known number of hours on a share of one GPU, after the jobs they depend on; a
gate (share 0, no hours) takes no GPU and ends when the jobs it waits for end: a stage's barrier,
or a cell's selection. Pure: no torch, no Ray.

The model, kept simple:
- a GPU runs at once any jobs whose shares add up to at most 1, each for its own duration: k
  trials of share 1/k side by side take no longer than one alone (optimistic where one trial
  already keeps the GPU busy); a job stays on one GPU from start to end;
- list scheduling by critical path: whenever jobs end, the ready jobs (every dependency ended)
  start in order of the longest path from their start to the end of everything that waits for
  them (their own hours plus their longest chain of dependents), so among jobs that nothing
  waits for, or that the same barrier alone waits for, the longest first; ties in the order
  given. Each goes on the fullest GPU with room for its share; a job that fits nowhere is passed
  over for a later one that fits (backfilling). Durations are known in advance here (from the
  cost model); a real scheduler learns them as trials end, and Ray Tune starts a stage's trials
  in the order they are queued, so real schedules are no shorter."""
from __future__ import annotations

import heapq
from collections import defaultdict
from dataclasses import dataclass

from common.keys import Cell

ROOM = 1e-9          # float slack when shares such as 3 x 0.3333 fill a GPU


@dataclass(frozen=True)
class Job:
    name: str                        # unique
    hours: float                     # how long it runs once started
    share: float = 1.0               # of one GPU; 0: a gate, which takes none
    after: tuple[str, ...] = ()      # the jobs that must end before it starts
    stage: str = ""                  # for the report
    cell: Cell | None = None

    def __post_init__(self):
        if self.hours < 0 or not 0 <= self.share <= 1:
            raise ValueError(f"job {self.name}: hours must be >= 0 and a share within [0, 1], "
                             f"got {self.hours:g} h at {self.share:g}")


def gate(name: str, after, stage: str = "", cell: Cell | None = None) -> Job:
    """A job that takes nothing and ends when `after` have ended."""
    return Job(name, 0.0, 0.0, tuple(after), stage, cell)


@dataclass(frozen=True)
class Run:
    """One job as it ran: from `start` to `end` (hours) on GPU `gpu` (None: a gate)."""
    job: Job
    start: float
    end: float
    gpu: int | None


@dataclass(frozen=True)
class Schedule:
    gpus: int
    runs: tuple[Run, ...]            # in the order they started

    @property
    def makespan(self) -> float:
        return max((run.end for run in self.runs), default=0.0)

    @property
    def busy(self) -> float:
        """GPU-hours taken by the jobs: each job's hours times its share."""
        return sum(run.job.hours * run.job.share for run in self.runs)

    @property
    def utilisation(self) -> float:
        return self.busy / (self.gpus * self.makespan) if self.makespan else 0.0

    def idle(self, start: float, end: float) -> float:
        """GPU-hours unused between `start` and `end`."""
        taken = sum(run.job.share * max(0.0, min(run.end, end) - max(run.start, start))
                    for run in self.runs)
        return self.gpus * (end - start) - taken

    def run_of(self, name: str) -> Run:
        return next(run for run in self.runs if run.job.name == name)

    def last(self) -> Run:
        """The job that ends last (the first of them to start, on a tie)."""
        return max(self.runs, key=lambda run: (run.end, -run.start))


def _graph(jobs: list[Job]) -> tuple[list[list[int]], list[float]]:
    """Each job's dependents (by index) and its path length: its hours plus the longest path of
    the jobs that wait for it. Refused: a repeated name, a dependency on no job, a cycle."""
    index = {job.name: i for i, job in enumerate(jobs)}
    if len(index) != len(jobs):
        raise ValueError("two jobs share a name")
    dependents: list[list[int]] = [[] for _ in jobs]
    for i, job in enumerate(jobs):
        for name in set(job.after):
            if name not in index:
                raise ValueError(f"job {job.name} waits for {name}, which is no job")
            dependents[index[name]].append(i)
    waiting = [len(set(job.after)) for job in jobs]
    order = [i for i, count in enumerate(waiting) if not count]       # topological
    for i in order:
        for later in dependents[i]:
            waiting[later] -= 1
            if not waiting[later]:
                order.append(later)
    if len(order) < len(jobs):
        raise ValueError(f"{len(jobs) - len(order)} job(s) wait on each other: a dependency "
                         f"cycle")
    path = [0.0] * len(jobs)
    for i in reversed(order):
        path[i] = jobs[i].hours + max((path[later] for later in dependents[i]), default=0.0)
    return dependents, path


def simulate(jobs: list[Job], gpus: int) -> Schedule:
    """List-schedule `jobs` on `gpus` GPUs (see the module's docstring); refused: a repeated
    name, a dependency on no job, a cycle."""
    if gpus < 1:
        raise ValueError(f"at least one GPU, got {gpus}")
    dependents, path = _graph(jobs)
    waiting = [len(set(job.after)) for job in jobs]
    ready: dict[float, list[tuple[float, float, int]]] = defaultdict(list)   # share -> heap
    free = [1.0] * gpus
    running: list[tuple[float, int, int | None]] = []        # (end, job, gpu)
    runs: list[Run] = []
    now = 0.0

    def make_ready(i: int) -> None:
        heapq.heappush(ready[jobs[i].share], (-path[i], -jobs[i].hours, i))

    def start_what_fits() -> None:
        while True:
            room = max(free)
            heads = [heap[0] for share, heap in ready.items() if heap and share <= room + ROOM]
            if not heads:
                return
            *_, i = min(heads)
            job = jobs[i]
            heapq.heappop(ready[job.share])
            gpu = None
            if job.share:
                gpu = min((g for g in range(gpus) if free[g] >= job.share - ROOM),
                          key=lambda g: free[g])
                free[gpu] -= job.share
            heapq.heappush(running, (now + job.hours, i, gpu))
            runs.append(Run(job, now, now + job.hours, gpu))

    for i in range(len(jobs)):
        if not waiting[i]:
            make_ready(i)
    while True:
        start_what_fits()
        if not running:
            break
        now = running[0][0]
        while running and running[0][0] == now:
            _, i, gpu = heapq.heappop(running)
            if gpu is not None:
                free[gpu] += jobs[i].share
            for later in dependents[i]:
                waiting[later] -= 1
                if not waiting[later]:
                    make_ready(later)
    return Schedule(gpus, tuple(runs))
