"""The registered studies: the offline demo, the paper's presets and PETL_Vision's protocol. Each is a function of `smoke`
(a tiny version) returning a `StudySpec`; its docstring gives the command and the numbers it
should produce (for the presets, the paper's, which `analysis/data/results.csv` holds in full)."""
from __future__ import annotations

from dataclasses import replace

import search_spaces
from study.spec import StudySpec, Upstream, register_backbone, register_study
from tasks import tasks_in_suite
from tasks.spec import DEMO_SCALE_SIZES
from trainables.backbones import timm_vit
from trainables.config import BackboneSpec, Recipe
from trainables.strategy import all_strategies, get_strategy

ALL_STRATEGIES = ("full_ft", "vpt_deep", "vpt_shallow", "linear", "mixed", "ft_then_pt", "lora")

DEMO_UPSTREAM = Upstream(task="upstream",
                         recipe=Recipe("adamw", 0.004, 0.05, epochs=15, warmup_epochs=2,
                                       batch_size=128),
                         shipped="demo_vit_upstream.safetensors")
# A ViT small enough for two CPU cores: 32 px input, 8 px patches, width 64, 4 blocks, 2 heads.
DEMO_BACKBONE = register_backbone(BackboneSpec(
    name="vit_tiny_patch16_224",
    overrides=(("img_size", 32), ("patch_size", 8), ("embed_dim", 64), ("depth", 4),
               ("num_heads", 2)),
    weights="backbones/demo_vit_upstream.safetensors", label="demo-vit-32"), DEMO_UPSTREAM)
SMOKE_WEIGHTS = "backbones/demo_vit_upstream_smoke.safetensors"


@register_study("demo")
def demo(smoke: bool = False) -> StudySpec:
    """Offline mini-VTAB: 7 demo tasks (2 natural, 2 specialized, 3 structured) x all seven
    strategies on a 32 px ViT that the project pretrained on crops of other photographs (its
    weights ship in study/data/; `python -m study pretrain demo` makes them here).
    `python -m study run demo` (`make demo`); docs/demo.md has how long it takes and the table
    it produced. `--smoke`: 2 tasks x 3 strategies, 2 epochs, pretraining its own backbone for 2
    epochs."""
    spec = StudySpec(
        name="demo", tasks=tasks_in_suite("demo"), strategies=ALL_STRATEGIES,
        backbones=(DEMO_BACKBONE,), search_space=search_spaces.DEMO, epochs=10, warmup_epochs=2,
        batch_size=64, seeds=(42, 44), knobs={"prompt_dropout": 0.1, "lora_rank": 4},
        upstream=DEMO_UPSTREAM, save_full_weights=True,
        description="offline demo suite on a project-pretrained ViT")
    if smoke:
        spec = replace(spec, name="demo-smoke", tasks=("digits", "count"),
                       strategies=("full_ft", "vpt_deep", "linear"),
                       search_space=search_spaces.SMOKE, epochs=2, warmup_epochs=1, seeds=(42,),
                       backbones=(replace(DEMO_BACKBONE, weights=SMOKE_WEIGHTS),),
                       upstream=replace(DEMO_UPSTREAM, shipped=None, recipe=replace(
                           DEMO_UPSTREAM.recipe, epochs=2, warmup_epochs=1)))
    return spec


@register_study("demo-scale")
def demo_scale(smoke: bool = False) -> StudySpec:
    """Dataset capacity on the demo (the paper's Figure 4 and Tables 5/6): full_ft, vpt_deep and
    the linear probe on one task per group (photos, microscopy, count with 4,000-image pools) at
    100, 400, 1,600 and 3,200 training images (val a quarter of that), on the demo's ViT and grid.
    `python -m study run demo-scale`, then `python -m analysis capacity demo-scale`;
    docs/demo.md has how long it takes and what it found. `--smoke`: one task, two sizes."""
    spec = replace(demo(), name="demo-scale", tasks=tasks_in_suite("demo-scale"),
                   strategies=("full_ft", "vpt_deep", "linear"),
                   settings=tuple(str(n) for n in DEMO_SCALE_SIZES),
                   description="the demo's data-size study (dataset capacity)")
    if smoke:
        small = demo(smoke=True)
        spec = replace(spec, name="demo-scale-smoke", tasks=("count_scale",),
                       settings=("100", "400"), search_space=small.search_space,
                       epochs=small.epochs, warmup_epochs=small.warmup_epochs, seeds=small.seeds,
                       backbones=small.backbones, upstream=small.upstream)
    return spec


