"""The analysis verbs on a real MLflow store holding runs with known numbers: every verb writes
its files (figures as PNG and PDF, tables as CSV and markdown) and logs them to the study's
analysis run, and the numbers in its tables equal what the runs hold; FID matches the closed form
for two Gaussians."""
from __future__ import annotations

import re
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from mlflow.tracking import MlflowClient

from analysis import fid
from analysis.__main__ import main as analysis_main
from common.errors import StudyInputError
from common.keys import SUMMARY
from results.runs import load_runs
from tasks import get_task
from study.tracking import StudyTracker
from tests.conftest import TINY_VIT, tiny_trial
from trainables.config import Recipe

ACC = {("cifar100", "full_ft"): (60.0, 62.0), ("cifar100", "vpt_deep"): (75.0, 77.0),
       ("clevr_count", "full_ft"): (50.0, 51.0), ("clevr_count", "vpt_deep"): (50.5, 50.0)}


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    folder = tmp_path_factory.mktemp("analysis")
    uri = f"sqlite:///{folder}/mlflow.db"
    tracker = StudyTracker("made", uri)
    for (task, strategy), accs in ACC.items():
        for seed, acc in zip((42, 44), accs):
            cfg = tiny_trial("", strategy, study="made", stage="final", task=task, seed=seed,
                             train_split="train800val200", eval_split="test")
            run = tracker.start(cfg)
            rising = task == "clevr_count" and strategy == "full_ft"
            for epoch in (1, 2, 3):
                test_loss = 1.0 + (0.5 * epoch if rising else -0.1 * epoch)
                tracker.record(run, {"epoch": epoch, "train_loss": 2.0 / epoch,
                                     "test_loss": test_loss, "test_acc": acc})
            tracker.record(run, {SUMMARY: 1, "outcome": "finished", "final_test_acc": acc,
                                 "tuned_percent": 1.0, "train_size": 1000})
            tracker.finish(run, "FINISHED")
    return uri, folder


def run_verb(store, verb, *extra):
    uri, folder = store
    out = folder / "out"
    code = analysis_main([verb, "made", "--tracking-uri", uri, "--out", str(out), *extra])
    return code, out


def logged(store) -> set[str]:
    client = MlflowClient(store[0])
    experiment = client.get_experiment_by_name("made")
    run = client.search_runs([experiment.experiment_id], "tags.stage = 'summary'")[0]
    return {a.path for a in client.list_artifacts(run.info.run_id)}


def test_frechet_distance_matches_the_closed_form_for_two_gaussians():
    rng = np.random.default_rng(0)
    mu_a, mu_b = np.array([0.0, 1.0, 2.0]), np.array([1.0, 1.0, 0.0])
    sd_a, sd_b = np.array([1.0, 2.0, 0.5]), np.array([2.0, 1.0, 0.5])
    a = rng.normal(mu_a, sd_a, size=(200_000, 3))
    b = rng.normal(mu_b, sd_b, size=(200_000, 3))
    closed = ((mu_a - mu_b) ** 2).sum() + ((sd_a - sd_b) ** 2).sum()      # diagonal covariances
    assert fid.frechet(a, b) == pytest.approx(closed, rel=0.02)
    assert fid.frechet(a, a) == pytest.approx(0.0, abs=1e-6)


def fid_inception_with_random_weights():
    """pytorch-fid's FID Inception (pytorch_fid/inception.py, `fid_inception_v3`) without its
    download: the same blocks, random weights."""
    import pytorch_fid.inception as pf
    from torchvision.models.inception import inception_v3
    model = inception_v3(weights=None, aux_logits=False, num_classes=1008, init_weights=False)
    model.Mixed_5b, model.Mixed_5c = pf.FIDInceptionA(192, 32), pf.FIDInceptionA(256, 64)
    model.Mixed_5d = pf.FIDInceptionA(288, 64)
    for name, channels in (("Mixed_6b", 128), ("Mixed_6c", 160), ("Mixed_6d", 160),
                           ("Mixed_6e", 192)):
        setattr(model, name, pf.FIDInceptionC(768, channels))
    model.Mixed_7b, model.Mixed_7c = pf.FIDInceptionE_1(1280), pf.FIDInceptionE_2(2048)
    return model


