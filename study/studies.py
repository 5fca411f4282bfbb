"""The registered studies. Each is a function of `smoke` (a run of about a minute) returning a
`StudySpec`; its docstring gives the command and what it should produce."""
from __future__ import annotations

from dataclasses import replace

import search_spaces
from study.spec import StudySpec, Upstream, register_study
from tasks import tasks_in_suite
from trainables.config import BackboneSpec, Recipe

ALL_STRATEGIES = ("full_ft", "vpt_deep", "vpt_shallow", "linear", "mixed", "ft_then_pt", "lora")

# A ViT small enough for two CPU cores: 32 px input, 8 px patches, width 64, 4 blocks, 2 heads.
DEMO_BACKBONE = BackboneSpec(
    name="vit_tiny_patch16_224",
    overrides=(("img_size", 32), ("patch_size", 8), ("embed_dim", 64), ("depth", 4),
               ("num_heads", 2)),
    weights="backbones/demo_vit_upstream.safetensors", label="demo-vit-32")
DEMO_UPSTREAM = Upstream(task="upstream",
                         recipe=Recipe("adamw", 0.004, 0.05, epochs=15, warmup_epochs=2,
                                       batch_size=128))


@register_study("demo")
def demo(smoke: bool = False) -> StudySpec:
    """Offline mini-VTAB: 7 demo tasks (2 natural, 2 specialized, 3 structured) x all seven
    strategies on a 32 px ViT that the project pretrains on crops of other photographs.
    `python -m study run demo` (`make demo`). About 12 minutes on 2 CPU cores; the README shows
    the table it produced. `--smoke`: 2 tasks x 3 strategies, 2 epochs, about a minute."""
    spec = StudySpec(
        name="demo", tasks=tasks_in_suite("demo"), strategies=ALL_STRATEGIES,
        backbone=DEMO_BACKBONE, search_space=search_spaces.DEMO, epochs=10, warmup_epochs=2,
        batch_size=64, seeds=(42, 44), prompt_dropout=0.1, lora_rank=4, prior_base_lr=0.002,
        upstream=DEMO_UPSTREAM, description="offline demo suite on a project-pretrained ViT")
    if smoke:
        spec = replace(spec, name="demo-smoke", tasks=("digits", "count"),
                       strategies=("full_ft", "vpt_deep", "linear"),
                       search_space=search_spaces.SMOKE, epochs=2, warmup_epochs=1, seeds=(42,),
                       backbone=replace(DEMO_BACKBONE,
                                        weights="backbones/demo_vit_upstream_smoke.safetensors"),
                       upstream=replace(DEMO_UPSTREAM, recipe=replace(
                           DEMO_UPSTREAM.recipe, epochs=2, warmup_epochs=1)))
    return spec