@register_study("demo-petl")
def demo_petl(smoke: bool = False) -> StudySpec:
    """Every registered strategy, the PETL_Vision methods included, on one demo task per group
    (photos, microscopy, count) and the demo's backbone and grids (the methods on its 'petl'
    grid): each method searches its first searched knob over the first and last of the values
    PETL_Vision searches, and keeps its other knobs at their defaults. `python -m study run
    demo-petl` (`make demo-petl`); docs/demo-petl.md shows its table and the accuracy against
    trainable parameters. `--smoke`: 2 tasks, 2 epochs, the smoke grids."""
    base = demo(smoke=smoke)
    strategies = ("full_ft", *sorted(set(all_strategies()) - {"full_ft"}))
    knobs = dict(base.knobs)
    for name in strategies:
        searched = [knob for knob in get_strategy(name).knobs if knob.search]
        for index, knob in enumerate(searched):
            knobs[f"{name}.{knob.name}"] = (
                (knob.search[0], knob.search[-1]) if index == 0 else knob.default)
    return replace(base, name="demo-petl" + ("-smoke" if smoke else ""), strategies=strategies,
                   tasks=base.tasks if smoke else ("photos", "microscopy", "count"), knobs=knobs,
                   description="every strategy, the PETL methods on a reduced knob grid")


# The paper's backbones. Weights files live under <cache dir>/backbones/; `obtain` says where from.
# As the paper's code runs them: ImageNet mean/std for every VTAB task (VPT
# src/data/datasets/tf_dataset.py:76-77), the official head init (src/models/mlp.py:52-57) and, for
# the supervised ViT-B/16, its config's dropout 0.1 (src/configs/vit_configs.py:35).
IMAGENET_MEAN_STD = ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))
VIT_B16_IN21K = register_backbone(BackboneSpec(
    "vit_base_patch16_224.orig_in21k", weights="backbones/ViT-B_16.npz", label="vit_b16-in21k",
    mean_std=IMAGENET_MEAN_STD, dropout=0.1, head_init="vpt",
    obtain="put the original ViT-B/16 ImageNet-21k checkpoint there "
           "(gs://vit_models/imagenet21k/ViT-B_16.npz)"))
SWIN_B_IN21K = register_backbone(BackboneSpec(
    "swin_base_patch4_window7_224.ms_in22k", label="swin_b-in21k", mean_std=IMAGENET_MEAN_STD,
    head_init="vpt", overrides=(("drop_path_rate", 0.5),),     # VPT build_vit_backbone.py:311
    weights="backbones/swin_base_patch4_window7_224_22k.pth",
    obtain="put Microsoft's Swin-B ImageNet-22k checkpoint swin_base_patch4_window7_224_22k.pth "
           "there"))
VIT_B16_MAE = register_backbone(BackboneSpec(
    "vit_base_patch16_224.mae", weights="backbones/mae_pretrain_vit_base.pth",
    label="vit_b16-mae", mean_std=IMAGENET_MEAN_STD, head_init="vpt",
    # as MAE's fine-tuning model that VPT builds (src/models/vit_backbones/vit_mae.py:17-44,61):
    # the mean of every token but the class token (prompts too) through a new fc_norm; drop-path
    overrides=(("global_pool", "avg"), ("drop_path_rate", 0.1)), fresh=("fc_norm.",),
    unused=("norm.",), prompts_in_pool=True,
    obtain="put MAE's mae_pretrain_vit_base.pth there"))
# MoCo v3's ViT keeps its fixed 2-D sin-cos position embedding frozen, finetuning included
# (VPT src/models/vit_backbones/vit_moco.py:27-28,52-68: requires_grad=False).
VIT_B16_MOCOV3 = register_backbone(BackboneSpec(
    "vit_base_patch16_224", weights="backbones/mocov3_vit-b-300ep.pth.tar",
    key_prefix="module.base_encoder.", label="vit_b16-mocov3",
    mean_std=IMAGENET_MEAN_STD, head_init="vpt", fixed=("pos_embed",),
    obtain="put MoCo v3's vit-b-300ep.pth.tar there (renamed mocov3_vit-b-300ep.pth.tar)"))

# TOAST's ViT-B/16 (visual_classification/src/models/vit_models.py:95: drop_path 0.1, no dropout);
# its own bottom-up in21k checkpoint is not public, so the original one stands in.
VIT_B16_IN21K_TOAST = register_backbone(replace(
    VIT_B16_IN21K, label="vit_b16-in21k-toast", dropout=0.0, overrides=(("drop_path_rate", 0.1),)))