def test_inception_features_read_the_local_weights_file_and_leave_torch_hub_as_it_was(tmp_path):
    import torch
    hub = torch.hub.get_dir()
    images = np.random.default_rng(0).integers(0, 256, (2, 32, 32, 3), dtype=np.uint8)
    outputs = []
    for seed in (0, 1):
        torch.manual_seed(seed)
        path = tmp_path / f"weights{seed}.pth"
        torch.save(fid_inception_with_random_weights().state_dict(), path)
        outputs.append(fid.inception(path)(images))
        assert torch.hub.get_dir() == hub
    assert outputs[0].shape == (2, 2048) and np.isfinite(outputs[0]).all()
    assert not np.allclose(outputs[0], outputs[1])          # each file's own weights
    with pytest.raises(StudyInputError, match="do not exist"):
        fid.inception(tmp_path / "missing.pth")


def test_backbone_features_fid_is_cached_and_orders_distances(cache_dir, tmp_path):
    from tasks import load_split
    features = fid.backbone(TINY_VIT, cache_dir)
    digits = load_split(cache_dir, "digits", "train800")[0]
    count = load_split(cache_dir, "count", "train800")[0]
    a = fid.cached(features, "tiny", digits[:400], tmp_path)
    assert len(list((tmp_path / "features" / "tiny").iterdir())) == 1
    np.testing.assert_array_equal(a, fid.cached(features, "tiny", digits[:400], tmp_path))
    near = fid.frechet(a, fid.cached(features, "tiny", digits[400:], tmp_path))
    far = fid.frechet(a, fid.cached(features, "tiny", count[:400], tmp_path))
    assert near < far


def test_wins_equal_the_runs_and_say_when_two_seeds_cannot_tell(store):
    code, out = run_verb(store, "wins")
    assert code == 0
    per_task = pd.read_csv(out / "wins_per_task.csv").set_index("task")
    assert per_task.loc["cifar100", "difference"] == pytest.approx(76.0 - 61.0)
    assert per_task.loc["clevr_count", "difference"] == pytest.approx(50.25 - 50.5)
    assert set(per_task["verdict"]) == {"too few seeds to tell"}           # two seeds each
    assert {"wins_per_task.csv", "wins_per_group.md"} <= logged(store)


PETL = pd.read_csv(Path(__file__).resolve().parents[1] / "analysis" / "data" /
                   "petl_vision_vtab.csv").set_index(["task", "method"])["accuracy"]
# Ours relative to PETL_Vision's number: far above, about equal, far below, and two seeds only.
OFFSETS = {("cifar100", "full_ft"): (9.5, 10.0, 10.5), ("caltech101", "full_ft"): (-1.0, 0.0, 1.0),
           ("eurosat", "full_ft"): (-10.5, -10.0, -9.5), ("clevr_count", "full_ft"): (0.0, 2.0),
           ("cifar100", "vpt_deep"): (9.0, 10.0, 11.0)}
PETL_METHOD = {"full_ft": "full", "vpt_deep": "vpt_deep"}


@pytest.fixture(scope="module")
def vtab_store(tmp_path_factory):
    """Final runs of a ViT-B/16-family backbone on four VTAB-1k tasks of all three groups, at
    known offsets from PETL_Vision's numbers."""
    folder = tmp_path_factory.mktemp("vtab")
    uri = f"sqlite:///{folder}/mlflow.db"
    tracker = StudyTracker("vtab", uri)
    backbone = replace(TINY_VIT, label="vit_b16-in21k-petl")
    for (task, strategy), offsets in OFFSETS.items():
        for seed, offset in zip((42, 210, 420), offsets):
            cfg = tiny_trial("", strategy, study="vtab", stage="final", task=task, seed=seed,
                             backbone=backbone, train_split="train800val200", eval_split="test")
            run = tracker.start(cfg)
            tracker.record(run, {SUMMARY: 1, "outcome": "finished", "tuned_percent": 1.0,
                                 "final_test_acc": PETL[(task, PETL_METHOD[strategy])] + offset})
            tracker.finish(run, "FINISHED")
    return uri, folder


def test_compare_petl_gives_ours_theirs_and_a_verdict_from_the_seeds_interval(vtab_store):
    from scipy import stats
    uri, folder = vtab_store
    out = folder / "petl"
    assert analysis_main(["compare", "petl", "vtab", "--tracking-uri", uri, "--out",
                          str(out)]) == 0
    table = pd.read_csv(out / "compare_with_petl.csv").set_index(["task", "strategy"])
    assert len(table) == len(OFFSETS)
    row = table.loc[("cifar100", "full_ft")]
    assert (row["theirs"], row["seeds"], row["method"]) == (PETL[("cifar100", "full")], 3, "full")
    assert row["ours"] == pytest.approx(PETL[("cifar100", "full")] + 10.0, abs=0.005)
    assert row["ours_std"] == 0.5 and row["difference"] == pytest.approx(10.0, abs=0.01)
    # one published run spread as our three seeds: t(2) * s * sqrt(1/3 + 1)
    half = stats.t.ppf(0.975, 2) * 0.5 * np.sqrt(1 / 3 + 1)
    assert (row["ci_low"], row["ci_high"]) == (pytest.approx(10 - half, abs=0.01),
                                               pytest.approx(10 + half, abs=0.01))
    assert table["verdict"].to_dict() == {
        ("cifar100", "full_ft"): "ours higher", ("caltech101", "full_ft"): "within noise",
        ("eurosat", "full_ft"): "ours lower", ("clevr_count", "full_ft"): "too few seeds to tell",
        ("cifar100", "vpt_deep"): "ours higher"}
    agreement = pd.read_csv(out / "winner_agreement_with_petl.csv").set_index("task")
    won = PETL[("cifar100", "vpt_deep")] > PETL[("cifar100", "full")]
    assert agreement.loc["cifar100", "source"] == ("win" if won else "loss")


