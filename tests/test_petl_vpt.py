"""VPT against PETL_Vision's (tests/petl_vision_reference.py). `petl_vpt_deep` and
`petl_vpt_shallow` compute its forward in float64, in eval and in train mode alike, and train what
it trains with its gradients. Where the project's `vpt_deep` (the official VPT code) agrees with it,
the prompted forward, the test shows it; where the two differ, the tests show how: shallow prompts
that leave after block 0, one prompt-dropout mask for the batch, the encoder's drop-path kept."""
from __future__ import annotations

import pytest
import torch
from timm.layers import DropPath

from tests.petl_vision_reference import (assert_same_forward, assert_same_gradients, images,
                                         inserted_parameters, models, petl_forward, petl_params,
                                         randomise)
from trainables.strategy import get_strategy

LENGTH = 4
MODES = ("deep", "shallow")


def vpt_models(strategy: str, mode: str, dropout: float = 0.1):
    """(ours, reference) with random prompts, the same in both."""
    ours, reference = models(strategy, petl_params(vpt_mode=mode, vpt_num=LENGTH,
                                                   vpt_dropout=dropout),
                             prompt_length=LENGTH, prompt_dropout=dropout)
    prompts = [p for p in (ours.prompt.embeddings, ours.prompt.deep_embeddings) if p is not None]
    randomise(*prompts)
    with torch.no_grad():
        reference.vpt.prompt_embeddings.copy_(torch.cat(prompts))
    return ours, reference


@pytest.mark.parametrize("mode", MODES)
def test_petl_vpt_computes_petl_visions_forward(mode):
    ours, reference = vpt_models(f"petl_vpt_{mode}", mode)
    assert_same_forward(ours, reference, images())


@pytest.mark.parametrize("mode", MODES)
def test_petl_vpt_trains_what_petl_vision_trains_with_its_gradients(mode):
    ours, reference = vpt_models(f"petl_vpt_{mode}", mode)
    layers = ["prompt.embeddings"] + (["prompt.deep_embeddings"] if mode == "deep" else [])

    def counterparts(name: str) -> list[str]:
        return layers if name == "vpt.prompt_embeddings" else [name]

    assert_same_gradients(ours, reference, images(), counterparts)


@torch.no_grad()
def test_vpt_deep_computes_petl_visions_prompted_forward():
    """Prompts between the class token and the patches, replaced before each block (official
    VPT), or prepended and dropped around each block (PETL_Vision): the same logits."""
    ours, reference = vpt_models("vpt_deep", "deep")
    ours.eval()
    reference.eval()
    x = images()
    torch.testing.assert_close(ours(x), petl_forward(reference, x), rtol=0, atol=1e-10)


@torch.no_grad()
def test_petl_vision_drops_shallow_prompts_after_the_first_block():
    official_vpt, reference = vpt_models("vpt_shallow", "shallow")
    petl, _ = vpt_models("petl_vpt_shallow", "shallow")
    x = images()
    for model in (official_vpt, petl, reference):
        model.eval()
    assert (official_vpt(x) - petl_forward(reference, x)).abs().max() > 1e-3
    seen = {}
    for name, model in (("official", official_vpt), ("petl", petl)):
        def record(_module, args, name=name):
            seen[name] = args[0].shape[1]          # tokens entering block 1
        hook = model.blocks[1].register_forward_pre_hook(record)
        model(x)
        hook.remove()
    patches = petl.patch_embed.num_patches
    assert seen == {"official": 1 + LENGTH + patches, "petl": 1 + patches}


def test_petl_prompt_dropout_draws_one_mask_for_the_batch():
    petl, _ = vpt_models("petl_vpt_deep", "deep", dropout=0.5)
    official_vpt, _ = vpt_models("vpt_deep", "deep", dropout=0.5)
    for model in (petl, official_vpt):
        model.train()
    shared = petl.prompt.at_layer(1, 4)
    assert (shared == 0).any() and all(torch.equal(shared[0], row) for row in shared[1:])
    per_sample = official_vpt.prompt.at_layer(1, 4)
    assert not all(torch.equal(per_sample[0], row) for row in per_sample[1:])


def test_petl_vpt_keeps_the_encoders_drop_path_in_train_mode():
    petl, _ = vpt_models("petl_vpt_deep", "deep")
    official_vpt, _ = vpt_models("vpt_deep", "deep")
    rates = {name: [m.drop_prob for m in model.modules() if isinstance(m, DropPath)]
             for name, model in (("petl", petl), ("official", official_vpt))}
    assert rates["petl"] and max(rates["petl"]) == pytest.approx(0.1)
    assert rates["official"] and max(rates["official"]) == 0.0
    assert not get_strategy("petl_vpt_deep").frozen_eval and get_strategy("vpt_deep").frozen_eval


@pytest.mark.parametrize("strategies, length, recorded", [
    # tune_output/default_vtab/processed_vtab/caltech101/<method>/final_result.json:
    # "inserted_parameters", at its best_tune's vpt_num
    (("petl_vpt_deep", "vpt_deep"), 50, 460800),
    (("petl_vpt_shallow", "vpt_shallow"), 5, 3840),
])
def test_trainable_count_on_vit_b16_is_petl_visions(strategies, length, recorded):
    for strategy in strategies:
        assert inserted_parameters(strategy, prompt_length=length) == recorded

