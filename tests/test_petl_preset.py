"""The `petl` preset against PETL_Vision's protocol and its stored results (analysis/data/
petl_vision_vtab.csv, imported from OSU-MLB/PETL_Vision @ 245d262): the tasks, the grid as the
optimiser sees it (unscaled lrs), the searched knobs, the schedule against timm's own scheduler
stepped as PETL_Vision steps it, the backbone's input and head, the parameters each strategy
trains on ViT-B/16 against what PETL_Vision recorded, and the plan and card that say so."""
from __future__ import annotations

import json

import pandas as pd
import pytest
import torch

from results.published import DATA
from study.__main__ import main as study_main
from study.card import rows
from study.cost import trainable_parameters
from study.spec import Point, get_study
from study.studies import PETL_METHODS
from tasks import tasks_in_suite
from trainables.strategy import all_strategies

PETL = pd.read_csv(DATA / "petl_vision_vtab.csv")
# the knob here for each of PETL_Vision's searched settings (experiment/config/method/*.yml)
KNOB = {("vpt_deep", "vpt_num"): "prompt_length", ("vpt_shallow", "vpt_num"): "prompt_length",
        ("lora", "lora_bottleneck"): "lora_rank"}


@pytest.fixture(scope="module")
def spec():
    return get_study("petl")


def test_runs_vtab_1k_with_the_registered_petl_methods_baselines_first(spec):
    assert set(spec.tasks) == set(PETL["task"]) == set(tasks_in_suite("vtab1k"))
    assert spec.strategies == tuple(s for s in PETL_METHODS if s in all_strategies())
    assert spec.strategies[:5] == ("full_ft", "linear", "vpt_deep", "vpt_shallow", "lora")
    assert (spec.epochs, spec.warmup_epochs, spec.batch_size, spec.schedule) == (
        100, 10, 64, "petl_epoch")
    assert spec.seeds[0] == 42 and len(spec.seeds) >= 3


def test_every_trial_gives_adamw_petl_visions_unscaled_lrs_and_its_weight_decays(spec):
    trials = spec.tune_trials()
    assert {(c.recipe.optimizer, c.recipe.batch_size, c.recipe.warmup_epochs) for c in trials} \
        == {("adamw", 64, 10)}
    assert {c.recipe.lr for c in trials} == {0.001, 0.01}           # exactly, not 0.00100..2
    assert {c.recipe.weight_decay for c in trials} == {0.0001, 0.001}
    assert set(PETL["lr"]) <= {0.001, 0.01} and set(PETL["wd"]) <= {0.0001, 0.001}


@pytest.mark.parametrize("strategy, method", [("vpt_deep", "vpt_deep"),
                                              ("vpt_shallow", "vpt_shallow"),
                                              ("lora", "lora")])
def test_searches_the_knobs_petl_vision_searched(spec, strategy, method):
    searched = {c.knob.name: set(c.values) for c in spec.knob_choices(strategy)
                if c.mode == "searched"}
    selected = PETL[PETL["method"] == method]["knobs"].map(json.loads)
    for (of, theirs), ours in KNOB.items():
        if of == method:
            assert {k[theirs] for k in selected} <= searched[ours]
    assert len(spec.points(strategy)) == 4 * len(next(iter(searched.values())))


def test_prompts_drop_out_at_petl_visions_rate(spec):
    for strategy in ("vpt_deep", "vpt_shallow"):
        fixed = {c.knob.name: c.value for c in spec.knob_choices(strategy) if c.mode == "fixed"}
        assert fixed["prompt_dropout"] == 0.1               # default_vtab_processed.yml:31


def test_schedule_is_timms_cosine_stepped_after_each_epoch_as_petl_vision_steps_it(spec):
    from timm.scheduler.cosine_lr import CosineLRScheduler
    from trainables.optimizers import make_schedule
    recipe = spec.recipe("petl", spec.search_space.grid_for("petl").base_lrs[1], 0.0)
    theirs_opt = torch.optim.AdamW([torch.nn.Parameter(torch.zeros(1))], lr=recipe.lr)
    timm = CosineLRScheduler(theirs_opt, t_initial=100, warmup_t=10, lr_min=1e-5,
                             warmup_lr_init=1e-6)          # engine/trainer.py:37-39
    ours_opt = torch.optim.AdamW([torch.nn.Parameter(torch.zeros(1))], lr=recipe.lr)
    steps = 13                                             # ceil(800 / 64)
    ours = make_schedule(ours_opt, recipe, steps)
    for epoch in range(recipe.epochs):
        for step in range(steps):
            assert ours_opt.param_groups[0]["lr"] == pytest.approx(
                theirs_opt.param_groups[0]["lr"], rel=1e-12, abs=1e-15), (epoch, step)
            timm.step_update(epoch * steps + step + 1)     # trainer.py:111: changes nothing
            ours_opt.step()
            ours.step()
        timm.step(epoch)                                   # trainer.py:151
    assert theirs_opt.param_groups[0]["lr"] < 1e-4


