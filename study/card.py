"""The protocol card of a study: one row per setting and strategy with the value the study runs and
where that value comes from: a line of the paper's text (P:<line>; `study.paper` names the paper,
arXiv 2401.12902, and says where each cited line sits, in a legend under the card) or a
file:line of the code that produced its numbers (VPT-or-FT = ChengHan111/VPT-or-FT @ 262898f,
which copies KMnP/vpt's solver, data and ViT code unchanged). Where the text and that code disagree the row says so and which one the study follows.
Values are read from the `StudySpec`; sources are data here, keyed by the value they justify, so a
value without a source reads "project choice". `python -m study explain <study>` prints it; each
run of the study logs it to MLflow."""
from __future__ import annotations

import csv
import io
from dataclasses import dataclass

from study import paper
from study.spec import StudySpec
from tasks import get_task
from tasks.spec import Augment
from tasks.splits import setting_splits
from trainables.strategy import get_strategy

VPT = "VPT-or-FT"        # the paper's code; its solver/data/model files are KMnP/vpt's


@dataclass(frozen=True)
class Source:
    where: str
    text_vs_code: str = ""      # empty: the text and the code agree (or one of them is silent)


SOURCES: dict[tuple[str, object], Source] = {
    ("optimizer", "vpt_official_ft"): Source(
        f"{VPT} configs/base-finetune.yaml:14; src/solver/optimizer.py:36-48,100-136,139-214",
        "text (P:79): one grid for all strategies, no optimiser named; code: AdamW for FT. "
        "Follows the code"),
    ("optimizer", "paper_sgd"): Source(f"{VPT} configs/base-prompt.yaml:14-15; "
                                       f"src/solver/optimizer.py:50-88"),
    ("optimizer", "toast_ft"): Source("TOAST visual_classification/configs/base.yaml:14-15",
                                      "FT here is TOAST's (SGD, batch 32), not the paper's "
                                      "Table 1 FT: Table 20's FT numbers differ from Table 1's"),
    ("optimizer", "toast_lora"): Source("TOAST visual_classification/configs/base.yaml:14-15"),
    ("weight decay", "vpt_adamw"): Source(
        f"{VPT} src/solver/optimizer.py:36-48 (0.01 hard-coded on non-bias tensors, 0 on biases,"
        f" when the grid's wd > 0), 100-136 (wd 0: SGD momentum 0.9, no decay)"),
    ("weight decay", "vpt_sgd"): Source(f"{VPT} src/solver/optimizer.py:60-62 (the grid's wd on "
                                        f"every trained tensor but the classifier's bias)"),
    ("lr grid", "vpt_official_ft"): Source(
        f"{VPT} tune_vtab.py:219-221 (--train-type finetune); README.md:141",
        "text (P:79): {50 ... 0.05} for every strategy; code: {0.001, 0.0001, 0.0005, 0.005} for "
        "FT. Follows the code"),
    ("optimizer", "paper_sgd for full"): Source(
        "P:79 (one grid for every strategy)",
        f"the code runs FT with AdamW ({VPT} configs/base-finetune.yaml:14). Follows the text"),
    ("lr grid", "paper_sgd for full"): Source(
        "P:79", f"the code runs FT on {{0.001, 0.0001, 0.0005, 0.005}} ({VPT} "
                f"tune_vtab.py:219-221). Follows the text"),
    ("batch", ("paper_sgd for full", 64)): Source(
        "P:79 ('64/128')", f"the code runs FT at 128 ({VPT} README.md:141). Follows the text"),
    ("warm-up epochs", ("paper_sgd for full", 10)): Source(
        "P:79", f"the code warms FT up for 5 epochs ({VPT} configs/base-finetune.yaml:12). "
                f"Follows the text"),
    ("lr grid", "paper_sgd"): Source(f"P:79; {VPT} tune_vtab.py:247-253 (--train-type prompt)"),
    ("wd grid", (0.01, 0.001, 0.0001, 0.0)): Source(f"P:79; {VPT} tune_vtab.py:221,253"),
    ("batch", ("vpt_official_ft", 128)): Source(
        f"{VPT} README.md:141 (DATA.BATCH_SIZE 128)", "text (P:79): '64/128'. Follows the code"),
    ("batch", ("paper_sgd", 64)): Source(f"P:79; {VPT} README.md:142-143 (DATA.BATCH_SIZE 64)"),
    ("warm-up epochs", ("vpt_official_ft", 5)): Source(
        f"{VPT} configs/base-finetune.yaml:12",
        "text (P:79): 10 warm-up epochs; code: 5 for FT. Follows the code"),
    ("warm-up epochs", ("paper_sgd", 10)): Source(f"P:79; {VPT} configs/base-prompt.yaml:18"),
    ("epochs", 100): Source(f"P:79; {VPT} configs/base-prompt.yaml:19"),
    ("schedule", "vpt_epoch"): Source(
        f"P:79 (cosine); {VPT} src/solver/lr_scheduler.py:41-66 stepped per epoch at "
        f"src/engine/trainer.py:235 (the first epoch runs at lr 0)"),
    ("prompt lengths", "vpt"): Source(
        f"P:137,159,620 (Tuned/Total rows: 9216 P + 769 C fits one P per task); {VPT} "
        f"README.md:125 ('strictly followed the ones in VPT'), README.md:142 (cifar100: 10)",
        "text (P:512, Tables 16-18, cited from E2VPT [37]) differs on 15 of 19 tasks. Follows "
        "the code and the paper's own Tuned/Total rows"),
    ("prompt lengths", "tables_16_18"): Source(
        "P:512,596-610 (Tables 16-18)",
        "the paper's Tuned/Total rows (P:137,159) and its code use VPT's lengths. Follows the "
        "text"),
    ("prompt dropout", 0.1): Source(f"{VPT} README.md:142-143 (MODEL.PROMPT.DROPOUT 0.1)"),
    ("model dropout", "train mode"): Source(
        f"the backbone rows; the encoder trains in train mode for FT ({VPT} "
        f"src/models/vit_models.py:201-202) and for LoRA (TOAST "
        f"visual_classification/src/engine/trainer.py:196)"),
    ("model dropout", "off: frozen backbone in eval mode"): Source(
        f"{VPT} src/models/vit_models.py:222-223 (a frozen encoder is put in eval mode)"),
    ("model dropout", "off: prompted encoder in eval mode"): Source(
        f"{VPT} src/models/vit_prompt/vit.py:100-111 (its train() keeps encoder and embeddings in "
        "eval mode, Mixed included)"),
    ("augmentation", None): Source(
        f"{VPT} src/data/datasets/tf_dataset.py:215-223 (every VTAB split resized to "
        f"224, no augmentation)"),
    ("augmentation", Augment()): Source(
        "VPT src/data/transforms.py:7-38 (train: Resize(256), RandomCrop(224), "
        "RandomHorizontalFlip; eval: Resize(256), CenterCrop(224))",
        "training images are cached in 384 px canvases: a longer side beyond 384 is kept as its "
        "centre, which narrows the random crops of such images"),
    ("head init", "vpt"): Source(f"{VPT} src/models/mlp.py:52-57; src/models/vit_models.py:"
                                 f"208-214 (special_bias=True)"),
    ("normalisation", ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))): Source(
        f"{VPT} src/data/datasets/tf_dataset.py:76-77 (ImageNet mean/std for every VTAB task)"),
    ("splits", ("800", "tune")): Source(
        f"P:75; {VPT} src/data/datasets/tf_dataset.py:247-252; task_adaptation split strings"),
    ("splits", ("800", "final")): Source(f"{VPT} tune_vtab.py:166-175 (train800val200 -> test)"),
    ("splits", ("sweep", "tune")): Source(
        f"P:115; {VPT} README.md:132 (the split slices edited per task, 4:1)",
        "the slices used there are not published: a seeded 4:1 sample of the pool train800 "
        "comes from"),
    ("splits", ("sweep", "final")): Source(f"{VPT} tune_vtab.py:166-175 (train and val -> test)"),
    ("splits", ("full", "tune")): Source(
        "VPT tune_fgvc.py, src/data/loader.py:54-66 (train -> val)",
        "VPT's released json splits are not used: val is the last 10 % of train (Flowers: its "
        "validation split)"),
    ("splits", ("full", "final")): Source(
        "VPT train.py:66-72 (non-VTAB data: the final model trains on train only)"),
    ("splits", ("1shot", "tune")): Source(
        f"P:552; {VPT} src/data/datasets/tf_dataset.py:99-135 (EVEN_SEPARETE: random.seed(0), "
        f"1 per class inside train800 / val200)",
        "text: representative images chosen by 'iterative testing' with augmentation (P:552); "
        "code: seeded random pick. Follows the code"),
    ("splits", ("1shot", "final")): Source(
        f"{VPT} src/data/datasets/tf_dataset.py:126-132 (2 per class of train800val200)"),
    ("seeds", (42, 44, 82, 100, 800)): Source(f"{VPT} tune_vtab.py:286"),
    ("tune seed", 42): Source(
        "project choice (one seed for every grid point, so that reruns repeat)",
        f"the code sets none in the tune stage ({VPT} tune_vtab.py:89,187), so its three FT "
        f"points with wd > 0, one optimiser (see weight decay), ran as three random draws"),
    ("selection", "last"): Source(
        f"{VPT} tune_vtab.py:48-78 (last-epoch val top-1; ties to the smaller lr)",
        "ties at one lr go to the file found first there (glob order); here to the smaller wd"),
    ("reported epoch", "last"): Source(
        "VPT src/utils/vis_utils.py:195-198; VPT-or-FT get_results_vtab.py:24 (l-test_top1)"),
    ("backbone", "vit_b16-in21k"): Source(
        f"P:77; {VPT} src/models/build_vit_backbone.py:46 (imagenet21k_ViT-B_16.npz); "
        f"dropout 0.1: VPT src/configs/vit_configs.py:35 (embeddings and MLP; attention 0)"),
    ("backbone", "vit_b16-mae"): Source(
        "VPT src/models/build_vit_backbone.py:45-62, src/models/vit_backbones/vit_mae.py:17-44,61"
        " (mean of every token but the class token, prompts included, through a new fc_norm; "
        "drop_path 0.1)"),
    ("backbone", "vit_b16-mocov3"): Source(
        "VPT src/models/build_vit_backbone.py:65-91 (timm-style ViT-B, class token, no "
        "drop-path)", "VPT reads mocov3_linear-vit-b-300ep.pth.tar; here the pretraining "
        "checkpoint's base encoder, the same frozen weights"),
    ("backbone", "swin_b-in21k"): Source(
        "VPT src/models/build_vit_backbone.py:304-315 (drop_path_rate 0.5)",
        "VPT on Swin is not run (Tables 7-9's VPT rows): VPT's PromptedSwinTransformer "
        "(src/models/vit_prompt/swin_transformer.py) re-implements window attention, the window "
        "partition and patch merging to carry prompts through every stage, which takes a fork "
        "of timm's Swin blocks, not hooks; this project wraps timm and never forks it"),
    ("backbone", "vit_b16-in21k-toast"): Source(
        "TOAST visual_classification/src/models/vit_models.py:95 (drop_path 0.1, no dropout)",
        "TOAST's own bottom-up ViT-B in21k checkpoint (configs/vtab.yaml MODEL_ROOT) is not "
        "public; the original ViT-B_16.npz stands in"),
    ("lr grid", "toast_ft"): Source(
        "TOAST visual_classification/tune_vtab.py:229-231 with configs/base.yaml:14-15 (SGD)"),
    ("lr grid", "toast_lora"): Source(
        "P:623 (TOAST's settings); TOAST visual_classification/tune_vtab.py:241-246"),
    ("batch", ("toast_ft", 32)): Source("TOAST visual_classification/configs/base.yaml:25"),
    ("batch", ("toast_lora", 32)): Source("TOAST visual_classification/configs/base.yaml:25"),
    ("warm-up epochs", ("toast_ft", 10)): Source("TOAST visual_classification/configs/"
                                                 "base.yaml:19"),
    ("warm-up epochs", ("toast_lora", 10)): Source("TOAST visual_classification/configs/"
                                                   "base.yaml:19"),
    ("lora rank / alpha", (4, 1.0)): Source(
        "TOAST visual_classification/src/models/vit_models.py:106-113 (loralib Linear(r=4) on "
        "each whole qkv; loralib's default lora_alpha 1, so scale 1/4)"),
    ("precision", "auto"): Source(
        "project choice (bf16 autocast on CUDA; VPT src/engine/trainer.py trains in fp32)",
        "the code trains in fp32; `--precision fp32` runs it so (bf16's effect on accuracy is "
        "unmeasured)"),
    ("evaluation", "last"): Source(f"{VPT} src/engine/trainer.py:243-247 (every epoch)",
                                   "selection and the reported number read the last epoch, "
                                   "which is always evaluated here"),
    ("FID", "imagenet_sample"): Source(
        "P:109-111,122 (FID to the pretraining data with pytorch-fid; repeated runs' std < 0.5 %)",
        "the paper names neither the pretraining images it sampled nor the sample size: here a "
        "user-supplied ImageNet sample, the mean and std over random subsets of a stated size"),
    ("prior", "full_ft"): Source(
        f"P:176; {VPT} README.md:144 ('run the full finetuning first, and then run the prompt "
        f"tuning')"),
}


