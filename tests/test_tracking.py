"""The study's MLflow writer: epoch metrics are gathered and written at most every
`flush_seconds` per trial, and none is lost at the summary or when a run ends early; a server
that never answers is waited for, then refused in one line (the outage a server comes back from
is `tests/test_cluster_faults.py`); a sqlite store that was moved or copied reads and writes its
artifacts beside it."""
from __future__ import annotations

import shutil
import time
from pathlib import Path

import pytest

from common.errors import StudyInputError
from study.tracking import PatientClient, StudyTracker
from tests.conftest import tiny_trial
from common.keys import SUMMARY


def epochs_logged(tracker: StudyTracker, run_id: str) -> list[int]:
    return [m.step for m in tracker.client.get_metric_history(run_id, "train_loss")]


def test_epoch_metrics_wait_for_the_flush_interval_then_all_arrive(tmp_path, cache_dir):
    tracker = StudyTracker("buffered", f"sqlite:///{tmp_path}/m.db", flush_seconds=3600)
    run = tracker.start(tiny_trial(cache_dir))
    for epoch in (1, 2, 3):
        tracker.record(run, {"epoch": epoch, "train_loss": 1.0 / epoch})
    assert epochs_logged(tracker, run) == []
    tracker.record(run, {SUMMARY: 1, "outcome": "finished", "final_val_acc": 50.0})
    assert epochs_logged(tracker, run) == [1, 2, 3]
    assert tracker.client.get_run(run).data.metrics["final_val_acc"] == 50.0


def test_a_run_ended_early_keeps_its_pending_epochs(tmp_path, cache_dir):
    tracker = StudyTracker("killed", f"sqlite:///{tmp_path}/m.db", flush_seconds=3600)
    run = tracker.start(tiny_trial(cache_dir))
    tracker.record(run, {"epoch": 1, "train_loss": 0.5})
    tracker.finish(run, "KILLED")
    assert epochs_logged(tracker, run) == [1]
    assert tracker.client.get_run(run).info.status == "KILLED"


def test_with_no_interval_each_epoch_is_written_at_once(tmp_path, cache_dir):
    tracker = StudyTracker("eager", f"sqlite:///{tmp_path}/m.db", flush_seconds=0)
    run = tracker.start(tiny_trial(cache_dir))
    tracker.record(run, {"epoch": 1, "train_loss": 0.5})
    assert epochs_logged(tracker, run) == [1]


def test_a_server_that_never_answers_is_waited_for_patience_seconds_then_refused(monkeypatch):
    from tests.servers import free_port
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    said = []
    client = PatientClient(f"http://127.0.0.1:{free_port()}", said.append, patience=2)
    began = time.monotonic()
    with pytest.raises(StudyInputError, match=r"has not answered for 2 s; .* run the same "
                                              r"command again"):
        client.get_experiment_by_name("demo")
    assert time.monotonic() - began >= 2
    assert len(said) == 1 and "does not answer" in said[0]
    began = time.monotonic()
    with pytest.raises(StudyInputError):                 # given up: the next call fails at once
        client.search_experiments()
    assert time.monotonic() - began < 2


def logged_card(tracker: StudyTracker) -> str:
    (run,) = tracker.client.search_runs([tracker.experiment_id], "tags.stage = 'protocol'")
    return Path(tracker.client.download_artifacts(run.info.run_id,
                                                  "protocol_card.md")).read_text()


def cards_under(folder: Path) -> list[str]:
    return sorted(p.read_text() for p in folder.rglob("protocol_card.md"))


@pytest.mark.parametrize("how", ["moved", "copied"])
def test_a_moved_or_copied_store_keeps_its_artifacts_beside_it(tmp_path, how):
    old, new = tmp_path / "project", tmp_path / "elsewhere" / "project"
    StudyTracker("moving", f"sqlite:///{old}/mlflow.db").log_card({"protocol_card.md": "one"})
    new.parent.mkdir()
    shutil.move(old, new) if how == "moved" else shutil.copytree(old, new)
    said = []
    tracker = StudyTracker("moving", f"sqlite:///{new}/mlflow.db", log=said.append)
    assert [line for line in said if f"moved from {old}" in line]
    assert logged_card(tracker) == "one"                       # read from beside it
    tracker.log_card({"protocol_card.md": "two"})              # and written there
    assert logged_card(tracker) == "two" and cards_under(new) == ["two"]
    if how == "moved":
        assert not old.exists()                                # nothing made at the old place
    else:
        assert cards_under(old) == ["one"]                     # the original is left alone
    said.clear()
    StudyTracker("moving", f"sqlite:///{new}/mlflow.db", log=said.append)
    assert said == []                                          # settled once


def test_a_store_copied_without_its_artifacts_is_refused_naming_them(tmp_path):
    old, new = tmp_path / "project", tmp_path / "copy"
    StudyTracker("alone", f"sqlite:///{old}/mlflow.db").log_card({"protocol_card.md": "one"})
    new.mkdir()
    shutil.copy(old / "mlflow.db", new / "mlflow.db")
    with pytest.raises(StudyInputError, match=f"keeps its artifacts in {old / 'mlartifacts'}, "
                                              f"not beside it: copy that folder"):
        StudyTracker("alone", f"sqlite:///{new}/mlflow.db")
