"""Fault injection for resilience tests and drills, off unless VPT_INJECT_FAULTS is set, e.g.
`VPT_INJECT_FAULTS="digits/linear:oom,count/full_ft:exit"`. `oom` raises an out-of-memory error
in every attempt of the matching trials (they end FAILED after the retries); `exit` kills the
worker process in the first attempt only (a marker file under the cache dir remembers it), so the
retry finishes; `stall` holds the first attempt for 30 s before it trains, its worker's pid in the
marker, so that a test can kill the node it runs on mid-trial. The study driver passes the
variable on to its Ray workers."""
from __future__ import annotations

import os
import time
from pathlib import Path

import torch

from trainables.config import TrialConfig

ENV = "VPT_INJECT_FAULTS"
STALL_SECONDS = 30


def _kinds(cfg: TrialConfig) -> set[str]:
    kinds = set()
    for item in filter(None, os.environ.get(ENV, "").split(",")):
        target, _, kind = item.strip().partition(":")
        if target == f"{cfg.task}/{cfg.strategy}":
            kinds.add(kind)
    return kinds


def _first_attempt(cfg: TrialConfig, kind: str) -> bool:
    """True once per trial and fault kind: leaves a marker holding this worker's pid."""
    marker = Path(cfg.cache_dir) / "faults" / f"{cfg.trial_id}.{kind}"
    if marker.exists():
        return False
    marker.parent.mkdir(parents=True, exist_ok=True)
    marker.write_text(str(os.getpid()))
    return True


def inject(cfg: TrialConfig) -> None:
    kinds = _kinds(cfg)
    if "oom" in kinds:
        raise torch.OutOfMemoryError(f"injected out of memory in {cfg.task}/{cfg.strategy}")
    if "exit" in kinds and _first_attempt(cfg, "exit"):
        os._exit(17)
    if "stall" in kinds and _first_attempt(cfg, "stall"):
        time.sleep(STALL_SECONDS)