def test_compare_prints_both_vtab_averages_as_computed_by_hand(vtab_store, capsys):
    uri, folder = vtab_store
    capsys.readouterr()
    assert analysis_main(["compare", "petl", "vtab", "--tracking-uri", uri, "--out",
                          str(folder / "averages")]) == 0
    printed = capsys.readouterr().out
    assert "mean over tasks" in printed and "mean of group means" in printed
    means = pd.read_csv(folder / "averages" / "compare_with_petl_averages.csv") \
        .set_index("strategy").loc["full_ft"]
    theirs = {t: PETL[(t, "full")] for t in ("cifar100", "caltech101", "eurosat", "clevr_count")}
    ours = {"cifar100": theirs["cifar100"] + 10, "caltech101": theirs["caltech101"],
            "eurosat": theirs["eurosat"] - 10, "clevr_count": theirs["clevr_count"] + 1}
    for side, values in (("ours", ours), ("theirs", theirs)):
        natural = (values["cifar100"] + values["caltech101"]) / 2
        assert means[f"{side}: mean over tasks"] == pytest.approx(
            sum(values.values()) / 4, abs=0.006)
        assert means[f"{side}: mean of group means"] == pytest.approx(
            (natural + values["eurosat"] + values["clevr_count"]) / 3, abs=0.006)
    assert (means["tasks"], means["per group"]) == (4, "natural 2 / specialized 1 / structured 1")


def test_both_vtab_averages_over_all_19_tasks_match_the_published_means():
    from analysis.compare import averages, compare
    vpt = pd.read_csv(Path(__file__).resolve().parents[1] / "analysis" / "data" /
                      "vpt_vtab.csv").query("method == 'vpt_deep'")
    finals = _finals({(t, "vpt_deep"): [a - 1, a, a + 1] for t, a in zip(vpt["task"],
                                                                         vpt["accuracy"])})
    finals = finals.assign(group=[get_task(t).group for t in finals["task"]],
                           backbone="vit_b16-in21k", setting="800")
    means = averages(compare(finals, "vpt")).iloc[0]
    assert means["tasks"] == 19
    assert means["theirs: mean over tasks"] == 69.43     # V-PETL Bench's printed Mean (README:419)
    natural, specialized, structured = (vpt[vpt["group"] == g]["accuracy"].mean()
                                        for g in ("natural", "specialized", "structured"))
    assert means["theirs: mean of group means"] == pytest.approx(
        (natural + specialized + structured) / 3, abs=0.005)                    # 71.97
    assert means["ours: mean over tasks"] == means["theirs: mean over tasks"]


def test_compare_with_no_matching_cell_prints_one_line(store, capsys):
    capsys.readouterr()
    code, _ = run_verb(store, "compare")             # one name: the study, against the paper
    lines = capsys.readouterr().out.strip().splitlines()
    assert code == 0 and len(lines) == 1 and "nothing to compare" in lines[0]
    uri, folder = store
    assert analysis_main(["compare", "petl", "made", "--tracking-uri", uri]) == 0
    assert "nothing to compare" in capsys.readouterr().out
    assert analysis_main(["compare", "nosuch", "made", "--tracking-uri", uri]) == 2
    assert "unknown published source 'nosuch'" in capsys.readouterr().err


def test_compare_with_the_paper_matches_its_table_by_setting_and_backbone_family(vtab_store):
    from results.published import published
    uri, folder = vtab_store
    out = folder / "paper"
    assert analysis_main(["compare", "vtab", "--tracking-uri", uri, "--out", str(out)]) == 0
    table = pd.read_csv(out / "compare_with_paper.csv").set_index(["task", "strategy"])
    paper = published("paper").set_index(["table", "task", "strategy"])["accuracy"]
    assert table.loc[("cifar100", "vpt_deep"), "theirs"] == paper[("1", "cifar100", "vpt_deep")]
    assert table.loc[("clevr_count", "full_ft"), "table"] == 2


