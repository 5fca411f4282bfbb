"""Imports PETL_Vision's stored VTAB-1k results (Mai et al., CVPR 2025; github OSU-MLB/PETL_Vision)
into analysis/data/petl_vision_vtab.csv, once: one row per (task, method) from
tune_output/default_vtab/processed_vtab/<task>/<method>/ at a given commit of a local clone (a bare
git directory will do), read with `git show`, so the CSV names the exact commit it came from.

Per row: the task's slug here (`tasks.spec`) beside PETL_Vision's name; `accuracy`, the last-epoch
test top-1 of its final run (final_result.json `avg_acc`, experiment/run.py:151,155);
`best_accuracy`, the best test top-1 over that run's epochs (`avg_best_acc`, read from the test
set, kept for the record only); `inserted_parameters`, the trainable parameters without the head
(utils/log_utils.py:73); the selected lr, wd and method knobs (`best_tune`, as JSON); the val top-1
the selected point had in tuning and how many points were tuned (tune_summary.csv); and every test
top-1 final_summary.csv holds (one per final run: a task rerun after a crash holds two). Their
`cifar_aug_norm` folder (CIFAR-100 with other preprocessing) is not a VTAB-1k task and is left out.

    python scripts/import_petl_vision.py /work/.mirror/OSU-MLB+PETL_Vision/repo 245d262
"""
from __future__ import annotations

import argparse
import csv
import io
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tasks import get_task  # noqa: E402

RESULTS = "tune_output/default_vtab/processed_vtab"
OUT = ROOT / "analysis" / "data" / "petl_vision_vtab.csv"
TASKS = {                       # PETL_Vision's name (utils/global_var.py:26-30) -> slug here
    "cifar": "cifar100", "caltech101": "caltech101", "dtd": "dtd",
    "oxford_flowers102": "oxford_flowers102", "oxford_iiit_pet": "oxford_iiit_pet",
    "svhn": "svhn", "sun397": "sun397", "patch_camelyon": "patch_camelyon",
    "eurosat": "eurosat", "resisc45": "resisc45", "diabetic_retinopathy": "diabetic_retinopathy",
    "clevr_count": "clevr_count", "clevr_dist": "clevr_distance", "dmlab": "dmlab",
    "kitti": "kitti_distance", "dsprites_loc": "dsprites_location",
    "dsprites_ori": "dsprites_orientation", "smallnorb_azi": "smallnorb_azimuth",
    "smallnorb_ele": "smallnorb_elevation"}
LEFT_OUT = {"cifar_aug_norm"}
COLUMNS = ("task", "group", "petl_task", "method", "accuracy", "best_accuracy",
           "inserted_parameters", "lr", "wd", "knobs", "selected_val_accuracy", "tune_points",
           "final_test_accuracies", "source_commit")


def git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", "--git-dir", str(repo), *args], check=True,
                          capture_output=True, text=True).stdout


def rows_of(text: str) -> list[dict]:
    """The rows of a summary CSV; a file appended to by a rerun repeats its header line."""
    lines = text.splitlines()
    header = lines[0]
    return list(csv.DictReader(io.StringIO("\n".join(
        [header] + [line for line in lines[1:] if line != header]))))


def import_results(repo: Path, commit: str) -> list[dict]:
    full = git(repo, "rev-parse", f"{commit}^{{commit}}").strip()
    paths = git(repo, "ls-tree", "-r", "--name-only", full, RESULTS).split()
    folders = sorted({tuple(p.split("/")[3:5]) for p in paths if p.endswith("final_result.json")})
    unknown = {task for task, _ in folders} - set(TASKS) - LEFT_OUT
    if unknown:
        raise SystemExit(f"tasks without a slug here: {sorted(unknown)}")
    out = []
    for task, method in folders:
        if task in LEFT_OUT:
            continue
        folder = f"{full}:{RESULTS}/{task}/{method}"
        result = json.loads(git(repo, "show", f"{folder}/final_result.json"))
        best = dict(result["best_tune"])
        tuned = rows_of(git(repo, "show", f"{folder}/tune_summary.csv"))
        selected = [r for r in tuned if eval(r["param_set"], {}) == best]   # a dict literal
        finals = rows_of(git(repo, "show", f"{folder}/final_summary.csv"))
        slug = TASKS[task]
        out.append({
            "task": slug, "group": get_task(slug).group, "petl_task": task, "method": method,
            "accuracy": result["avg_acc"], "best_accuracy": result.get("avg_best_acc", ""),
            "inserted_parameters": result["inserted_parameters"],
            "lr": best.pop("lr"), "wd": best.pop("wd"), "knobs": json.dumps(best, sort_keys=True),
            "selected_val_accuracy": selected[0]["val_top1"] if selected else "",
            "tune_points": len(tuned),
            "final_test_accuracies": ";".join(r["test_top1"] for r in finals),
            "source_commit": full})
    return out


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("repo", type=Path, help="PETL_Vision's git directory (bare or .git)")
    parser.add_argument("commit", nargs="?", default="245d262")
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args(argv)
    rows = import_results(args.repo, args.commit)
    with open(args.out, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=COLUMNS, lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
    print(f"wrote {len(rows)} rows ({len({r['task'] for r in rows})} tasks x "
          f"{len({r['method'] for r in rows})} methods) to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
