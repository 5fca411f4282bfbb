"""What a user sees at the addresses `study run` prints, checked in the MLflow UI served over the
smoke study's store and rendered by a real headless Chromium (Debian's package, which
`tests/install_debian_packages.sh` installs): the summary run's page holds the study's table and
links each cell's selected run; the saved view of the runs table lists the summary run first,
with the accuracy columns."""
from __future__ import annotations

import pytest
from mlflow.tracking import MlflowClient

from study.summary import find_summary, run_page, runs_page
from tests.servers import STUDY, MlflowServer, dump_dom, table

pytestmark = pytest.mark.cluster


@pytest.fixture(scope="module")
def served(smoke_reference, tmp_path_factory):
    _, uri = smoke_reference
    server = MlflowServer(uri, tmp_path_factory.mktemp("served"))
    try:
        server.start()
        yield server, uri
    finally:
        server.stop()


def test_the_printed_address_opens_on_the_studys_table_and_its_selected_runs(served,
                                                                             tmp_path):
    server, uri = served
    client = MlflowClient(uri)
    experiment = client.get_experiment_by_name(STUDY).experiment_id
    summary = find_summary(client, experiment)
    page = dump_dom(f"{server.uri}/{run_page(experiment, summary)}", tmp_path / "browser")
    assert f"{STUDY}: results" in page
    cells = table(uri)[0].cells
    for strategy in ("full_ft", "vpt_deep", "linear"):
        for task in ("digits", "count"):
            assert cells.loc[strategy, task] in page                 # the table itself
    runs = table(uri)[1]
    for run_id in runs[runs["selected"] == "true"]["run_id"]:
        assert f"runs/{run_id}" in page                               # each cell's selected run


def test_the_saved_runs_view_lists_the_summary_first_with_accuracy_columns(served, tmp_path):
    server, uri = served
    experiment = MlflowClient(uri).get_experiment_by_name(STUDY).experiment_id
    page = dump_dom(f"{server.uri}/{runs_page(experiment)}", tmp_path / "browser")
    assert "final_test_acc" in page and "final_val_acc" in page      # the saved columns
    order = [page.find(name) for name in (f"{STUDY}: results", f"{STUDY}: final stage",
                                          f"{STUDY}: tune stage")]
    assert -1 not in order and order == sorted(order)                # the answer on top