def test_curves_write_figures_and_flag_the_rising_test_loss(store):
    code, out = run_verb(store, "curves")
    assert code == 0
    assert (out / "figures5_6_loss_curves.png").stat().st_size > 10_000
    assert (out / "figures5_6_loss_curves.pdf").exists()
    flags = pd.read_csv(out / "overfitting.csv").set_index(["task", "strategy"])["overfitting"]
    assert flags[("clevr_count", "full_ft")] and not flags[("cifar100", "vpt_deep")]


def test_quadrants_need_fid_then_count_winners(store):
    code, _ = run_verb(store, "quadrants", "--out", str(store[1] / "empty"))
    assert code == 2
    out = store[1] / "out"
    out.mkdir(exist_ok=True)                 # as the fid verb would have left it
    pd.DataFrame({"task": ["cifar100", "clevr_count"], "group": ["natural", "structured"],
                  "backbone_fid": [10.0, 90.0]}).to_csv(out / "fid.csv", index=False)
    code, out = run_verb(store, "quadrants")
    assert code == 0
    counts = pd.read_csv(out / "figure1_quadrants.csv")
    assert counts["neither"].sum() == 2                      # two seeds: `wins` cannot tell
    assert counts["VPT"].sum() == counts["FT"].sum() == 0    # though cifar100's means differ
    assert "figure3_fid_winners.png" in logged(store)


def test_figure3_colours_a_winner_only_where_the_wins_rule_finds_one():
    from analysis.plots import SHADE, quadrants
    fid = pd.DataFrame({"task": ["a", "b", "c"], "group": ["natural", "structured", "natural"],
                        "backbone_fid": [10.0, 90.0, 50.0]})
    wins = pd.DataFrame({"task": ["a", "b", "c"], "group": ["natural", "structured", "natural"],
                         "winner": ["VPT", "FT", "neither"], "verdict": ["win", "loss",
                                                                         "within noise"]})
    fig, counts, data = quadrants(fid, wins, "backbone_fid")
    colours = [tuple(bar.get_facecolor()) for bar in fig.axes[0].patches]
    from matplotlib.colors import to_rgba
    assert colours == [to_rgba(SHADE[w]) for w in ("VPT", "neither", "FT")]   # by FID
    counts = counts.set_index(["disparity", "distance"])
    assert counts.loc[("low disparity", "low FID"), "VPT"] == 1
    assert counts.loc[("high disparity", "high FID"), "FT"] == 1
    assert counts["neither"].sum() == 1


def test_table_verb_writes_the_table_and_says_which_runs_made_it(store):
    code, out = run_verb(store, "table")
    assert code == 0
    text = (out / "table.md").read_text()
    assert "76.0 ± 1.4" in text
    assert re.search(r"From 8 final runs of \d{4}-\d\d-\d\d, on .*, commit ", text)


def test_table_as_csv_is_one_header_and_numeric_columns(store, capsys):
    import io
    code, out = run_verb(store, "table", "--format", "csv")
    assert code == 0
    printed = capsys.readouterr().out
    assert printed.splitlines()[0] == ("backbone,setting,strategy,group,task,mean,std,seeds,"
                                       "tuned_percent,missing")
    for table in (pd.read_csv(io.StringIO(printed)), pd.read_csv(out / "table.csv")):
        assert all(pd.api.types.is_float_dtype(table[c]) for c in ("mean", "std"))
        cell = table.set_index(["task", "strategy"]).loc[("cifar100", "vpt_deep")]
        assert cell["mean"] == 76.0 and cell["std"] == pytest.approx(2 ** 0.5)
        assert cell["seeds"] == 2 and cell["group"] == "natural"
        assert len(table) == 4


