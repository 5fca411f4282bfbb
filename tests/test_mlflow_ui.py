"""What a user sees at the addresses `study run` prints, checked in the MLflow UI served over a
study's store and rendered by a real headless Chromium (Debian's package, which
`tests/install_debian_packages.sh` installs): the summary run's page holds the study's table and
links each cell's selected run; the saved view of the runs table lists the summary run first,
with the accuracy columns. The store holds tune and final runs with known numbers, written as a
study writes them."""
from __future__ import annotations

import pytest

from common.keys import SUMMARY
from results.runs import load_runs
from results.table import paper_tables
from study.summary import run_page, runs_page, write_summary
from study.tracking import StudyTracker
from tests.conftest import tiny_trial
from tests.servers import MlflowServer, dump_dom
from trainables.config import Recipe

STUDY = "ui"
VAL = {("cifar100", "full_ft"): (70.0, 72.0), ("cifar100", "vpt_deep"): (80.0, 75.0),
       ("clevr_count", "full_ft"): (60.0, 55.0), ("clevr_count", "vpt_deep"): (40.0, 45.0)}

pytestmark = pytest.mark.cluster


def logged(tracker, cfg, metrics: dict) -> str:
    run = tracker.start(cfg)
    tracker.record(run, {SUMMARY: 1, "outcome": "finished", "tuned_percent": 1.0, **metrics})
    tracker.finish(run, "FINISHED")
    return run


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    folder = tmp_path_factory.mktemp("ui")
    uri = f"sqlite:///{folder}/mlflow.db"
    tracker = StudyTracker(STUDY, uri)
    for stage in ("tune", "final"):
        tracker.open_stage(stage)
    for (task, strategy), vals in VAL.items():
        chosen = None
        for lr, val in zip((0.1, 0.01), vals):
            cfg = tiny_trial("", strategy, study=STUDY, task=task,
                             recipe=Recipe("sgd", lr, 0.0, 2, 1, 64))
            run = logged(tracker, cfg, {"final_val_acc": val})
            chosen = run if val == max(vals) else chosen
        tracker.client.set_tag(chosen, "selected", "true")
        for seed, acc in ((42, vals[0] - 1), (44, vals[0] + 1)):
            cfg = tiny_trial("", strategy, study=STUDY, task=task, stage="final", seed=seed,
                             train_split="train800val200", eval_split="test")
            final = logged(tracker, cfg, {"final_test_acc": acc})
            tracker.client.set_tag(final, "selected_from", chosen)
    for stage in ("tune", "final"):
        tracker.close_stage(stage)
    runs = load_runs(STUDY, uri)
    tables = paper_tables(runs[runs["stage"] == "final"], tune_runs=runs[runs["stage"] == "tune"])
    summary = write_summary(tracker.client, tracker.experiment_id, STUDY, runs, tables)
    server = MlflowServer(uri, folder / "served")
    try:
        server.start()
        yield server, tracker.experiment_id, summary, runs, tables.single
    finally:
        server.stop()


def test_the_printed_address_opens_on_the_studys_table_and_its_selected_runs(served,
                                                                             tmp_path):
    server, experiment, summary, runs, table = served
    page = dump_dom(f"{server.uri}/{run_page(experiment, summary)}", tmp_path / "browser")
    assert f"{STUDY}: results" in page
    for (task, strategy), _ in VAL.items():
        assert table.cells.loc[strategy, task] in page              # the table itself
    for run_id in runs[runs["selected"] == "true"]["run_id"]:
        assert f"runs/{run_id}" in page                              # each cell's selected run


def test_the_saved_runs_view_lists_the_summary_first_with_accuracy_columns(served, tmp_path):
    server, experiment, *_ = served
    page = dump_dom(f"{server.uri}/{runs_page(experiment)}", tmp_path / "browser")
    assert "final_test_acc" in page and "final_val_acc" in page     # the saved columns
    order = [page.find(name) for name in (f"{STUDY}: results", f"{STUDY}: final stage",
                                          f"{STUDY}: tune stage")]
    assert -1 not in order and order == sorted(order)               # the answer on top
