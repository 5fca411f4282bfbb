"""FacT-TT and FacT-TK against PETL_Vision's (tests/petl_vision_reference.py): the adapted timm ViT
computes the official forward in float64, in eval and in train mode alike; exactly the factors the
official code trains receive gradients, the same ones; the trainable count on ViT-B/16 is what
PETL_Vision recorded; `timm_init` starts the factors as PETL_Vision's model does (or as its
module is written)."""
from __future__ import annotations

import dataclasses

import pytest
import torch

from common.errors import StudyInputError
from tests.conftest import TINY_VIT, tiny_trial
from tests.petl_vision_reference import (BACKBONE, assert_same_forward, assert_same_gradients,
                                         images, inserted_parameters, models, petl_params,
                                         randomise)
from trainables.backbones import create_backbone
from trainables.strategy import get_strategy

KINDS = ("tt", "tk")


def fact_models(kind: str, rank: int = 3, scaler: float = 0.7):
    """(ours, reference) with random factors, the same in both."""
    ours, reference = models(f"fact_{kind}", petl_params(fact_type=kind, fact_dim=rank,
                                                         fact_scaler=scaler),
                             bottleneck=rank, scaler=scaler)
    randomise(*ours.fact.parameters())
    reference.blocks[0].attn.fact.load_state_dict(ours.fact.state_dict())
    return ours, reference


@pytest.mark.parametrize("kind", KINDS)
def test_fact_computes_petl_visions_forward(kind):
    ours, reference = fact_models(kind)
    assert_same_forward(ours, reference, images())


@pytest.mark.parametrize("kind", KINDS)
def test_fact_trains_what_petl_vision_trains_with_its_gradients(kind):
    ours, reference = fact_models(kind)
    shared = "blocks.0.attn.fact."     # the one FacT every block holds: its first name

    def counterparts(name: str) -> list[str]:
        return ["fact." + name.removeprefix(shared) if name.startswith(shared) else name]

    assert_same_gradients(ours, reference, images(), counterparts)


@pytest.mark.parametrize("strategy, rank, recorded", [
    # tune_output/default_vtab/processed_vtab/caltech101/<method>/final_result.json:
    # "inserted_parameters", at its best_tune's fact_dim
    ("fact_tt", 32, 196608),
    ("fact_tk", 64, 369664),
])
def test_trainable_count_on_vit_b16_is_petl_visions(strategy, rank, recorded):
    assert inserted_parameters(strategy, bottleneck=rank) == recorded


@pytest.mark.parametrize("kind", KINDS)
def test_timm_init_starts_where_petl_visions_model_does(kind):
    x = images()
    plain, _ = models("linear", petl_params())
    plain.eval()
    as_run, _ = models(f"fact_{kind}", petl_params(), timm_init=True)
    as_written, _ = models(f"fact_{kind}", petl_params(), timm_init=False)
    as_run.eval()
    as_written.eval()
    # timm's ViT init draws every nn.Linear again: v is not zero, the model not the pretrained one
    assert 0.015 < as_run.fact.FacTv.weight.std() < 0.025
    assert (as_run(x) - plain(x)).abs().max() > 1e-4
    # as model/fact.py writes it, v starts at zero: the pretrained model
    assert torch.count_nonzero(as_written.fact.FacTv.weight) == 0
    torch.testing.assert_close(as_written(x), plain(x), rtol=0, atol=1e-12)


def test_fact_refuses_a_vit_whose_mlp_is_not_four_times_as_wide():
    spec = dataclasses.replace(TINY_VIT, overrides=TINY_VIT.overrides + (("mlp_ratio", 2.0),))
    model = create_backbone(spec, num_classes=10)
    with pytest.raises(StudyInputError, match="MLP 4 x as wide"):
        get_strategy("fact_tt").prepare(model, tiny_trial("", "fact_tt", backbone=spec))


def test_backbone_keeps_its_parameter_names():
    ours, _ = models("fact_tk", petl_params())
    plain = create_backbone(BACKBONE, num_classes=10)
    names = {n for n, _ in ours.named_parameters()}
    assert names - {n for n, _ in plain.named_parameters()} == {
        "fact.FacTu.weight", "fact.FacTv.weight", "fact.FacTp", "fact.FacTc"}