def test_the_summary_run_holds_the_table_a_metric_per_cell_and_the_figures(store):
    import json
    from study.summary import NOTE, SELECTED, VIEW
    run_verb(store, "curves")
    run_verb(store, "table")
    client = MlflowClient(store[0])
    experiment = client.get_experiment_by_name("made")
    (summary,) = client.search_runs([experiment.experiment_id], "tags.stage = 'summary'")
    assert summary.data.tags["mlflow.runName"] == "made: results"
    assert summary.data.metrics["test_acc/cifar100/vpt_deep"] == 76.0
    assert summary.data.metrics["test_acc_std/clevr_count/full_ft"] == pytest.approx(0.5 ** 0.5)
    assert {"table.md", "table.csv", "selection.csv", "figures5_6_loss_curves.png"} <= \
        logged(store)
    note = summary.data.tags[NOTE]
    assert "From 8 final runs of" in note and "76.0 ± 1.4" in note
    assert f"get-artifact?path=figures5_6_loss_curves.png&run_uuid={summary.info.run_id}" in note
    described = experiment.tags[NOTE]
    assert described.startswith("**The answer: [made: results](#/experiments/"
                                 f"{experiment.experiment_id}/runs/{summary.info.run_id}")
    assert "76.0 ± 1.4" in described
    view = json.loads(experiment.tags[f"mlflow.sharedViewState.{VIEW}"])
    assert "metrics.`final_test_acc`" in view["selectedColumns"] and view["searchFilter"] == ""
    chosen = json.loads(experiment.tags[f"mlflow.sharedViewState.{SELECTED}"])
    assert chosen["searchFilter"] == "tags.selected = 'true'"
    listed = client.search_runs([experiment.experiment_id], "", order_by=[view["orderByKey"]],
                                max_results=3)
    assert listed[0].info.run_id == summary.info.run_id             # then the other runs
    assert [r.data.tags["place"] for r in listed] == ["001", "002", "003"]   # without a parent


def test_a_figure_says_which_runs_on_which_machine_made_it(store, tmp_path):
    import matplotlib.pyplot as plt
    from analysis.report import Report
    from results.runs import load_runs
    fig = plt.figure()
    Report("made", store[0], tmp_path, load_runs("made", store[0])).figure(fig, "blank")
    (footer,) = [t.get_text() for t in fig.texts]
    assert footer.startswith("made: from 8 final runs of ") and store[0] in footer.replace(
        "\n", "")
    assert (tmp_path / "blank.png").exists()


def test_figure4_draws_each_point_with_the_std_of_its_seeds():
    from analysis.plots import capacity
    rows = [dict(trial_id=f"{s}{n}{seed}", start_time=1, status="FINISHED", outcome="finished",
                 setting=str(n), strategy=s, task="t", final_test_acc=acc + seed)
            for s, acc in (("full_ft", 50.0), ("vpt_deep", 60.0)) for n in (100, 400)
            for seed in (0, 2)]
    fig, points = capacity(pd.DataFrame(rows))
    assert set(points["test_acc_std"]) == {2 ** 0.5} and set(points["seeds"]) == {2}
    bars = [c for c in fig.axes[0].containers if c.has_yerr]
    assert len(bars) == 2                                   # FT and VPT of the one task
    segments = bars[0].lines[2][0].get_segments()
    assert [round(seg[1][1] - seg[0][1], 6) for seg in segments] == [round(2 * 2 ** 0.5, 6)] * 2


def test_capacity_plots_accuracy_against_train_size(tmp_path):
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    tracker = StudyTracker("sizes", uri)
    for setting, size, ft, vpt in (("400", 400, 50.0, 60.0), ("800", 800, 70.0, 72.0)):
        for strategy, acc in (("full_ft", ft), ("vpt_deep", vpt)):
            cfg = tiny_trial("", strategy, study="sizes", stage="final", task="cifar100",
                             setting=setting, train_split=f"train{size}val{size // 4}",
                             eval_split="test")
            run = tracker.start(cfg)
            tracker.record(run, {SUMMARY: 1, "outcome": "finished", "final_test_acc": acc,
                                 "tuned_percent": 1.0})
            tracker.finish(run, "FINISHED")
    out = tmp_path / "out"
    assert analysis_main(["capacity", "sizes", "--tracking-uri", uri, "--out", str(out)]) == 0
    points = pd.read_csv(out / "figure4_data.csv").set_index(["strategy", "train_size"])
    assert points.loc[("vpt_deep", 400), "test_acc"] == 60.0
    assert points.loc[("full_ft", 800), "test_acc"] == 70.0
    assert points.loc[("full_ft", 400), "seeds"] == 1
    assert (out / "figure4_capacity.png").exists() and (out / "tables5_6.md").exists()
    assert "train size 400" in (out / "tables5_6.md").read_text()