# Backbones by timm name: weights from timm's hub, or a file given with `--weights FILE`; each
# normalised as it was pretrained (timm's config for the name: ImageNet's for DINOv2, OpenAI
# CLIP's for CLIP and EVA-02). DINOv2 runs at 224 pixels, as VTAB's images come (its 518-pixel
# position embedding resampled to the 16 x 16 grid on loading, as timm does).
DINOV2_B14 = register_backbone(timm_vit("vit_base_patch14_dinov2.lvd142m", label="dinov2-vitb14",
                                        check=False, overrides=(("img_size", 224),)))
DINOV2_REG4_B14 = register_backbone(timm_vit("vit_base_patch14_reg4_dinov2.lvd142m",
                                             label="dinov2-reg4-vitb14", check=False,
                                             overrides=(("img_size", 224),)))
CLIP_B16 = register_backbone(timm_vit("vit_base_patch16_clip_224.openai", label="clip-vitb16",
                                      check=False))
EVA02_B16 = register_backbone(timm_vit("eva02_base_patch16_clip_224.merged2b",
                                       label="eva02-clip-vitb16", check=False))
NAMED_BACKBONES = (DINOV2_B14, DINOV2_REG4_B14, CLIP_B16, EVA02_B16)

PAPER_STRATEGIES = ("full_ft", "vpt_deep", "mixed", "ft_then_pt")


def _paper(name: str, smoke: bool, **changes) -> StudySpec:
    """The paper's protocol as its code ran it (`python -m study explain paper` lists every
    setting with its source): ViT-B/16 in21k with ImageNet normalisation, the official head and
    FT dropout; FT on the official AdamW grid at batch 128 with 5 warm-up epochs, VPT and Mixed on
    the SGD grid at batch 64 with 10; VPT's per-task prompt lengths, prompt dropout 0.1; 100
    epochs, VPT's per-epoch warm-up and cosine; FT-then-PT's FT phase is the task's selected FT
    recipe; 5 seeds. Test and val are evaluated every 10 epochs and after the last."""
    spec = StudySpec(name=name, tasks=tasks_in_suite("vtab1k"), strategies=PAPER_STRATEGIES,
                     backbones=(VIT_B16_IN21K,), search_space=search_spaces.PAPER, epochs=100,
                     warmup_epochs=10, batch_size=64, knobs={"prompt_dropout": 0.1}, schedule="vpt_epoch",
                     eval_every=10, description=name)
    spec = replace(spec, **changes)
    if smoke:
        spec = replace(spec, name=f"{name}-smoke", tasks=spec.tasks[:2], epochs=1,
                       warmup_epochs=0, seeds=spec.seeds[:1], eval_every=1,
                       search_space=replace(spec.search_space, name="smoke",
                                            grids=search_spaces.SMOKE_GRIDS))
    return spec


@register_study("paper")
def paper(smoke: bool = False) -> StudySpec:
    """Tables 1 and 2: 19 VTAB-1k tasks x FT, VPT-deep, Mixed, FT-then-PT on ViT-B/16 in21k.
    `python -m study plan paper`, then `python -m study run paper --address auto`.
    The paper's group means (FT / VPT / Mixed / FT-then-PT): Natural 75.19 / 79.53 / 72.80 /
    78.20; Specialized 83.48 / 82.65 / 79.78 / 82.70; Structured 48.07 / 56.09 / 42.94 / 50.38.
    VPT beats FT on 6 of 7 natural, 2 of 4 specialized and 7 of 8 structured tasks (plus a tie)."""
    return _paper("paper", smoke)


@register_study("paper-as-written")
def paper_as_written(smoke: bool = False) -> StudySpec:
    """Tables 1 and 2 as the paper's text reads (P:79, P:512): one SGD grid for every strategy
    (FT included) at batch 64 with 10 warm-up epochs, and the prompt lengths of Tables 16-18;
    where the text is silent, as `paper`. To compare with `paper`: `python -m analysis compare`
    on each."""
    return _paper("paper-as-written", smoke, search_space=search_spaces.PAPER_AS_WRITTEN)


