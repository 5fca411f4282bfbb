"""A tiny study end to end through real Ray Tune trials and a real MLflow sqlite store: one run
per trial with tags, params and per-epoch metrics; nothing left RUNNING or duplicated; the
table's numbers equal the runs'; rerunning the same study runs nothing again."""
from __future__ import annotations

import re
from pathlib import Path
from types import MappingProxyType

import pandas as pd
import pytest
from mlflow.tracking import MlflowClient

from search_spaces import PROJECT_LENGTHS, Grid, SearchSpace, prompt_lengths
from study.protocol import run_study
from study.ray_runner import RayRunner
from study.spec import StudySpec
from study.summary import RULE, run_page
from study.tracking import StudyTracker
from tests.conftest import TINY_VIT

SPACE = SearchSpace("it", MappingProxyType({
    "full": Grid("it_full", "adamw", (0.002,), (0.0,)),
    "prompt": Grid("it_prompt", "sgd", (2.5, 0.5), (0.0,)),
}), prompt_lengths(PROJECT_LENGTHS))
SPEC = StudySpec(name="integration", tasks=("digits", "count"),
                 strategies=("full_ft", "vpt_deep", "linear", "ft_then_pt"),
                 backbones=(TINY_VIT,), search_space=SPACE, epochs=2, warmup_epochs=1,
                 seeds=(42, 44), knobs={"prompt_dropout": 0.1})
FIRST_TUNE_TRIALS = 2 * (1 + 2 + 2)             # then FT-then-PT's, from full_ft's selection
TUNE_TRIALS = FIRST_TUNE_TRIALS + 2 * 2
FINAL_TRIALS = 2 * 4 * 2


@pytest.fixture(scope="module")
def study(tmp_path_factory, cache_dir):
    folder = tmp_path_factory.mktemp("study")
    uri = f"sqlite:///{folder}/mlflow.db"
    tracker = StudyTracker(SPEC.name, uri)
    runner = RayRunner(tracker, storage_path=str(folder / "ray"))
    first_log, second_log = [], []
    try:
        table = run_study(SPEC, runner, tracker, cache_dir, log=first_log.append).single
        again = run_study(SPEC, runner, tracker, cache_dir, log=second_log.append).single
    finally:
        runner.shutdown()
    every = MlflowClient(uri).search_runs([tracker.experiment_id], max_results=1000)
    runs = [r for r in every if r.data.tags.get("stage") in ("tune", "final")]
    cards = [r for r in every if r.data.tags.get("stage") == "protocol"]
    return dict(table=table, again=again, runs=runs, cards=cards, client=MlflowClient(uri),
                experiment=tracker.experiment_id,
                first_log=first_log, second_log=second_log)


def test_exactly_one_finished_run_per_trial(study):
    runs = study["runs"]
    assert len(runs) == TUNE_TRIALS + FINAL_TRIALS
    assert {r.info.status for r in runs} == {"FINISHED"}
    ids = [r.data.tags["trial_id"] for r in runs]
    assert len(set(ids)) == len(ids)
    stages = pd.Series([r.data.tags["stage"] for r in runs]).value_counts()
    assert stages["tune"] == TUNE_TRIALS and stages["final"] == FINAL_TRIALS


def test_the_protocol_card_is_the_experiments_description_and_an_artifact(study):
    assert len(study["cards"]) == 1                    # logged again by the rerun, same run
    client = study["client"]
    answer, rule, note = client.get_experiment(study["experiment"]).tags[
        "mlflow.note.content"].partition(RULE)
    assert answer.startswith("**The answer: [integration: results]") and rule   # above the card
    assert note.startswith("**integration**") and "# Protocol card: integration" in note
    assert "| optimizer | full_ft |" in note
    names = {a.path for a in client.list_artifacts(study["cards"][0].info.run_id)}
    assert names == {"protocol_card.md", "protocol_card.csv"}


