"""The paper presets against the code that produced the paper's numbers (ChengHan111/VPT-or-FT,
i.e. KMnP/vpt's solver, data and model code): the official optimisers step for step, the
per-epoch schedule, VPT's prompt lengths through the paper's own Tuned/Total rows, the head init,
dropout only where the official model trains in train mode, FT-then-PT from the task's selected FT
recipe, the cost of a shared prior, and the protocol card pinned to the preset."""
from __future__ import annotations

import csv
import math
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import timm
import torch

from common.errors import StudyInputError
from common.keys import Cell
from search_spaces import PAPER_SGD, TABLES_16_18, VPT_LENGTHS, VPT_OFFICIAL_FT
from study.card import rows
from study.cost import StageCost, flops_per_image
from study.spec import Point, get_study, weights_bytes
from tasks import get_task
from tasks.splits import split_size
from tests.conftest import tiny_trial
from trainables.backbones import create_backbone
from trainables.config import BackboneSpec, Recipe
from trainables.loop import Split, set_train_mode, train
from trainables.optimizers import VptAdamW, make_optimizer, make_schedule
from trainables.prompts import add_prompts
from trainables.strategy import get_strategy
from trainables.model import build_model
from trainables.trial import run_trial, train_model

ROOT = Path(__file__).resolve().parents[1]
TINY = BackboneSpec("vit_tiny_patch16_224", overrides=(("img_size", 32), ("patch_size", 8),
                                                      ("embed_dim", 32), ("depth", 2),
                                                      ("num_heads", 2)),
                    dropout=0.1, head_init="vpt")


class OfficialAdamW(torch.optim.Optimizer):
    """VPT src/solver/optimizer.py:139-214 verbatim, but for torch's newer argument order in
    `add_`, `addcmul_` and `addcdiv_` (the old positional forms are gone)."""

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-6, weight_decay=0.0,
                 correct_bias=True):
        super().__init__(params, dict(lr=lr, betas=betas, eps=eps, weight_decay=weight_decay,
                                      correct_bias=correct_bias))

    def step(self, closure=None):
        for group in self.param_groups:
            for p in group['params']:
                if p.grad is None:
                    continue
                grad = p.grad.data
                state = self.state[p]
                if len(state) == 0:
                    state['step'] = 0
                    state['exp_avg'] = torch.zeros_like(p.data)
                    state['exp_avg_sq'] = torch.zeros_like(p.data)
                exp_avg, exp_avg_sq = state['exp_avg'], state['exp_avg_sq']
                beta1, beta2 = group['betas']
                state['step'] += 1
                exp_avg.mul_(beta1).add_(grad, alpha=1.0 - beta1)
                exp_avg_sq.mul_(beta2).addcmul_(grad, grad, value=1.0 - beta2)
                denom = exp_avg_sq.sqrt().add_(group['eps'])
                step_size = group['lr']
                if group['correct_bias']:
                    bias_correction1 = 1.0 - beta1 ** state['step']
                    bias_correction2 = 1.0 - beta2 ** state['step']
                    step_size = step_size * math.sqrt(bias_correction2) / bias_correction1
                p.data.addcdiv_(exp_avg, denom, value=-step_size)
                if group['weight_decay'] > 0.0:
                    p.data.add_(p.data, alpha=-group['lr'] * group['weight_decay'])


def _named(seed=0):
    torch.manual_seed(seed)
    return [("blocks.0.attn.qkv.weight", torch.nn.Parameter(torch.randn(6, 4))),
            ("blocks.0.attn.qkv.bias", torch.nn.Parameter(torch.randn(6))),
            ("prompt.embeddings", torch.nn.Parameter(torch.randn(1, 3, 4))),
            ("head.weight", torch.nn.Parameter(torch.randn(5, 4))),
            ("head.bias", torch.nn.Parameter(torch.randn(5)))]


def _grad_steps(named, optimizer, steps=5):
    for step in range(steps):
        generator = torch.Generator().manual_seed(step)
        for _, p in named:
            p.grad = torch.randn(p.shape, generator=generator)
        optimizer.step()
    return [p.detach().clone() for _, p in named]