@pytest.mark.parametrize("extra, choice", [
    (("--fid", "5", "--disparity", "low", "--train-size", "800"), "VPT"),     # close images
    (("--fid", "80", "--disparity", "low", "--train-size", "800"), "FT"),     # far, low disparity
    (("--fid", "80", "--disparity", "high", "--train-size", "800"), "VPT"),   # high disparity
    (("--fid", "5", "--disparity", "low", "--train-size", "20000"), "FT"),    # much data
])
def test_advise_follows_the_papers_findings_and_cites_measured_tasks(store, extra, choice):
    out = store[1] / "advise"
    out.mkdir(exist_ok=True)
    pd.DataFrame({"task": ["cifar100", "clevr_count"], "group": ["natural", "structured"],
                  "backbone_fid": [10.0, 90.0]}).to_csv(out / "fid.csv", index=False)
    code = analysis_main(["advise", "made", "--tracking-uri", store[0], "--out", str(out),
                          "--task", "cifar100", *extra])
    assert code == 0
    text = (out / "advise_cifar100.md").read_text()
    assert f"recommendation: {choice}, following the paper's rule" in text
    # the nearest task and its winner by the `wins` rule: none, at two seeds
    assert re.search(r"\| cifar100\s+\| natural\s+\|\s+10\.0 \| neither", text)


def test_attributions_from_saved_weights(cache_dir, tmp_path):
    from trainables.trial import run_trial
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    tracker = StudyTracker("attr", uri)
    recipes = {"full_ft": Recipe("adamw", 1e-7, 0.0, 1, 0, 64),       # barely trained: often wrong
               "vpt_deep": Recipe("sgd", 2.0, 0.0, 3, 1, 64)}
    for strategy, recipe in recipes.items():
        cfg = tiny_trial(cache_dir, strategy, study="attr", stage="final", recipe=recipe,
                         train_split="train800val200", eval_split="test",
                         save="all" if strategy == "full_ft" else "trainable")
        run = tracker.start(cfg)
        run_trial(cfg, lambda metrics: tracker.record(run, metrics))
        tracker.finish(run, "FINISHED")
    out = tmp_path / "out"
    code = analysis_main(["attributions", "attr", "--tracking-uri", uri, "--out", str(out),
                          "--cache-dir", cache_dir, "--samples", "300", "--examples", "2"])
    assert code == 0
    examples = pd.read_csv(out / "attribution_examples.csv")
    assert len(examples) == 2 and set(examples["task"]) == {"digits"}
    for name in ("figure8_gradcam_digits", "figure17_ig_digits"):
        assert (out / f"{name}.png").stat().st_size > 5_000 and (out / f"{name}.pdf").exists()


def test_gradcam_maps_are_not_empty(cache_dir):
    import torch
    from analysis.attributions import gradcam
    from trainables.backbones import create_backbone
    torch.manual_seed(0)
    model = create_backbone(TINY_VIT, num_classes=10).eval()
    x = torch.randn(2, 3, 32, 32)
    maps = gradcam(model, x, torch.tensor([1, 2]))
    assert maps.shape == (2, 32, 32) and (maps > 0).any(axis=(1, 2)).all()


def test_fid_over_random_subsets_reports_mean_std_and_the_size():
    rng = np.random.default_rng(0)
    a, b = rng.normal(0, 1, (600, 4)), rng.normal(0.5, 1, (300, 4))
    small = fid.repeated(a, b, samples=100, repeats=5)
    assert small["samples"] == 100 and small["repeats"] == 5 and small["std"] > 0
    whole = fid.repeated(a, b, samples=1000, repeats=3)      # capped at the smaller set
    assert whole["samples"] == 300
    assert whole["fid"] == pytest.approx(fid.frechet(a[rng.permutation(600)[:300]], b), rel=0.5)
    assert fid.repeated(a, b, 100, 5) == small                # seeded: the same subsets
    assert small["fid"] > whole["fid"]                        # FID's bias at small sizes


def test_fid_takes_a_prepared_imagenet_sample_as_the_reference(tmp_path):
    from types import SimpleNamespace
    from analysis.inputs import reference_images
    from tasks import write_task
    runs = pd.DataFrame({"stage": ["tune", "final"]})
    args = SimpleNamespace(reference=None, cache_dir=str(tmp_path), study="made",
                           study_spec=False)
    with pytest.raises(StudyInputError, match="tasks prepare imagenet_sample --from-folder"):
        reference_images(args, runs)
    images = np.zeros((5, 8, 8, 3), np.uint8)
    write_task(tmp_path, "imagenet_sample", {"train": (images, np.zeros(5, np.int64))}, 21843)
    reference, found = reference_images(args, runs)
    assert reference == "imagenet_sample" and found.shape == (5, 8, 8, 3)


def test_a_table_piped_to_a_file_holds_only_the_table(store, capsys):
    capsys.readouterr()                          # what building the store printed
    code, _ = run_verb(store, "table", "--format", "csv")
    captured = capsys.readouterr()
    assert code == 0 and "logged to MLflow" in captured.err
    assert "MLflow" not in captured.out and "wrote" not in captured.out
    assert "strategy," in captured.out


