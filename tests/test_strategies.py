"""Every registered strategy: which parameters receive gradients, frozen weights bit-identical
after optimiser steps, plus the strategy-specific promises (deep prompts act at every layer,
LoRA starts as the identity, FT-then-PT starts from the FT weights and a fresh head)."""
from __future__ import annotations

import importlib
import math
import pkgutil

import pytest
import torch

import trainables.strategies
from tests.conftest import TINY_VIT, tiny_trial
from trainables.backbones import create_backbone, fresh_vpt_head
from trainables.config import Recipe
from trainables.loop import Normalize, Split, set_train_mode, train
from trainables.strategy import all_strategies, get_strategy, unchanged
from trainables.trial import train_model

STRATEGIES = sorted(all_strategies())


def adapted(strategy_name: str, cache_dir: str, seed: int = 0, pretrained: set | None = None):
    """The strategy and the tiny ViT it adapted; `pretrained` collects the ids of the backbone's
    own parameters (the head's aside) before the strategy adds any."""
    torch.manual_seed(seed)
    strategy = get_strategy(strategy_name)
    model = create_backbone(TINY_VIT, num_classes=10)
    if pretrained is not None:
        head = {id(p) for p in model.get_classifier().parameters()}
        pretrained.update(id(p) for p in model.parameters() if id(p) not in head)
    return strategy, strategy.prepare(model, tiny_trial(cache_dir, strategy_name))


def batch(n=8, seed=0):
    generator = torch.Generator().manual_seed(seed)
    images = torch.randint(0, 256, (n, 32, 32, 3), dtype=torch.uint8, generator=generator)
    return images, torch.randint(0, 10, (n,), generator=generator)


NORMALIZE = Normalize.of((0.5,) * 3, (0.5,) * 3, "cpu")


def test_each_strategy_module_registers_the_strategy_it_is_named_after():
    modules = {m.name for m in pkgutil.iter_modules(trainables.strategies.__path__)}
    assert modules == set(STRATEGIES)
    for name in modules:
        module = importlib.import_module(f"trainables.strategies.{name}")
        assert module.STRATEGY is get_strategy(name) and module.STRATEGY.name == name
        assert module.__doc__, f"{name} has no docstring"


@pytest.mark.parametrize("name", STRATEGIES)
def test_gradients_reach_exactly_the_trainable_parameters(name, cache_dir):
    pretrained: set[int] = set()
    strategy, model = adapted(name, cache_dir, pretrained=pretrained)
    images, labels = batch()
    set_train_mode(model)
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    # one step first: a zero-initialised factor (LoRA's B, an adapter's up projection) passes no
    # gradient to its partner at step 0
    optimiser = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.1)
    for _ in range(2):
        optimiser.zero_grad()
        torch.nn.functional.cross_entropy(model(NORMALIZE(images)), labels).backward()
        optimiser.step()
    with_grad = {n for n, p in model.named_parameters()
                 if p.grad is not None and p.grad.abs().sum() > 0}
    assert "head.weight" in trainable, "every strategy trains the new head"
    assert with_grad == trainable
    # what trains follows from the strategy's declarations
    named = dict(model.named_parameters())
    backbone = {n for n, p in named.items() if id(p) in pretrained}
    added = set(named) - backbone - {"head.weight", "head.bias"}
    assert bool(trainable & backbone) == strategy.trains_backbone
    assert any(n.startswith("prompt.") for n in trainable) == strategy.prompted
    assert bool(added) == (strategy.adapt is not unchanged)
    assert added <= trainable, "a strategy's new parameters train"


@pytest.mark.parametrize("name", STRATEGIES)
def test_frozen_weights_are_bit_identical_after_optimiser_steps(name, cache_dir):
    strategy, model = adapted(name, cache_dir)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    images, labels = batch(64)
    split = Split(images, labels, "train")
    recipe = Recipe("sgd", 1.0, 0.01, epochs=2, warmup_epochs=0, batch_size=16)
    train(model, split, Split(images, labels, "val"), NORMALIZE, recipe, 0, lambda m: None)
    for n, p in model.named_parameters():
        if p.requires_grad:
            assert not torch.equal(before[n], p), f"{n} should have moved"
        else:
            assert torch.equal(before[n], p), f"frozen {n} changed"


def test_frozen_encoder_runs_in_eval_mode_while_prompt_dropout_trains(cache_dir):
    _, model = adapted("vpt_deep", cache_dir)
    set_train_mode(model)
    assert model.prompt.training and model.prompt.dropout.training
    assert not model.blocks.training and not model.patch_embed.training
    _, full = adapted("full_ft", cache_dir)
    set_train_mode(full)
    assert full.blocks.training


def _tokens_entering_each_block(model, images):
    seen = []
    hooks = [block.register_forward_pre_hook(lambda m, a: seen.append(a[0].detach().clone()))
             for block in model.blocks]
    model(images)
    for hook in hooks:
        hook.remove()
    return seen


def test_prompts_sit_between_class_token_and_patches(cache_dir):
    _, model = adapted("vpt_shallow", cache_dir)
    model.eval()
    x = NORMALIZE(batch(2)[0])
    seen = _tokens_entering_each_block(model, x)
    patches = model.patch_embed.num_patches
    # the hooks registered above run after the prompt hook of block 0
    assert seen[0].shape[1] == 1 + 4 + patches
    torch.testing.assert_close(seen[0][0, 1:5], model.prompt.embeddings[0])