def test_vpt_adamw_is_the_official_optimiser_bit_for_bit():
    recipe = Recipe("vpt_adamw", 0.005, 0.001, 10, 5, 128)
    ours = _named()
    optimizer = make_optimizer(ours, recipe)
    assert isinstance(optimizer, VptAdamW)
    decays = {n: g["weight_decay"] for g in optimizer.param_groups for n, p in ours
              if any(p is q for q in g["params"])}
    # 0.01 on every non-bias tensor, whatever the grid's 0.001; no decay on biases
    assert decays == {"blocks.0.attn.qkv.weight": 0.01, "blocks.0.attn.qkv.bias": 0.0,
                      "prompt.embeddings": 0.01, "head.weight": 0.01, "head.bias": 0.0}
    assert all(g["eps"] == 1e-6 for g in optimizer.param_groups)
    official = _named()
    no_decay = ['bias', 'LayerNorm.bias', 'LayerNorm.weight']       # optimizer.py:38-47
    reference = OfficialAdamW([
        {'params': [p for n, p in official if not any(nd in n for nd in no_decay)],
         'weight_decay': 0.01},
        {'params': [p for n, p in official if any(nd in n for nd in no_decay)],
         'weight_decay': 0.0}], lr=recipe.lr)
    for a, b in zip(_grad_steps(ours, optimizer), _grad_steps(official, reference)):
        assert torch.equal(a, b)


def test_vpt_adamw_at_weight_decay_zero_is_sgd_with_momentum_and_no_decay():
    optimizer = make_optimizer(_named(), Recipe("vpt_adamw", 0.001, 0.0, 10, 5, 128))
    assert isinstance(optimizer, torch.optim.SGD)
    assert {g["momentum"] for g in optimizer.param_groups} == {0.9}
    assert {g["weight_decay"] for g in optimizer.param_groups} == {0.0}
    assert optimizer.param_groups[0]["lr"] == pytest.approx(0.001 * 128 / 256)


def test_vpt_sgd_decays_everything_but_the_heads_bias():
    named = _named()
    optimizer = make_optimizer(named, Recipe("vpt_sgd", 0.5, 0.001, 10, 10, 64))
    decays = {n: g["weight_decay"] for g in optimizer.param_groups for n, p in named
              if any(p is q for q in g["params"])}
    assert decays == {"blocks.0.attn.qkv.weight": 0.001, "blocks.0.attn.qkv.bias": 0.001,
                      "prompt.embeddings": 0.001, "head.weight": 0.001, "head.bias": 0.0}
    assert {g["momentum"] for g in optimizer.param_groups} == {0.9}


def test_vpt_schedule_steps_per_epoch_and_runs_the_first_epoch_at_lr_zero():
    recipe = Recipe("vpt_sgd", 1.0, 0.0, epochs=20, warmup_epochs=10, batch_size=256,
                    schedule="vpt_epoch")
    optimizer = make_optimizer(_named(), recipe)
    schedule = make_schedule(optimizer, recipe, steps_per_epoch=3)
    per_step = []
    for _ in range(20 * 3):
        per_step.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        schedule.step()
    per_epoch = per_step[::3]
    assert all(per_step[3 * e:3 * e + 3] == [per_epoch[e]] * 3 for e in range(20))
    assert per_epoch[:3] == [0.0, 0.1, 0.2] and per_epoch[10] == 1.0
    # lr_scheduler.py:63-66 at epoch 15 of 20 with 10 warm-up: 0.5 (1 + cos(pi * 5 / 10))
    assert per_epoch[15] == pytest.approx(0.5 * (1 + math.cos(math.pi * 0.5)))
    assert per_epoch[19] > 0


def _tuned_rows():
    with open(ROOT / "analysis" / "data" / "tuned_params.csv", newline="") as f:
        return [r for r in csv.DictReader(f) if r["task"] != "mean" and r["backbone"] == "vit_b16"]


