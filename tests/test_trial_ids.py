"""A trial's id keys its MLflow run: a rerun skips the trials whose ids the store holds. Every
registered study's trial ids are pinned (tests/data/trial_ids.json, made by
`python scripts/pin_trial_ids.py --write`), so that a refactoring cannot silently make existing
stores run everything again; a change that means to alter what a trial computes pins anew."""
from __future__ import annotations

import json

from scripts.pin_trial_ids import PINNED, digests


def test_every_studys_trial_ids_are_the_pinned_ones():
    pinned = json.loads(PINNED.read_text())
    found = digests()
    assert {name: found.get(name) for name in pinned} == pinned
