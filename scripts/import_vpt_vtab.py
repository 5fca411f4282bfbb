"""Imports the VPT paper's per-task VTAB-1k numbers (Jia et al., ECCV 2022, arXiv 2203.12119:
ViT-B/16 ImageNet-21k; Full, Linear, VPT-shallow, VPT-deep, each the mean of three runs) into
analysis/data/vpt_vtab.csv, once. The rows are read from the table of V-PETL Bench's README
(github synbol/Parameter-Efficient-Transfer-Learning-Benchmark, README.md:413-419), which lists
them for those four methods; the paper's own PDF is not stored here, so the transcription is
theirs, and the CSV names the commit and lines it came from. Each method's mean over the 19 tasks
equals the README's own Mean column (65.57, 52.94, 64.85, 69.43), which the import checks.

    python scripts/import_vpt_vtab.py \
        /work/.mirror/synbol+Parameter-Efficient-Transfer-Learning-Benchmark/repo c188fad
"""
from __future__ import annotations

import argparse
import csv
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tasks import get_task  # noqa: E402

OUT = ROOT / "analysis" / "data" / "vpt_vtab.csv"
HEADER_LINE = 413                # the table's header row in README.md at c188fad
METHODS = {"Full fine-tuning": "full", "Linear probing": "linear", "VPT-Shallow": "vpt_shallow",
           "VPT-Deep": "vpt_deep"}
TASKS = ("cifar100", "caltech101", "dtd", "oxford_flowers102", "oxford_iiit_pet", "svhn", "sun397",
         "patch_camelyon", "eurosat", "resisc45", "diabetic_retinopathy", "clevr_count",
         "clevr_distance", "dmlab", "kitti_distance", "dsprites_location", "dsprites_orientation",
         "smallnorb_azimuth", "smallnorb_elevation")     # the README's column order
COLUMNS = ("task", "group", "method", "accuracy", "origin")


def import_table(repo: Path, commit: str) -> list[dict]:
    full = subprocess.run(["git", "--git-dir", str(repo), "rev-parse", f"{commit}^{{commit}}"],
                          check=True, capture_output=True, text=True).stdout.strip()
    lines = subprocess.run(["git", "--git-dir", str(repo), "show", f"{full}:README.md"],
                           check=True, capture_output=True, text=True).stdout.splitlines()
    header = [c.strip() for c in lines[HEADER_LINE - 1].strip("|").split("|")]
    if header[1:20] != ["CIFAR-100", "Caltech101", "DTD", "Flowers102", "Pets", "SVHN", "Sun397",
                        "Patch Camelyon", "EuroSAT", "Resisc45", "Retinopathy", "Clevr/count",
                        "Clevr/distance", "DMLab", "KITTI/distance", "dSprites/loc",
                        "dSprites/ori", "SmallNORB/azi", "SmallNORB/ele"]:
        raise SystemExit(f"README.md:{HEADER_LINE} is not the VTAB table's header: {header}")
    rows = []
    for number, line in enumerate(lines[HEADER_LINE + 1:HEADER_LINE + 12], HEADER_LINE + 2):
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if cells[0] not in METHODS:
            continue
        if abs(sum(map(float, cells[1:20])) / 19 - float(cells[20])) > 0.006:
            raise SystemExit(f"README.md:{number}: the 19 numbers do not average to {cells[20]}")
        origin = (f"VPT (Jia et al. 2022) as listed in synbol/Parameter-Efficient-Transfer-"
                  f"Learning-Benchmark@{full[:7]} README.md:{number}")
        rows += [{"task": task, "group": get_task(task).group, "method": METHODS[cells[0]],
                  "accuracy": float(value), "origin": origin}
                 for task, value in zip(TASKS, cells[1:20])]
    if {r["method"] for r in rows} != set(METHODS.values()):
        raise SystemExit(f"not every method found under README.md:{HEADER_LINE}")
    return rows


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("repo", type=Path, help="V-PETL Bench's git directory (bare or .git)")
    parser.add_argument("commit", nargs="?", default="c188fad")
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args(argv)
    rows = import_table(args.repo, args.commit)
    with open(args.out, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=COLUMNS, lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
    print(f"wrote {len(rows)} rows to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
