"""LoRA against PETL_Vision's (tests/petl_vision_reference.py). Its update is the project's `lora`
update (one B A x over the whole qkv, scale 1 at lora_alpha's default, the same init as written):
the two compute the same forward in eval mode. `petl_lora` adds what differs in training: dropout
0.1 on the update's input (the same draws as PETL_Vision's in train mode), the rank searched over
(1, 8, 16, 32), and A and B drawn again by timm's ViT init as PETL_Vision's model does."""
from __future__ import annotations

import math

import pytest
import torch

from tests.petl_vision_reference import (assert_same_forward, assert_same_gradients, images,
                                         inserted_parameters, models, petl_forward, petl_params,
                                         randomise)
from trainables.strategy import get_strategy

RANK = 3


def lora_models(strategy: str = "petl_lora", **knobs):
    """(ours, reference) with random A and B, the same in both."""
    knobs = knobs or {"bottleneck": RANK}
    ours, reference = models(strategy, petl_params(lora_bottleneck=RANK), **knobs)
    with torch.no_grad():
        for mine, official in zip(ours.blocks, reference.blocks):
            randomise(mine.attn.qkv.lora_a, mine.attn.qkv.lora_b)
            official.attn.lora.lora_a.weight.copy_(mine.attn.qkv.lora_a)
            official.attn.lora.lora_b.weight.copy_(mine.attn.qkv.lora_b)
    return ours, reference


def test_petl_lora_computes_petl_visions_forward():
    ours, reference = lora_models()
    assert_same_forward(ours, reference, images())


def test_petl_lora_trains_what_petl_vision_trains_with_its_gradients():
    ours, reference = lora_models()

    def counterparts(name: str) -> list[str]:      # blocks.i.attn.lora.lora_a.weight
        block, _, factor = name.partition(".attn.lora.")
        return [f"{block}.attn.qkv.{factor.removesuffix('.weight')}" if factor else name]

    assert_same_gradients(ours, reference, images(), counterparts)


@torch.no_grad()
def test_the_lora_strategy_computes_the_same_update_without_dropout():
    ours, reference = lora_models("lora", lora_rank=RANK)
    assert get_strategy("lora").knob("lora_alpha").default is None      # scale (rank / rank) 1
    x = images()
    ours.eval()
    reference.eval()
    torch.testing.assert_close(ours(x), petl_forward(reference, x), rtol=0, atol=1e-10)
    ours.train()
    reference.train()                   # PETL_Vision's lora_drop acts, the `lora` strategy has none
    torch.manual_seed(1)
    trained = ours(x)
    torch.manual_seed(1)
    assert (trained - petl_forward(reference, x)).abs().max() > 1e-6


def test_as_written_both_start_as_the_pretrained_model_with_the_same_init():
    written, _ = models("petl_lora", petl_params(), timm_init=False, bottleneck=RANK)
    existing, _ = models("lora", petl_params(), lora_rank=RANK)
    for model in (written, existing):
        qkv = model.blocks[0].attn.qkv
        assert torch.count_nonzero(qkv.lora_b) == 0
        bound = 1 / math.sqrt(qkv.lora_a.shape[1])         # Kaiming-uniform, a = sqrt(5)
        assert qkv.lora_a.abs().max() <= bound and qkv.lora_a.abs().max() > bound / 2


def test_timm_init_draws_a_and_b_again_as_petl_visions_model_does():
    x = images()
    plain, _ = models("linear", petl_params())
    as_run, _ = models("petl_lora", petl_params(), bottleneck=32)
    plain.eval()
    as_run.eval()
    b = torch.cat([block.attn.qkv.lora_b.flatten() for block in as_run.blocks])
    assert 0.018 < b.std() < 0.022
    assert (as_run(x) - plain(x)).abs().max() > 1e-4


@pytest.mark.parametrize("strategy, knobs", [("petl_lora", {"bottleneck": 32}),
                                             ("lora", {"lora_rank": 32})])
def test_trainable_count_on_vit_b16_is_petl_visions(strategy, knobs):
    # tune_output/default_vtab/processed_vtab/caltech101/lora/final_result.json:
    # "inserted_parameters" 1179648 at lora_bottleneck 32
    assert inserted_parameters(strategy, **knobs) == 1179648

