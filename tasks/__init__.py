"""Downstream tasks as data: the registry of `TaskSpec`s (VTAB-1k's 19 tasks and the offline demo
suite), the deterministic generators of the demo suite, and the checksummed uint8 array cache that
every trial reads its images from. Import `get_task`, `TASKS` and `load_split` from here."""
from tasks.spec import TASKS, TaskSpec, get_task, tasks_in_suite, SUITES
from tasks.cache import (CacheError, TaskNotPrepared, ChecksumMismatch, load_split,
                         is_prepared, write_task)

__all__ = ["TASKS", "TaskSpec", "get_task", "tasks_in_suite", "SUITES", "CacheError",
           "TaskNotPrepared", "ChecksumMismatch", "load_split", "is_prepared", "write_task"]