def test_each_verb_module_registers_the_verb_it_is_named_after_with_its_own_flags():
    import importlib
    import pkgutil
    import analysis.verbs
    from analysis.__main__ import parser
    from analysis.verb import Verb, all_verbs, register
    modules = {m.name for m in pkgutil.iter_modules(analysis.verbs.__path__)}
    verbs = all_verbs()
    assert modules == set(verbs)
    for name in modules:
        module = importlib.import_module(f"analysis.verbs.{name}")
        assert module.VERB is verbs[name] and module.__doc__
    with pytest.raises(ValueError, match="already registered"):
        register(Verb("table", "again", lambda args, runs, report: ""))
    cli = parser()
    assert cli.parse_args(["table", "x", "--format", "csv"]).format == "csv"
    with pytest.raises(SystemExit):                  # a flag of another verb is refused
        cli.parse_args(["wins", "x", "--format", "csv"])


def _finals(accs: dict) -> pd.DataFrame:
    rows = [{"task": task, "group": "natural", "strategy": strategy, "seed": seed,
             "final_test_acc": acc, "status": "FINISHED", "outcome": "finished",
             "trial_id": f"{task}-{strategy}-{seed}", "start_time": seed}
            for (task, strategy), values in accs.items() for seed, acc in enumerate(values)]
    return pd.DataFrame(rows)


def test_each_verdict_follows_its_welch_interval_and_never_contradicts_it():
    from scipy import stats
    from analysis.wins import task_wins
    accs = {("clear", "full_ft"): [60.0, 61.0, 62.0], ("clear", "vpt_deep"): [70.0, 71.0, 72.0],
            ("noisy", "full_ft"): [60.0, 70.0, 65.0], ("noisy", "vpt_deep"): [62.0, 58.0, 72.0],
            ("worse", "full_ft"): [80.0, 81.0, 80.5, 79.5], ("worse", "vpt_deep"): [60.0, 62.0,
                                                                                     61.0]}
    wins = task_wins(_finals(accs)).set_index("task")
    assert wins["verdict"].to_dict() == {"clear": "win", "noisy": "within noise",
                                         "worse": "loss"}
    a, b = np.array(accs[("clear", "vpt_deep")]), np.array(accs[("clear", "full_ft")])
    # equal variances and sizes: Welch's interval is the pooled t interval, t(4) = 2.776
    half = stats.t.ppf(0.975, 4) * np.sqrt(a.var(ddof=1) / 3 + b.var(ddof=1) / 3)
    assert wins.loc["clear", "ci_low"] == pytest.approx(10 - half, abs=0.01)
    assert wins.loc["clear", "ci_high"] == pytest.approx(10 + half, abs=0.01)
    rng = np.random.default_rng(0)
    for _ in range(50):                    # whatever the numbers: the verdict reads the interval
        n = int(rng.integers(2, 6))
        random = _finals({("t", "full_ft"): list(rng.normal(60, 5, n)),
                          ("t", "vpt_deep"): list(rng.normal(62, 5, n))})
        row = task_wins(random).iloc[0]
        holds_zero = row["ci_low"] <= 0 <= row["ci_high"]
        expected = ("too few seeds to tell" if n < 3 else "within noise" if holds_zero else
                    "win" if row["difference"] > 0 else "loss")
        assert row["verdict"] == expected


def test_advice_follows_the_study_when_all_its_nearest_tasks_go_against_the_rule():
    from analysis.advise import recommend
    measured = pd.DataFrame({"task": ["a", "b", "c", "d"], "fid": [10.0, 12.0, 14.0, 90.0],
                             "winner": ["FT", "FT", "FT", "VPT"]})
    against = recommend(11.0, "low", 800, measured)          # the rule: close images -> VPT
    assert against["choice"] == "FT" and against["rule"].startswith("VPT")
    assert "disagrees" in against["followed"] and against["evidence"].startswith("0 of the 3")
    mixed = recommend(11.0, "low", 800, measured.assign(winner=["FT", "VPT", "FT", "VPT"]))
    assert mixed["choice"] == "VPT" and mixed["followed"] == "the paper's rule"


def test_loss_curves_have_a_log_panel_per_task_and_strategy(store):
    from analysis.plots import loss_curves
    from results.runs import load_runs
    fig, flags = loss_curves(load_runs("made", store[0]), store[0])
    panels = [ax for ax in fig.axes if ax.lines]
    assert len(panels) == 2 * 2 and {ax.get_yscale() for ax in panels} == {"log"}
    assert {ax.get_title() for ax in fig.axes[:2]} == {"full_ft", "vpt_deep"}
    assert len(flags) == 4


