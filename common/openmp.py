"""How PyTorch's OpenMP threads wait for each other at the end of each parallel operator. The
upstream pretraining runs on every core; libgomp's default is to spin for a long while before
sleeping, so when another process (or the hypervisor) takes one core, the thread waiting on it
burns its own. A short spin keeps the speed on idle cores and loses much less on a busy one
(`python -m bench --sections contention`). It changes no number: only how threads wait. libgomp
reads the setting when it loads, so this runs before torch is imported; a value already in the
environment wins. `one_thread` runs PyTorch on one thread for work too small to share.
"""
from __future__ import annotations

import contextlib
import os

SPIN = "1000"       # GOMP_SPINCOUNT: spin iterations before a waiting thread sleeps


def wait_briefly() -> None:
    os.environ.setdefault("GOMP_SPINCOUNT", SPIN)


@contextlib.contextmanager
def one_thread():
    """PyTorch on one CPU thread (as a study's trials run by default), restored after: work too
    small to share waits on busy cores otherwise (an import's resizes ran 20 times slower so on a
    loaded two-core machine)."""
    import torch
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)