def _source(setting: str, keys) -> Source:
    """The source of the first key that has one."""
    return next((SOURCES[(setting, k)] for k in keys if (setting, k) in SOURCES),
                Source("project choice"))


def _dropout(spec: StudySpec, strategy: str) -> tuple[str, str]:
    """(value, source key) of the dropout and drop-path acting inside the backbone."""
    chosen = get_strategy(strategy)
    if chosen.prompted:
        return "off: prompted encoder in eval mode", "off: prompted encoder in eval mode"
    if chosen.frozen_eval and not chosen.changes_backbone:
        return "off: frozen backbone in eval mode", "off: frozen backbone in eval mode"
    return "; ".join(f"{b.tag}: dropout {b.dropout}, drop-path "
                     f"{dict(b.overrides).get('drop_path_rate', 0.0)}"
                     for b in spec.backbones), "train mode"


def rows(spec: StudySpec) -> list[dict[str, str]]:
    """One row per (setting, strategy): value, source, and where the text and code disagree."""
    out = []

    def add(setting: str, strategy: str, value, *keys) -> None:   # keys: most specific first
        source = _source(setting, keys or (value,))
        out.append({"setting": setting, "strategy": strategy, "value": str(value),
                    "source": source.where, "text vs code": source.text_vs_code})

    for strategy in spec.strategies:
        chosen = get_strategy(strategy)
        grid = spec.search_space.grid_for(chosen.grid)
        recipe = spec.recipe(chosen.grid, grid.base_lrs[0], grid.weight_decays[0])
        used = f"{grid.name} for {chosen.grid}"        # a grid's source can depend on its use
        add("optimizer", strategy, recipe.optimizer, used, grid.name)
        add("lr grid", strategy, f"{grid.base_lrs} x batch / 256", used, grid.name)
        add("wd grid", strategy, grid.weight_decays)
        add("weight decay", strategy, recipe.optimizer)
        add("batch", strategy, recipe.batch_size, (used, recipe.batch_size),
            (grid.name, recipe.batch_size))
        add("epochs", strategy, recipe.epochs)
        add("warm-up epochs", strategy, recipe.warmup_epochs, (used, recipe.warmup_epochs),
            (grid.name, recipe.warmup_epochs))
        add("schedule", strategy, recipe.schedule)
        if chosen.prompted:
            lengths = spec.search_space.prompt_lengths
            add("prompt lengths", strategy, ", ".join(
                f"{t}={spec.search_space.prompt_length(t)}" for t in spec.tasks), lengths.name)
            add("prompt dropout", strategy, spec.prompt_dropout)
        if chosen.prior:
            add("prior", strategy, f"{chosen.prior}, at its selected recipe for the task; in "
                f"the final stage, {chosen.prior}'s own final run of the same seed",
                chosen.prior)
        if "lora_rank" in chosen.takes:
            add("lora rank / alpha", strategy, f"{spec.lora_rank} / {spec.lora_alpha}",
                (spec.lora_rank, spec.lora_alpha))
        add("model dropout", strategy, *_dropout(spec, strategy))
    for backbone in spec.backbones:
        add("backbone", "all", f"{backbone.tag}: timm {backbone.name}, weights {backbone.weights}",
            backbone.tag)
        add("head init", "all", backbone.head_init)
        add("normalisation", "all", backbone.mean_std or "timm's pretrained config")
    for augment in dict.fromkeys(get_task(t).augment for t in spec.tasks):
        add("augmentation", "all", "none" if augment is None else
            f"train: shorter side {augment.resize}, random {augment.crop} crop, horizontal flip "
            f"(on the device); eval: centre {augment.crop} crop", augment)
    for setting in spec.settings:
        tune, final = setting_splits(setting)
        kind = setting if setting in ("800", "1shot", "full") else "sweep"
        add("splits", "all", f"tune {tune[0]} -> {tune[1]}", (kind, "tune"))
        add("splits", "all", f"final {final[0]} -> {final[1]}", (kind, "final"))
    add("seeds", "all", spec.seeds)
    add("tune seed", "all", spec.tune_seed)
    add("evaluation", "all", f"every {spec.eval_every} epochs and after the last", "last")
    add("precision", "all", "auto (`python -m study run --precision`)", "auto")
    add("selection", "all", "best last-epoch val accuracy; ties: smaller lr, then smaller wd",
        "last")
    add("reported epoch", "all", "last epoch's test accuracy, mean and std over seeds", "last")
    reference = spec.upstream.task if spec.upstream else "imagenet_sample"
    add("FID", "all", f"each task's train800val200 (FGVC: train) to '{reference}', Inception or "
        f"backbone features, mean and std over 5 random subsets of 1000 images "
        f"(`python -m analysis fid`)", reference)
    return out


def render(spec: StudySpec, format: str = "markdown") -> str:
    table = rows(spec)
    if format == "csv":
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=list(table[0]))
        writer.writeheader()
        writer.writerows(table)
        return buffer.getvalue()
    head = list(table[0])
    lines = [f"# Protocol card: {spec.name}", "", "| " + " | ".join(head) + " |",
             "|" + "---|" * len(head)]
    lines += ["| " + " | ".join(r[k].replace("|", "/") for k in head) + " |" for r in table]
    return "\n".join(lines) + "\n\n" + paper.legend(" ".join(r["source"] + r["text vs code"]
                                                             for r in table))