def test_runs_carry_tags_params_and_per_epoch_metrics(study):
    run = next(r for r in study["runs"] if r.data.tags["stage"] == "final"
               and r.data.tags["strategy"] == "vpt_deep")
    tags, params, metrics = run.data.tags, run.data.params, run.data.metrics
    assert {"study", "stage", "setting", "task", "group", "strategy", "backbone", "seed",
            "trial_id", "ray_trial_id", "outcome"} <= set(tags)
    assert tags["backbone"] == "tiny-test-vit" and tags["outcome"] == "finished"
    assert {"base_lr", "lr", "weight_decay", "batch_size", "epochs", "prompt_length",
            "optimizer", "train_size"} <= set(params)
    assert params["train_size"] == "1000" and params["optimizer"] == "sgd"
    assert {"final_test_acc", "trainable_params", "total_params", "tuned_percent",
            "wall_seconds", "images_per_second"} <= set(metrics)
    history = study["client"].get_metric_history(run.info.run_id, "test_acc")
    assert sorted(m.step for m in history) == [1, 2]
    assert max(history, key=lambda m: m.step).value == metrics["final_test_acc"]


def test_table_numbers_equal_the_runs(study):
    table = study["table"]
    finals = [r for r in study["runs"] if r.data.tags["stage"] == "final"]
    frame = pd.DataFrame([{"strategy": r.data.tags["strategy"], "task": r.data.tags["task"],
                           "acc": r.data.metrics["final_test_acc"]} for r in finals])
    expected = frame.groupby(["strategy", "task"])["acc"].mean()
    for (strategy, task), value in expected.items():
        assert table.mean.loc[strategy, task] == pytest.approx(value)
    assert (table.seeds == 2).all().all()
    assert list(table.cells.index[:3]) == ["full_ft", "vpt_deep", "linear"]


def test_selection_uses_val_and_final_uses_the_selected_lr(study):
    tune = [r for r in study["runs"] if r.data.tags["stage"] == "tune"]
    final = [r for r in study["runs"] if r.data.tags["stage"] == "final"]
    for task in SPEC.tasks:
        cell = [r for r in tune if r.data.tags["task"] == task
                and r.data.tags["strategy"] == "vpt_deep"]
        best = max(cell, key=lambda r: (r.data.metrics["final_val_acc"],
                                        -float(r.data.params["base_lr"])))
        used = {r.data.params["base_lr"] for r in final if r.data.tags["task"] == task
                and r.data.tags["strategy"] == "vpt_deep"}
        assert used == {best.data.params["base_lr"]}


def test_rerunning_the_study_runs_nothing_again(study):
    assert f"[tune] {FIRST_TUNE_TRIALS} trials: {FIRST_TUNE_TRIALS} already finished, 0 to " \
        f"run" in study["second_log"]
    assert f"[final] {FINAL_TRIALS} trials: {FINAL_TRIALS} already finished, 0 to run" \
        in study["second_log"]
    pd.testing.assert_frame_equal(study["again"].cells, study["table"].cells)


def test_runs_carry_their_stage_parent_provenance_and_the_selection(study):
    import importlib.metadata
    client, experiment = study["client"], study["experiment"]
    assert client.get_experiment(experiment).tags["mlflow.experimentKind"] == \
        "custom_model_development"                   # the UI opens on the runs
    every = client.search_runs([experiment], max_results=1000)
    parents = [r for r in every if "parent_of" in r.data.tags]
    assert sorted(r.data.tags["parent_of"] for r in parents) == ["final", "tune"]  # reused
    parent_of = {r.data.tags["parent_of"]: r.info.run_id for r in parents}
    assert {r.info.status for r in parents} == {"FINISHED"}
    for run in study["runs"]:
        tags = run.data.tags
        assert tags["mlflow.parentRunId"] == parent_of[tags["stage"]]
        assert re.fullmatch(r"[0-9a-f]{40}", tags["mlflow.source.git.commit"])
        assert tags["git_dirty"] in ("true", "false")
        assert tags["version.torch"] == importlib.metadata.version("torch")
        assert tags["mlflow.runName"].startswith(f"{tags['task']}/{tags['strategy']}/"
                                                 f"{tags['stage']}/")
    tune = [r for r in study["runs"] if r.data.tags["stage"] == "tune"]
    final = [r for r in study["runs"] if r.data.tags["stage"] == "final"]
    for task in SPEC.tasks:
        for strategy in SPEC.strategies:
            cell = [r for r in tune if (r.data.tags["task"], r.data.tags["strategy"]) ==
                    (task, strategy)]
            best = max(cell, key=lambda r: (r.data.metrics["final_val_acc"],
                                            -float(r.data.params["base_lr"])))
            assert [r.info.run_id for r in cell if r.data.tags.get("selected") == "true"] == \
                [best.info.run_id]
            sources = {r.data.tags["selected_from"] for r in final
                       if (r.data.tags["task"], r.data.tags["strategy"]) == (task, strategy)}
            assert sources == {best.info.run_id}