def test_attribution_panels_caption_each_row_and_carry_one_colour_bar():
    from analysis.attributions import panels
    images = np.zeros((2, 8, 8, 3), np.uint8)
    maps = {"FT": np.random.default_rng(0).random((2, 8, 8)), "VPT": np.ones((2, 8, 8))}
    fig = panels(images, maps, "t", ["true class 1\nFT: 0, VPT: 1", "true class 2\nFT: 3, VPT: 2"])
    assert len(fig.axes) == 2 * 3 + 1                       # the grid and one colour bar
    assert fig.axes[0].get_ylabel() == "true class 1\nFT: 0, VPT: 1"
    assert fig.axes[-1].get_ylabel() == "attribution (scaled per image)"


def test_fid_generates_the_demo_reference_a_copied_backbone_never_needed(tmp_path):
    from types import SimpleNamespace
    from analysis.inputs import reference_images
    from tasks import is_prepared
    args = SimpleNamespace(reference=None, cache_dir=str(tmp_path), study="demo", study_spec=True)
    assert not is_prepared(tmp_path, "upstream")
    reference, found = reference_images(args, pd.DataFrame({"stage": ["final"]}))
    assert reference == "upstream" and is_prepared(tmp_path, "upstream")
    assert found.shape == (12000, 32, 32, 3) and found.std() > 0


def test_efficiency_puts_each_strategy_at_its_group_mean_and_mean_trainable_parameters(tmp_path):
    from analysis.plots import efficiency
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    tracker = StudyTracker("peft", uri)
    params = {"full_ft": 1000, "linear": 10, "bitfit": 100}           # plus 1 per class
    accs = {("cifar100", "full_ft"): 60.0, ("cifar100", "linear"): 40.0,
            ("cifar100", "bitfit"): 58.0, ("dtd", "full_ft"): 70.0, ("dtd", "linear"): 50.0,
            ("dtd", "bitfit"): 66.0, ("clevr_count", "full_ft"): 80.0,
            ("clevr_count", "linear"): 30.0, ("clevr_count", "bitfit"): 70.0}
    for (task, strategy), acc in accs.items():
        for seed in (42, 44):
            cfg = tiny_trial("", strategy, study="peft", stage="final", task=task, seed=seed,
                             train_split="train800val200", eval_split="test")
            run = tracker.start(cfg)
            tracker.record(run, {SUMMARY: 1, "outcome": "finished", "tuned_percent": 1.0,
                                 "final_test_acc": acc + (1 if seed == 44 else -1),
                                 "trainable_params": params[strategy] + len(task)})
            tracker.finish(run, "FINISHED")
    out = tmp_path / "out"
    assert analysis_main(["efficiency", "peft", "--tracking-uri", uri, "--out", str(out)]) == 0
    points = pd.read_csv(out / "efficiency_data.csv").set_index(["group", "strategy"])
    assert points.loc[("natural", "bitfit"), "test_acc"] == 62.0            # (58 + 66) / 2
    assert points.loc[("natural", "bitfit"), "trainable_params"] == 100 + (8 + 3) / 2
    assert points.loc[("natural", "bitfit"), "tasks"] == 2
    assert points.loc[("structured", "linear"), "test_acc"] == 30.0
    assert (out / "efficiency.png").exists() and (out / "efficiency.pdf").exists()
    fig, _ = efficiency(load_runs("peft", uri))
    panels = [ax for ax in fig.axes if ax.get_xscale() == "log"]
    assert [ax.get_title() for ax in panels] == ["Natural (2 tasks)", "Structured (1 task)"]
    assert all(len(ax.collections) == 3 for ax in panels)          # a point per strategy
    assert panels[1].lines[0].get_ydata()[0] == 80.0                # full_ft's dashed line


def test_efficiency_on_runs_without_trainable_parameters_says_so(store, capsys):
    code, _ = run_verb(store, "efficiency")
    assert code == 2
    assert capsys.readouterr().err.strip().endswith("record no trainable_params")


def test_advice_names_the_papers_quadrant_from_the_reference_median():
    from analysis.advise import recommend
    measured = pd.DataFrame({"task": ["a"], "fid": [50.0], "winner": ["neither"]})
    close = recommend(40.0, "low", 100, measured, median=45.0)
    far = recommend(40.0, "low", 100, measured, median=35.0)       # the same FID, a lower median
    assert close["choice"] == "VPT" and "natural group" in close["quadrant"]
    assert far["choice"] == "FT" and "specialized group" in far["quadrant"]
    assert "structured" in recommend(40.0, "high", 100, measured, median=35.0)["quadrant"]