@register_study("paper-scale")
def paper_scale(smoke: bool = False) -> StudySpec:
    """Tables 5 and 6: FT and VPT-deep at 400, 800, 5000 and 10000 training images (4:1
    train/val) where the task has them. Group means FT / VPT at 400: Natural 65.04 / 73.67,
    Specialized 80.13 / 77.33, Structured 39.82 / 47.70; at 10000: 83.93 / 85.10, 90.20 / 88.70,
    84.80 / 81.46 (FT overtakes VPT on structured tasks as data grows)."""
    return _paper("paper-scale", smoke, strategies=("full_ft", "vpt_deep"),
                  settings=("400", "800", "5000", "10000"))


@register_study("paper-oneshot")
def paper_oneshot(smoke: bool = False) -> StudySpec:
    """Tables 3 and 4: one image per class for training and for validation. Group means FT /
    VPT: Natural 41.66 / 56.94, Specialized 44.30 / 47.45, Structured 17.11 / 16.83."""
    return _paper("paper-oneshot", smoke, strategies=("full_ft", "vpt_deep"), settings=("1shot",))


@register_study("paper-backbones")
def paper_backbones(smoke: bool = False) -> StudySpec:
    """Tables 7-15: FT and VPT-deep with MAE and MoCo v3 ViT-B/16 (and Swin-B in21k for FT).
    Group means FT / VPT, MAE: 59.31 / 35.31, 79.68 / 72.95, 53.82 / 27.91; MoCo v3: 71.95 /
    70.26, 84.72 / 82.33, 51.98 / 42.39; Swin-B: 79.10 / 78.78, 86.21 / 83.33, 59.65 / 51.85.
    Prompt lengths are VPT's, which the Tuned/Total rows of Tables 10-15 fit as they fit Table 3's.
    MAE as VPT builds it: average pooling over prompts and patches through a new fc_norm,
    drop-path 0.1. Swin-B runs full finetuning only here (drop-path 0.5): visual prompts are
    implemented for ViT-style backbones."""
    return _paper("paper-backbones", smoke, strategies=("full_ft", "vpt_deep"),
                  backbones=(VIT_B16_MAE, VIT_B16_MOCOV3))


@register_study("paper-backbones-swin")
def paper_backbones_swin(smoke: bool = False) -> StudySpec:
    """Tables 7-9, full finetuning of Swin-B in21k with VPT's drop-path 0.5 (FT group means
    79.10, 86.21, 59.65). VPT on Swin (prompts inside window attention) is not implemented."""
    return _paper("paper-backbones-swin", smoke, strategies=("full_ft",),
                  backbones=(SWIN_B_IN21K,))


@register_study("paper-fgvc")
def paper_fgvc(smoke: bool = False) -> StudySpec:
    """Table 19: FGVC (CUB-200-2011, NABirds, Oxford Flowers, Stanford Dogs, Stanford Cars), full
    training sets. FT 87.3 / 82.7 / 98.8 / 89.4 / 84.5 (mean 88.54); VPT 88.5 / 84.2 / 99.0 /
    90.2 / 83.6 (mean 89.11). Prompt lengths 10 / 50 / 5 / 100 / 200 (CUB, NABirds, Flowers,
    Dogs, Cars), the ones Table 19's Tuned/Total row fits. Tuned on train -> val, the final model
    trained on train only, with VPT's random crop and flip, as VPT does for FGVC. Not as VPT: its
    json val splits (val is the last 10 % of train here)."""
    return _paper("paper-fgvc", smoke, tasks=tasks_in_suite("fgvc"),
                  strategies=("full_ft", "vpt_deep"), settings=("full",),
                  search_space=search_spaces.PAPER_FGVC)


@register_study("paper-lora")
def paper_lora(smoke: bool = False) -> StudySpec:
    """Table 20: FT against LoRA on CIFAR-100 at 400, 800 and 10000 training images, under TOAST's
    protocol as the paper says (P:623): LoRA of rank 4 with loralib's alpha 1 on each qkv, SGD at
    batch 32 with 10 warm-up epochs, lr {1 ... 0.01} for LoRA and {0.001 ... 0.005} for FT,
    drop-path 0.1 with the whole model in train mode. TOAST's own ViT-B checkpoint is not public:
    the original in21k one stands in. The paper: FT 44.5 / 70.2 / 87.9, LoRA 69.6 / 83.6 /
    90.7."""
    return _paper("paper-lora", smoke, tasks=("cifar100",), strategies=("full_ft", "lora"),
                  settings=("400", "800", "10000"), backbones=(VIT_B16_IN21K_TOAST,),
                  search_space=search_spaces.TOAST,
                  knobs={"lora_rank": 4, "lora_alpha": 1.0})


