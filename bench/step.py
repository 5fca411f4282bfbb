"""`python -m bench.step THREADS BATCH STEPS`: milliseconds per demo-ViT full_ft training step on
THREADS CPU threads (on the CPU even where a GPU is), printed alone. A process of its own, so that
the OpenMP settings in its environment take effect (libgomp reads them when it loads): the
`contention` section runs it."""
from __future__ import annotations

import sys
import time

import torch

from bench.measure import CPU, DEMO, config, training_step


def main(argv: list[str]) -> int:
    threads, batch, steps = (int(a) for a in argv)
    torch.set_num_threads(threads)
    step = training_step(config(DEMO, "full_ft", ""), batch, None, on=CPU)
    began = time.perf_counter()
    for _ in range(steps):
        step()
    print(f"{1000 * (time.perf_counter() - began) / steps:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