PRESET_OF_TABLE = {3: "paper-oneshot", 4: "paper-oneshot", 10: "paper-backbones",
                   11: "paper-backbones", 12: "paper-backbones", 13: "paper-backbones",
                   14: "paper-backbones", 15: "paper-backbones", 19: "paper-fgvc"}


@pytest.mark.parametrize("table", sorted(set(PRESET_OF_TABLE)))
def test_the_presets_prompt_lengths_reproduce_every_printed_tuned_total(table):
    spec = get_study(PRESET_OF_TABLE[table])
    backbone = {3: 0, 4: 0, 19: 0}.get(table, 0 if table <= 12 else 1)
    setting = spec.settings[0]
    checked = 0
    for row in (r for r in _tuned_rows() if int(r["table"]) == table):
        cell = Cell(spec.backbones[backbone].tag, setting, row["task"], "vpt_deep")
        cfg = spec.trial(stage="tune", cell=cell, point=Point(1.0, 0.0), seed=0)
        with torch.device("meta"):
            model = build_model(cfg, get_task(row["task"]).num_classes, pretrained=False)
        trains = get_strategy("vpt_deep").trains
        tuned = sum(p.numel() for n, p in model.named_parameters() if trains(n))
        total = sum(p.numel() for p in model.parameters())
        assert f"{100 * tuned / total:.2f}" == row["tuned_percent"], row["task"]
        checked += 1
    assert checked == {3: 11, 4: 8, 10: 7, 11: 4, 12: 8, 13: 7, 14: 4, 15: 8, 19: 5}[table]


def test_tables_16_to_18_differ_from_the_lengths_as_run_on_15_tasks():
    vtab = get_study("paper").tasks
    differ = [t for t in vtab if TABLES_16_18.values[t] != VPT_LENGTHS.values[t]]
    assert len(differ) == 15
    assert get_study("paper-as-written").search_space.table("prompt_length") is TABLES_16_18


def test_the_official_head_init_and_normalisation():
    torch.manual_seed(0)
    head = create_backbone(TINY, 100).get_classifier()
    assert torch.all(head.bias == -math.log(99))
    assert head.weight.std().item() == pytest.approx(math.sqrt(2 / 100), rel=0.05)
    assert get_study("paper").backbones[0].mean_std == ((0.485, 0.456, 0.406),
                                                       (0.229, 0.224, 0.225))


def _dropouts(model):
    return {n: (m.p, m.training) for n, m in model.named_modules()
            if isinstance(m, torch.nn.Dropout)}


def test_dropout_acts_in_full_finetuning_only_where_the_official_vit_has_it():
    model = create_backbone(TINY, 10)
    set_train_mode(model)
    drops = _dropouts(model)
    assert drops["pos_drop"] == (0.1, True)
    assert drops["blocks.0.mlp.drop1"] == drops["blocks.1.mlp.drop2"] == (0.1, True)
    assert drops["blocks.0.attn.proj_drop"][0] == drops["blocks.0.attn.attn_drop"][0] == 0.0
    assert drops["head_drop"][0] == 0.0


@pytest.mark.parametrize("strategy", ["vpt_deep", "mixed", "linear"])
def test_no_backbone_dropout_acts_when_the_official_code_keeps_the_encoder_in_eval(strategy):
    chosen = get_strategy(strategy)
    cfg = tiny_trial("", strategy, prompt_dropout=0.1)
    model = chosen.prepare(create_backbone(TINY, 10), cfg)
    set_train_mode(model)
    acting = {n for n, (p, training) in _dropouts(model).items() if p > 0 and training}
    assert acting == ({"prompt.dropout"} if chosen.prompted else set())


def test_prompts_refuse_a_vit_with_dynamic_image_size():
    vit = timm.create_model("vit_tiny_patch16_224", img_size=32, patch_size=8, embed_dim=32,
                            depth=2, num_heads=2, dynamic_img_size=True)
    with pytest.raises(StudyInputError, match="dynamic_img_size"):
        add_prompts(vit, 4, deep=True, dropout=0.0)