def test_ft_then_pt_s_tune_runs_replay_the_selected_full_ft_tune_run_and_say_which(study):
    tune = [r for r in study["runs"] if r.data.tags["stage"] == "tune"]
    chosen = {r.data.tags["task"]: r.info.run_id for r in tune
              if r.data.tags["strategy"] == "full_ft" and r.data.tags.get("selected") == "true"}
    replaying = [r for r in tune if r.data.tags["strategy"] == "ft_then_pt"]
    assert replaying and {r.data.tags["prior"] for r in replaying} == {"replayed"}
    for run in replaying:
        assert run.data.tags["prior_from"] == chosen[run.data.tags["task"]]


def test_ft_then_pt_s_final_runs_replay_full_ft_s_and_say_which(study, cache_dir):
    final = {(r.data.tags["task"], r.data.tags["strategy"], r.data.tags["seed"]): r
             for r in study["runs"] if r.data.tags["stage"] == "final"}
    replayed = [(key, run) for key, run in final.items()
                if key[1] == "ft_then_pt" and run.data.tags["prior"] == "replayed"]
    assert replayed          # queued after every full_ft run: in practice all of them replay
    for (task, _, seed), run in replayed:
        assert run.data.tags["prior_from"] == final[(task, "full_ft", seed)].info.run_id
    assert all("prior" not in run.data.tags for key, run in final.items()
               if key[1] != "ft_then_pt")
    assert not (Path(cache_dir) / "priors" / "final").exists()     # gone with the stage


def test_the_summary_run_comes_first_and_links_each_cells_selected_run(study):
    client, experiment = study["client"], study["experiment"]
    top = [r for r in client.search_runs([experiment], max_results=1000)
           if "mlflow.parentRunId" not in r.data.tags]           # newest first, as the UI lists
    assert [r.data.tags["mlflow.runName"] for r in top][:1] == ["integration: results"]
    assert [r.data.tags.get("stage") for r in top].count("summary") == 1    # reused by the rerun
    summary = top[0]
    table = study["table"]
    for (strategy, task), mean in table.mean.stack().items():
        assert summary.data.metrics[f"test_acc/{task}/{strategy}"] == pytest.approx(mean)
    selected = [r for r in study["runs"] if r.data.tags.get("selected") == "true"]
    assert len(selected) == len(SPEC.tasks) * len(SPEC.strategies)
    for run in selected:
        assert f"]({run_page(experiment, run.info.run_id, mode=False)})" in summary.data.tags[
            "mlflow.note.content"]
    path = client.download_artifacts(summary.info.run_id, "selection.csv")
    chosen = pd.read_csv(path).set_index("tune_run")
    assert set(chosen.index) == {r.info.run_id for r in selected}
    finals = {r.info.run_id: r.data.tags["selected_from"] for r in study["runs"]
              if r.data.tags["stage"] == "final"}
    for tune_run, row in chosen.iterrows():
        assert set(row["final_runs"].split()) == {f for f, s in finals.items() if s == tune_run}
