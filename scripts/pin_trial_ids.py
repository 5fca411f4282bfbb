"""Print (or, with --write, pin into tests/data/trial_ids.json) a digest of every trial id each
registered study (and its --smoke version) would run: the tune grid, the tune stage after the
priors and the final stage at each cell's first point. A change that moves a trial id makes
existing MLflow stores run that trial again; `tests/test_trial_ids.py` fails until the change
pins the new digests here on purpose."""
from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path

PINNED = Path(__file__).resolve().parents[1] / "tests" / "data" / "trial_ids.json"


def digests() -> dict[str, dict]:
    from study.spec import all_studies, get_study
    out = {}
    for name in sorted(all_studies()):
        for smoke in (False, True):
            spec = get_study(name, smoke=smoke)
            first = spec.first_points()
            ids = sorted({c.trial_id for c in spec.tune_trials() + spec.tune_trials(first)
                          + spec.final_trials(first)})
            out[name + (" --smoke" if smoke else "")] = {
                "trials": len(ids), "sha1": hashlib.sha1("\n".join(ids).encode()).hexdigest()}
    return out


if __name__ == "__main__":
    found = json.dumps(digests(), indent=1, sort_keys=True) + "\n"
    if "--write" in sys.argv:
        PINNED.write_text(found)
    print(found, end="")
