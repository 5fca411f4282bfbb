"""How PyTorch's OpenMP threads wait for each other at the end of each parallel operator. The
upstream pretraining runs on every core; libgomp's default is to spin for a long while before
sleeping, so when another process (or the hypervisor) takes one core, the thread waiting on it
burns its own. A short spin keeps the speed on idle cores and loses much less on a busy one
(`python -m bench --sections contention`). It changes no number: only how threads wait. libgomp
reads the setting when it loads, so this runs before torch is imported; a value already in the
environment wins."""
from __future__ import annotations

import os

SPIN = "1000"       # GOMP_SPINCOUNT: spin iterations before a waiting thread sleeps


def wait_briefly() -> None:
    os.environ.setdefault("GOMP_SPINCOUNT", SPIN)