def test_no_gradient_of_the_ft_phase_survives_into_the_prompt_phase(cache_dir):
    model, summary = train_model(tiny_trial(cache_dir, "ft_then_pt"), lambda metrics: None)
    assert summary["outcome"] == "finished"
    frozen = [p for p in model.parameters() if not p.requires_grad]
    assert frozen and all(p.grad is None for p in frozen)


def test_ft_then_pt_starts_from_the_tasks_selected_ft_recipe():
    spec = get_study("paper")
    first = spec.tune_trials()
    assert "ft_then_pt" not in {c.strategy for c in first}
    selected = {(spec.backbones[0].tag, "800", task, "full_ft"): (0.0005 if i % 2 else 0.005,
                                                                  0.001)
                for i, task in enumerate(spec.tasks)}
    second = spec.tune_trials(selected)
    assert {c.strategy for c in second} == {"ft_then_pt"} and len(second) == 19 * 40
    for cfg in second + [c for c in spec.final_trials(
            {**selected, **{(k[0], k[1], k[2], "ft_then_pt"): (1.0, 0.0) for k in selected}})
            if c.strategy == "ft_then_pt"]:
        lr, wd = selected[(cfg.backbone.tag, "800", cfg.task, "full_ft")]
        assert cfg.prior_recipe == spec.recipe("full", lr, wd)
        assert (cfg.prior_recipe.optimizer, cfg.prior_recipe.batch_size,
                cfg.prior_recipe.warmup_epochs) == ("vpt_adamw", 128, 5)
    with pytest.raises(StudyInputError, match="full_ft must be in it"):
        get_study("paper", strategies=("vpt_deep", "ft_then_pt"))


