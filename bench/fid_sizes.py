"""`python -m bench.fid_sizes [--cache-dir cache]`: how many images a task needs before its FID
ranks it among the demo tasks as 1,000 images do, the measurement behind `analysis.advise`'s
MIN_IMAGES. For each size n, 10 random subsets of n images of each demo task (and of n upstream
images) give each task one FID; per subset, the Spearman rank correlation of the seven FIDs
with their FIDs at 1,000 images (mean of 5 subsets), and whether every task stays on the same
side of the median as at 1,000 (the side the paper's rule reads). Backbone features of the demo
ViT; prints one line per n."""
from __future__ import annotations

import argparse

import numpy as np
from scipy.stats import spearmanr

from analysis import fid
from study.studies import DEMO_BACKBONE
from tasks import get_task, load_split, tasks_in_suite
from tasks.prepare import prepare
from tasks.views import evaluation_images

SIZES = (25, 50, 90, 100, 150, 200, 300, 500)
SUBSETS = 10


def draw(a: np.ndarray, b: np.ndarray, n: int, seed: int) -> float:
    rng = np.random.default_rng([seed, n, 7])
    return fid.frechet(a[rng.choice(len(a), n, replace=False)],
                       b[rng.choice(len(b), n, replace=False)])


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--cache-dir", default="cache")
    args = parser.parse_args(argv)
    prepare(get_task("upstream"), args.cache_dir)
    features = fid.backbone(DEMO_BACKBONE, args.cache_dir)
    kind = f"backbone-{DEMO_BACKBONE.tag}"
    reference = fid.cached(features, kind, load_split(args.cache_dir, "upstream", "train")[0],
                           args.cache_dir)
    tasks = tasks_in_suite("demo")
    sets = {t: fid.cached(features, kind, evaluation_images(args.cache_dir, t, "train800val200"),
                          args.cache_dir) for t in tasks}
    full = np.array([fid.repeated(reference, sets[t], 1000, 5)["fid"] for t in tasks])
    above = full > np.median(full)
    print("at 1000: " + ", ".join(f"{t} {v:.1f}" for t, v in zip(tasks, full)))
    for n in SIZES:
        rhos, sides = [], []
        for seed in range(SUBSETS):
            values = np.array([draw(reference, sets[t], n, seed) for t in tasks])
            rhos.append(spearmanr(values, full).statistic)
            sides.append(bool(((values > np.median(values)) == above).all()))
        print(f"n={n}: spearman mean {np.mean(rhos):.3f} min {np.min(rhos):.3f}; median sides "
              f"kept in {sum(sides)}/{SUBSETS} subsets", flush=True)


if __name__ == "__main__":
    main()