# PETL_Vision's ViT-B/16 in21k (OSU-MLB/PETL_Vision @ 245d262, experiment/build_model.py:92-98):
# the original ViT-B_16.npz, drop-path 0.1 (experiment/config/default_vtab_processed.yml:3), no
# dropout (model/vision_transformer.py:64-68), a new torch Linear head (reset_classifier), pixels
# in [0, 1] without mean/std (normalized: False, default_vtab_processed.yml:57; data/dataset/
# vtab_processed.py:14-22).
NO_NORMALISATION = ((0.0, 0.0, 0.0), (1.0, 1.0, 1.0))
VIT_B16_IN21K_PETL = register_backbone(replace(
    VIT_B16_IN21K, label="vit_b16-in21k-petl", dropout=0.0, head_init="torch",
    mean_std=NO_NORMALISATION, overrides=(("drop_path_rate", 0.1),)))
# The baselines, then PETL_Vision's methods (model/*.py) under their names there; PETL_Vision's
# own LoRA and VPT (prompts before the class token; shallow prompts dropped after the first
# block) as petl_lora and petl_vpt_*. The preset runs those of them that are registered.
PETL_METHODS = ("full_ft", "linear", "vpt_deep", "vpt_shallow", "lora", "adaptformer",
                "rand_h_adapter", "rand_p_adapter", "lora_p_adapter", "convpass", "bitfit", "ln",
                "difffit", "ssf", "repadapter", "fact_tt", "fact_tk", "petl_lora",
                "petl_vpt_deep", "petl_vpt_shallow")
# What PETL_Vision searches beside lr and wd for the strategies here that do not declare it:
# vpt_num (experiment/config/method/vpt_deep.yml:2, vpt_shallow.yml:2), lora_bottleneck
# (lora.yml:2); its prompt dropout 0.1 (default_vtab_processed.yml:31).
PETL_KNOBS = {"prompt_dropout": 0.1, "vpt_deep.prompt_length": (5, 10, 50, 100),
              "vpt_shallow.prompt_length": (5, 10, 50, 100, 200),
              "lora.lora_rank": (1, 8, 16, 32)}
# PETL_Vision's stored results ran one final seed, 42 (experiment/run.py:132); its commented-out
# line run.py:133 names three, 42, 42 x 5 and 42 x 10: run here so that each cell has an interval.
PETL_SEEDS = (42, 210, 420)


@register_study("petl")
def petl(smoke: bool = False) -> StudySpec:
    """PETL_Vision's VTAB-1k protocol for the baselines and the PETL methods registered here
    (OSU-MLB/PETL_Vision @ 245d262, CVPR 2025; every setting with its file:line: `python -m study
    explain petl`): the 19 tasks on its ViT-B/16 in21k (no normalisation, drop-path 0.1, the whole
    model in train mode for its methods); AdamW, lr {0.001, 0.01} unscaled x wd {1e-4, 1e-3} x each
    method's own grid, batch 64, 100 epochs, timm's cosine with 10 warm-up epochs from 1e-6 to a
    floor of 1e-5; selected by the last epoch's val200 accuracy, then trained on train800val200
    and tested at the last epoch, seeds 42, 210, 420 (theirs: 42 alone).
    `python -m study plan petl`, then `python -m study run petl --address auto`, and
    `python -m analysis compare petl petl`. PETL_Vision's means over the 19 tasks (and of the 3
    group means): full 58.49 (61.85), linear 55.86 (60.52), vpt_deep 71.34 (73.40), lora 72.91
    (75.24), adaptformer 73.72 (75.97), convpass 74.23 (76.35), the best."""
    spec = StudySpec(name="petl", tasks=tasks_in_suite("vtab1k"),
                     strategies=tuple(s for s in PETL_METHODS if s in all_strategies()),
                     backbones=(VIT_B16_IN21K_PETL,), search_space=search_spaces.PETL,
                     epochs=100, warmup_epochs=10, batch_size=64, seeds=PETL_SEEDS,
                     tune_seed=42, eval_every=10, knobs=PETL_KNOBS, schedule="petl_epoch",
                     description="PETL_Vision's VTAB-1k protocol")
    if smoke:
        spec = replace(spec, name="petl-smoke", tasks=spec.tasks[:2], epochs=1, warmup_epochs=0,
                       seeds=spec.seeds[:1], eval_every=1,
                       knobs={k: v[:1] if isinstance(v, tuple) else v for k, v in
                              spec.knobs.items()},
                       search_space=replace(spec.search_space, grids=search_spaces.SMOKE_GRIDS))
    return spec