def test_backbone_sees_pixels_in_0_1_with_drop_path_and_a_torch_initialised_head(spec):
    from trainables.backbones import create_backbone, normalization
    backbone = spec.backbones[0]
    assert normalization(None, backbone) == ((0.0, 0.0, 0.0), (1.0, 1.0, 1.0))
    assert (backbone.dropout, dict(backbone.overrides)["drop_path_rate"]) == (0.0, 0.1)
    from dataclasses import replace
    torch.manual_seed(0)
    small = replace(backbone, name="vit_tiny_patch16_224", weights=None, overrides=(
        ("img_size", 32), ("patch_size", 8), ("embed_dim", 32), ("depth", 1), ("num_heads", 2)))
    head = create_backbone(small, 10).head
    bound = 1 / 32 ** 0.5                    # torch's Linear: U(-1/sqrt(fan_in), 1/sqrt(fan_in))
    assert head.weight.abs().max() <= bound and head.bias.abs().max() > 0
    assert head.weight.std() > 0.3 * bound   # not timm's trunc_normal(std 0.02)


@pytest.mark.parametrize("strategy, method", [("full_ft", "full"), ("linear", "linear"),
                                              ("vpt_deep", "vpt_deep"),
                                              ("vpt_shallow", "vpt_shallow"),
                                              ("lora", "lora")])
def test_trained_parameters_on_vit_b16_equal_petl_visions_inserted_parameters(
        spec, strategy, method):
    """Per task, at the knobs PETL_Vision selected there: ours without the head, counted on the
    meta device, against its `inserted_parameters` (utils/log_utils.py:73)."""
    for _, row in PETL[PETL["method"] == method].iterrows():
        cell = next(c for c in spec.cells() if (c.task, c.strategy) == (row["task"], strategy))
        knobs = json.loads(row["knobs"])
        point = Point(spec.points(strategy)[0].base_lr, 0.0, tuple(
            (KNOB[(method, theirs)], value) for theirs, value in knobs.items()
            if (method, theirs) in KNOB))
        cfg = spec.trial(stage="final", cell=cell, point=point, seed=42)
        assert trainable_parameters(cfg) == row["inserted_parameters"], row["task"]


def test_plan_prints_trials_gpu_hours_and_parameters_beside_petl_visions(capsys):
    assert study_main(["plan", "petl"]) == 0
    out = capsys.readouterr().out.splitlines()
    start = next(i for i, line in enumerate(out) if line.startswith("per strategy"))
    lines = {line.split()[0]: line for line in out[start + 1:] if line.startswith(" " * 14)}
    assert set(lines) == set(get_study("petl").strategies)
    vpt = lines["vpt_deep"].split()
    assert vpt[1] == "304" and float(vpt[2]) > 0 and vpt[3] == "57"   # 19 x 16 points; 19 x 3
    assert lines["vpt_deep"].count("46,080-921,600") == 2          # ours | PETL_Vision's
    assert "85,798,656 " in lines["full_ft"] and "(mean 85,798,656)" in lines["full_ft"]


def test_card_cites_petl_vision_for_its_protocol_and_says_where_it_differs(spec):
    card = {(r["setting"], r["strategy"]): r for r in rows(spec)}
    for setting in ("optimizer", "lr grid", "wd grid", "batch", "epochs", "warm-up epochs",
                    "schedule"):
        assert card[(setting, "lora")]["source"].startswith("PETL_Vision"), setting
    for setting in ("backbone", "head init", "normalisation", "augmentation", "seeds",
                    "tune seed", "evaluation", "selection", "reported epoch"):
        assert "PETL_Vision" in card[(setting, "all")]["source"], setting
    assert "Follows the code" in card[("normalisation", "all")]["text vs code"]
    assert "ParameterGrid" in card[("selection", "all")]["text vs code"]
    assert "eval mode" in card[("model dropout", "vpt_deep")]["text vs code"]
    paper = {(r["setting"], r["strategy"]): r for r in rows(get_study("paper"))}
    assert "PETL_Vision" not in "".join(r["source"] for r in paper.values())