def test_deep_prompts_act_at_every_layer(cache_dir):
    _, model = adapted("vpt_deep", cache_dir)
    model.eval()
    x = NORMALIZE(batch(2)[0])
    seen = _tokens_entering_each_block(model, x)
    for layer in range(1, len(model.blocks)):
        torch.testing.assert_close(seen[layer][0, 1:5], model.prompt.deep_embeddings[layer - 1])
    reference = model(x)
    for layer in range(len(model.blocks) - 1):
        saved = model.prompt.deep_embeddings.detach().clone()
        with torch.no_grad():    # a random change (a constant shift is undone by LayerNorm)
            model.prompt.deep_embeddings[layer] += torch.randn_like(saved[layer])
        assert (model(x) - reference).abs().max() > 1e-3, f"layer {layer + 1} prompts inert"
        with torch.no_grad():
            model.prompt.deep_embeddings.copy_(saved)


def test_shallow_prompts_are_not_replaced_after_the_first_layer(cache_dir):
    _, model = adapted("vpt_shallow", cache_dir)
    assert model.prompt.deep_embeddings is None
    model.eval()
    seen = _tokens_entering_each_block(model, NORMALIZE(batch(2)[0]))
    assert not torch.allclose(seen[1][0, 1:5], seen[0][0, 1:5])   # block 0 transformed them


def test_lora_starts_as_the_identity(cache_dir):
    torch.manual_seed(0)
    plain = create_backbone(TINY_VIT, num_classes=10).eval()
    _, adapted_model = adapted("lora", cache_dir, seed=0)
    adapted_model.eval()
    x = NORMALIZE(batch(4)[0])
    torch.testing.assert_close(adapted_model(x), plain(x), rtol=0, atol=1e-6)


@pytest.mark.parametrize("name", ["ft_then_pt", "ft_then_pt_kept_head"])
def test_ft_then_pt_prompt_tunes_the_finetuned_weights_from_its_own_head(name, cache_dir):
    """The prompt phase starts from every FT weight; its head is a fresh VPT head drawn from the
    trial's seed (the paper's code drops the FT head), or the FT head for the other reading."""
    at_rest = Recipe("sgd", 0.0, 0.0, epochs=1, warmup_epochs=0, batch_size=64)   # lr 0: the
    cfg = tiny_trial(cache_dir, name, recipe=at_rest)        # prompt phase stays where it began
    ft_only = tiny_trial(cache_dir, "full_ft", recipe=cfg.prior_recipe)
    both = train_model(cfg, [].append)[0].state_dict()
    ft_weights = train_model(ft_only, [].append)[0].state_dict()
    torch.manual_seed(cfg.seed)
    pretrained = create_backbone(TINY_VIT, num_classes=10).state_dict()
    checked = 0
    for key, value in both.items():
        if key.startswith(("prompt.", "head.")):
            continue
        assert torch.equal(value, ft_weights[key]), f"{key} is not the FT weight"
        checked += not torch.equal(value, pretrained[key])
    assert checked > 0, "the FT phase changed nothing"
    head = {key: both[key] for key in ("head.weight", "head.bias")}
    if name == "ft_then_pt_kept_head":
        assert all(torch.equal(value, ft_weights[key]) for key, value in head.items())
        return
    fresh = fresh_vpt_head(create_backbone(TINY_VIT, num_classes=10), cfg.seed).state_dict()
    assert all(torch.equal(value, fresh[key]) for key, value in head.items())
    assert not torch.equal(head["head.weight"], ft_weights["head.weight"])
    torch.testing.assert_close(head["head.bias"], torch.full((10,), -math.log(99)))
    assert head["head.weight"].std().item() == pytest.approx(math.sqrt(2 / 10), rel=0.15)
    other_seed = fresh_vpt_head(create_backbone(TINY_VIT, num_classes=10), cfg.seed + 1)
    assert not torch.equal(other_seed.state_dict()["head.weight"], fresh["head.weight"])


UNSHAPING = [(name, knob) for name in STRATEGIES for knob in get_strategy(name).knobs
             if not knob.shapes_model]


@pytest.mark.parametrize("name,knob", UNSHAPING, ids=[f"{n}-{k.name}" for n, k in UNSHAPING])
def test_a_knob_said_not_to_shape_the_model_leaves_its_flops_and_parameters_alone(name, knob):
    """The plan counts one model per value of the knobs that shape it (`Knob.shapes_model`):
    every value of any other knob must give the same FLOPs and trained parameters."""
    from study.cost import _counted
    from trainables.model import phases
    other = {bool: (True, False), float: (0.5,), int: (1, 2), str: ()}[knob.type]
    values = {knob.default, *knob.search, *other}
    assert len(values) > 1
    trials = [tiny_trial("", name, **{knob.name: value}) for value in values]
    counted = {_counted(cfg, len(phases(cfg)) - 1) for cfg in trials}
    assert len(counted) == 1, (name, knob.name, counted)


def test_registries_refuse_a_second_strategy_or_study_of_the_same_name():
    from study.spec import all_studies, register_study
    from trainables.strategy import Strategy, all_strategies, everything, register
    assert "demo" in all_studies() and "full_ft" in all_strategies()      # registries filled
    with pytest.raises(ValueError, match="already registered"):
        register(Strategy("full_ft", grid="full", trains=everything))
    with pytest.raises(ValueError, match="already registered"):
        register_study("demo")(lambda smoke=False: None)