def test_the_plan_counts_a_shared_prior_once_and_prices_it_as_full_finetuning():
    spec = get_study("demo")
    trials = [c for c in spec.tune_trials(spec.first_points()) if c.task == "digits"]
    cost = StageCost()
    for cfg in trials:
        cost.add(cfg)
    cfg = trials[0]
    key = replace(cfg, cache_dir="", seed=0, recipe=None, prior_recipe=None, stage="", task="",
                  train_split="", eval_split="", setting="")
    prior_train, prior_eval = flops_per_image(key, 0)
    prompt_train, prompt_eval = flops_per_image(key, 1)
    ft = replace(key, strategy="full_ft")
    assert prior_train == flops_per_image(ft, 0)[0]         # priced as full finetuning
    epochs = spec.epochs
    evals = -(-epochs // spec.eval_every)
    expected = (800 * epochs * (prior_train + len(trials) * prompt_train)
                + 200 * evals * (prior_eval + len(trials) * prompt_eval))
    assert cost.total.flops == pytest.approx(expected)
    assert cost.by_task["digits"].flops == cost.total.flops


def test_the_card_pins_the_paper_presets_values_and_names_a_source_for_each():
    card = {(r["setting"], r["strategy"]): r for r in rows(get_study("paper"))}
    value = {k: r["value"] for k, r in card.items()}
    assert value[("optimizer", "full_ft")] == "vpt_adamw"
    assert value[("lr grid", "full_ft")].startswith(str(VPT_OFFICIAL_FT.base_lrs))
    assert (value[("batch", "full_ft")], value[("warm-up epochs", "full_ft")]) == ("128", "5")
    for strategy in ("vpt_deep", "mixed", "ft_then_pt"):
        assert value[("optimizer", strategy)] == "vpt_sgd"
        assert value[("lr grid", strategy)].startswith(str(PAPER_SGD.base_lrs))
        assert (value[("batch", strategy)], value[("warm-up epochs", strategy)]) == ("64", "10")
        assert value[("prompt_dropout", strategy)] == "0.1"
        assert "cifar100=10," in value[("prompt_length", strategy)]
        assert value[("model dropout", strategy)].startswith("off")
    assert value[("model dropout", "full_ft")] == "vit_b16-in21k: dropout 0.1, drop-path 0.0"
    assert value[("schedule", "vpt_deep")] == "vpt_epoch"
    assert value[("head init", "all")] == "vpt"
    assert value[("seeds", "all")] == "(42, 44, 82, 100, 800)"
    chosen_here = {k for k, r in card.items() if r["source"].startswith("project choice")}
    assert chosen_here == {("tune seed", "all"), ("precision", "all")}
    disagreements = {k for k, r in card.items() if r["text vs code"]}
    assert {("optimizer", "full_ft"), ("lr grid", "full_ft"), ("batch", "full_ft"),
            ("warm-up epochs", "full_ft"), ("prompt_length", "vpt_deep")} <= disagreements
    as_written = {(r["setting"], r["strategy"]): r["value"]
                  for r in rows(get_study("paper-as-written"))}
    assert as_written[("optimizer", "full_ft")] == "vpt_sgd"
    assert as_written[("batch", "full_ft")] == "64"
    assert "cifar100=100," in as_written[("prompt_length", "vpt_deep")]


def test_lora_as_toast_runs_loralib_scale_and_the_whole_model_in_train_mode(cache_dir):
    spec = get_study("paper-lora")
    cfg = spec.trial(stage="tune", cell=Cell(spec.backbones[0].tag, "800", "cifar100", "lora"),
                     point=Point(0.5, 0.0), seed=0)
    assert (cfg.knob("lora_rank"), cfg.knob("lora_alpha")) == (4, 1.0)
    assert (cfg.recipe.optimizer, cfg.recipe.batch_size, cfg.recipe.warmup_epochs) == \
        ("vpt_sgd", 32, 10)
    assert dict(cfg.backbone.overrides)["drop_path_rate"] == 0.1 and cfg.backbone.dropout == 0
    with torch.device("meta"):
        model = build_model(cfg, 100, pretrained=False)
    qkv = model.blocks[0].attn.qkv
    assert qkv.scale == 0.25 and qkv.lora_a.shape == (4, 768) and qkv.lora_b.shape == (2304, 4)
    # the loop keeps a frozen block's drop-path in train mode for LoRA, as TOAST's model.train()
    lora = get_strategy("lora")
    assert not lora.frozen_eval and get_strategy("vpt_deep").frozen_eval
    backbone = replace(TINY, overrides=(*TINY.overrides, ("drop_path_rate", 0.2)))
    modes = {}
    for frozen_eval in (True, False):
        model = lora.prepare(create_backbone(backbone, 10), tiny_trial("", "lora", lora_rank=2))
        seen = []
        model.blocks[-1].drop_path1.register_forward_pre_hook(
            lambda module, args: seen.append(module.training))
        split = _tiny_split()
        train(model, split, split, torch.nn.Identity(), Recipe("sgd", 0.1, 0.0, 1, 0, 8), 0,
              lambda metrics: None, frozen_eval=frozen_eval)
        modes[frozen_eval] = seen[0]
    assert modes == {True: False, False: True}


def _tiny_split():
    generator = torch.Generator().manual_seed(0)
    images = torch.randn(8, 3, 32, 32, generator=generator)
    return Split(images, torch.randint(0, 10, (8,), generator=generator), "val")


def test_fgvc_trains_its_final_model_on_train_only():
    spec = get_study("paper-fgvc")
    cfg = spec.final_trials({(spec.backbones[0].tag, "full", "cub200", "vpt_deep"): (1.0, 0.0)})[0]
    assert (cfg.train_split, cfg.eval_split) == ("train", "test")
    assert "trainval" not in get_task("cub200").splits
    card = {(r["setting"], r["value"]): r for r in rows(spec)}
    assert "train.py:66-72" in card[("splits", "final train -> test")]["source"]


def test_fgvc_tunes_vpt_on_fgvcs_own_nine_lrs_and_ft_on_vtabs_grid():
    """VPT tune_fgvc.py:151-156 (VPT-or-FT tune_fgvc.py:181-186): VTAB's prompt grid without
    0.05; FT as VTAB (VPT-or-FT tune_fgvc.py:99-100)."""
    spec = get_study("paper-fgvc")
    lrs = {s: {c.recipe.base_lr for c in spec.tune_trials() if c.strategy == s}
           for s in ("vpt_deep", "full_ft")}
    assert lrs["vpt_deep"] == {50, 25, 10, 5, 2.5, 1, 0.5, 0.25, 0.1}
    assert lrs["full_ft"] == set(VPT_OFFICIAL_FT.base_lrs)
    assert len(spec.tune_trials()) == 5 * (9 * 4 + 4 * 4)
    card = {(r["setting"], r["strategy"]): r for r in rows(spec)}
    assert "tune_fgvc.py:151-156" in card[("lr grid", "vpt_deep")]["source"]
    assert "128" in card[("batch", "vpt_deep")]["text vs code"]


def test_size_sweeps_read_the_paper_codes_slices_where_it_publishes_them():
    """VPT-or-FT src/data/vtab_datasets/*.py: at 10000, cifar100 and patch_camelyon 4:1, svhn
    5:1 and sun397 1:1 with val from its own validation split; the other tasks and sizes a
    seeded 4:1 sample, said so on the card."""
    spec = get_study("paper-scale")
    splits = {(c.setting, c.task): (c.train_split, c.eval_split) for c in spec.tune_trials()}
    assert splits[("10000", "cifar100")] == ("train10000", "val2500")
    assert splits[("10000", "svhn")] == ("train10000", "val2000")
    assert splits[("10000", "sun397")] == ("train10000", "val10000")
    assert splits[("5000", "sun397")] == ("train5000", "val1250")
    card = [r for r in rows(spec) if r["setting"] == "splits" and r["value"].startswith("@")]
    sun = next(r for r in card if r["value"].startswith("@10000 sun397:"))
    assert "validation[:10000]" in sun["value"] and "sun397.py:64-82" in sun["source"]
    assert "1:1" in sun["text vs code"]
    sampled = next(r for r in card if r["value"].startswith("@10000 eurosat"))
    assert "seeded 4:1 sample" in sampled["text vs code"] and "sun397" not in sampled["value"]
    lora = get_study("paper-lora")
    assert {(c.train_split, c.eval_split) for c in lora.tune_trials()
            if c.setting == "10000"} == {("train10000", "val2500")}


def test_the_lora_card_names_toast_and_what_cannot_be_reproduced():
    card = {(r["setting"], r["strategy"]): r for r in rows(get_study("paper-lora"))}
    assert (card[("lora_rank", "lora")]["value"], card[("lora_alpha", "lora")]["value"]) == \
        ("4", "1.0")
    assert "TOAST" in card[("lora_rank", "lora")]["source"] and \
        "TOAST" in card[("lora_alpha", "lora")]["source"]
    assert "not public" in card[("backbone", "all")]["text vs code"]
    assert card[("batch", "full_ft")]["value"] == card[("batch", "lora")]["value"] == "32"


def test_fgvc_views_are_torchvisions_resize_and_centre_crop():
    import torchvision.transforms as T
    from PIL import Image
    from tasks.spec import Augment
    from tasks.views import eval_view, resized, train_canvas
    augment = Augment()
    for shape in ((300, 500, 3), (500, 333, 3), (260, 900, 3)):
        image = np.random.default_rng(sum(shape)).integers(0, 256, shape, dtype=np.uint8)
        pil = Image.fromarray(image)
        assert np.array_equal(resized(image, 256), np.asarray(T.Resize(256)(pil)))
        official = np.asarray(T.Compose([T.Resize(256), T.CenterCrop(224)])(pil))
        assert np.array_equal(eval_view(image, augment), official)
        canvas, (h, w) = train_canvas(image, augment)
        assert canvas.shape == (384, 384, 3) and min(h, w) == 256 and max(h, w) <= 384
        assert not canvas[h:].any() and not canvas[:, w:].any()


def _canvases(count=6, canvas=48, crop=32):
    """Canvases whose padding is 255 and whose content is below 255, with random sizes."""
    rng = np.random.default_rng(0)
    images = np.full((count, canvas, canvas, 3), 255, np.uint8)
    sizes = np.stack([rng.integers(crop, canvas + 1, count), rng.integers(crop, canvas + 1,
                                                                          count)], axis=1)
    for image, (h, w) in zip(images, sizes):
        image[:h, :w] = rng.integers(0, 255, (h, w, 3))
    return torch.tensor(images), torch.tensor(sizes)


def test_random_crops_stay_inside_the_image_are_seeded_and_vary_per_epoch():
    from trainables.loop import random_crops
    images, sizes = _canvases()
    first = random_crops(images, sizes, 32, torch.Generator().manual_seed(3))
    again = random_crops(images, sizes, 32, torch.Generator().manual_seed(3))
    assert first.shape == (6, 32, 32, 3) and torch.equal(first, again)
    assert not (first == 255).all(dim=-1).any()             # never a pixel of padding
    generator = torch.Generator().manual_seed(3)
    epochs = [random_crops(images, sizes, 32, generator) for _ in range(4)]
    assert any(not torch.equal(epochs[0], e) for e in epochs[1:])
    # each crop is a window of its image, flipped or not, and both orientations occur
    orientations = set()
    for seed in range(6):
        out = random_crops(images, sizes, 32, torch.Generator().manual_seed(seed))
        for image, (h, w), crop in zip(images, sizes.tolist(), out):
            found = {f for t in range(h - 31) for left in range(w - 31) for f in (0, 1)
                     if torch.equal(crop, image[t:t + 32, left:left + 32].flip(1) if f
                                    else image[t:t + 32, left:left + 32])}
            assert len(found) == 1
            orientations |= found
    assert orientations == {0, 1}


def test_training_runs_on_random_crops():
    from trainables.loop import Normalize
    images, sizes = _canvases(count=16)
    labels = torch.randint(0, 10, (16,), generator=torch.Generator().manual_seed(0))
    train_split = Split(images, labels, "train", sizes, crop=32)
    eval_split = Split(images[:4, :32, :32], labels[:4], "val")
    model = create_backbone(TINY, 10)
    result = train(model, train_split, eval_split, Normalize.of((0.5,) * 3, (0.5,) * 3, "cpu"),
                   Recipe("sgd", 0.1, 0.0, 2, 0, 8), 0, lambda metrics: None)
    assert result["outcome"] == "finished" and math.isfinite(result["train_loss"])


def test_fgvc_is_prepared_with_canvases_for_training_and_centre_crops_for_evaluation(tmp_path):
    import tensorflow_datasets as tfds
    from tasks import TASKS, load_split
    from tasks.cache import load_sizes, read_manifest
    from tasks.tfds_source import prepare_tfds
    from tasks.views import evaluation_images
    task = TASKS["cub200"]
    with tfds.testing.mock_data(num_examples=12, policy=tfds.testing.MockPolicy.USE_CODE):
        prepare_tfds(task, None, tmp_path, image_size=224, split_sizes={"train": 12, "test": 12},
                     splits={"train": "train[:6]", "val": "train[6:9]", "test": "test[:3]"},
                     progress=False)
    manifest = read_manifest(tmp_path, "cub200")
    assert manifest["augment"] == {"resize": 256, "crop": 224, "canvas": 384}
    assert load_split(tmp_path, "cub200", "train")[0].shape == (6, 384, 384, 3)
    sizes = load_sizes(tmp_path, "cub200", "train")
    assert sizes.shape == (6, 2) and (sizes.min(axis=1) == 256).all()
    assert load_sizes(tmp_path, "cub200", "val") is None
    assert load_split(tmp_path, "cub200", "test")[0].shape == (3, 224, 224, 3)
    assert evaluation_images(tmp_path, "cub200", "train").shape == (6, 224, 224, 3)
    # a trial reads the canvases, crops them on the device (a linear probe too: no features are
    # cached when the training images change every epoch) and evaluates on the stored crops
    at_224 = replace(TINY, overrides=(("img_size", 224), ("patch_size", 56), ("embed_dim", 32),
                                      ("depth", 1), ("num_heads", 2)))
    for strategy in ("linear", "vpt_deep"):
        summary = run_trial(tiny_trial(str(tmp_path), strategy, task="cub200", backbone=at_224,
                                       train_split="train", eval_split="val"), lambda r: None)
        assert summary["outcome"] == "finished" and summary["train_size"] == 6
    with tfds.testing.mock_data(num_examples=12, policy=tfds.testing.MockPolicy.USE_CODE), \
            pytest.raises(StudyInputError, match="crops 224"):
        prepare_tfds(task, None, tmp_path / "x", image_size=32, split_sizes={"train": 12},
                     splits={"train": "train[:2]"}, progress=False)


def test_the_final_stage_queues_ft_then_pt_after_the_full_ft_runs_it_replays():
    spec = get_study("demo")
    selected = spec.first_points()
    final = spec.final_trials(selected)
    strategies = [c.strategy for c in final]
    assert strategies.index("ft_then_pt") > max(i for i, s in enumerate(strategies)
                                                if s != "ft_then_pt")
    assert {c.strategy for c in final if c.kept_as_prior} == {"full_ft"}
    for cfg in (c for c in final if c.strategy == "ft_then_pt"):
        producer = next(c for c in final if c.strategy == "full_ft" and c.task == cfg.task
                        and c.seed == cfg.seed)
        assert producer.recipe == cfg.prior_recipe
        assert (producer.train_split, producer.eval_split) == (cfg.train_split, cfg.eval_split)
    without = replace(spec, strategies=("full_ft", "vpt_deep"))
    assert not any(c.kept_as_prior for c in without.final_trials(without.first_points()))
    # priced once: FT-then-PT's final runs cost their prompt phase only
    with_prior, alone = StageCost(), StageCost()
    for cfg in final:
        with_prior.add(cfg)
        if cfg.strategy != "ft_then_pt":
            alone.add(cfg)
    expected = 0.0
    for cfg in (c for c in final if c.strategy == "ft_then_pt"):
        key = replace(cfg, cache_dir="", seed=0, recipe=None, prior_recipe=None, stage="",
                      task="", train_split="", eval_split="", setting="")
        train_flops, eval_flops = flops_per_image(key, 1)
        task = get_task(cfg.task)
        expected += spec.epochs * (split_size(task, cfg.train_split) * train_flops
                                   + split_size(task, cfg.eval_split) * eval_flops)
    assert with_prior.total.flops - alone.total.flops == pytest.approx(expected)


def test_the_tune_stage_keeps_full_ft_s_runs_as_priors_where_they_fit_on_disk():
    spec = get_study("demo")
    first = spec.tune_trials()
    assert spec.keeps_tune_priors()
    assert {c.strategy for c in first if c.kept_as_prior} == {"full_ft"}
    assert all(c.kept_as_prior for c in first if c.strategy == "full_ft")
    # each FT-then-PT tune trial's prior is the full_ft tune run of the selected recipe: the
    # same recipe, splits, seed and backbone, which is what names a kept prior (priors.prior_path)
    for cfg in spec.tune_trials(spec.first_points()):
        producer = next(c for c in first if c.strategy == "full_ft" and c.task == cfg.task
                        and c.recipe == cfg.prior_recipe)
        assert (producer.train_split, producer.eval_split, producer.seed, producer.backbone) == \
            (cfg.train_split, cfg.eval_split, cfg.seed, cfg.backbone)
    # counted once by the plan: the tune stage costs 7 FT phases less than training them again
    kept, trained = StageCost(), StageCost()
    for cfg in first + spec.tune_trials(spec.first_points()):
        kept.add(cfg)
        trained.add(replace(cfg, kept_as_prior=False))
    assert trained.total.trial_epochs - kept.total.trial_epochs == len(spec.tasks) * spec.epochs
    # ViT-B/16's 350 MB per run, over every FT grid point of 19 tasks, would not fit
    paper = get_study("paper")
    assert weights_bytes(paper.backbones[0]) > 300e6 and not paper.keeps_tune_priors()
    assert not any(c.kept_as_prior for c in paper.tune_trials())
