"""The protocol card of a study: one row per setting and strategy with the value the study runs and
where that value comes from: a line of the paper's text (P:<line> in
../shared/paper/000_b459f27e4e5e8855.txt) or a file:line of the code that produced its numbers
(VPT-or-FT = ChengHan111/VPT-or-FT @ 262898f, which copies KMnP/vpt's solver, data and ViT code
unchanged). Where the text and that code disagree the row says so and which one the study follows.
Values are read from the `StudySpec`; sources are data here, keyed by the value they justify, so a
value without a source reads "project choice". `python -m study explain <study>` prints it; each
run of the study logs it to MLflow."""
from __future__ import annotations

import csv
import io
from dataclasses import dataclass

from study.spec import StudySpec
from tasks.splits import setting_splits
from trainables.strategy import get_strategy

VPT = "VPT-or-FT"        # the paper's code; its solver/data/model files are KMnP/vpt's


@dataclass(frozen=True)
class Source:
    where: str
    text_vs_code: str = ""      # empty: the text and the code agree (or one of them is silent)


SOURCES: dict[tuple[str, object], Source] = {
    ("optimizer", "vpt_adamw"): Source(
        f"{VPT} configs/base-finetune.yaml:14; src/solver/optimizer.py:36-48,100-136,139-214",
        "text (P:79): one grid for all strategies, no optimiser named; code: AdamW for FT. "
        "Follows the code"),
    ("optimizer", "vpt_sgd"): Source(f"{VPT} configs/base-prompt.yaml:14-15; "
                                     f"src/solver/optimizer.py:50-88"),
    ("weight decay", "vpt_adamw"): Source(
        f"{VPT} src/solver/optimizer.py:36-48 (0.01 hard-coded on non-bias tensors, 0 on biases,"
        f" when the grid's wd > 0), 100-136 (wd 0: SGD momentum 0.9, no decay)"),
    ("weight decay", "vpt_sgd"): Source(f"{VPT} src/solver/optimizer.py:60-62 (the grid's wd on "
                                        f"every trained tensor but the classifier's bias)"),
    ("lr grid", "vpt_official_ft"): Source(
        f"{VPT} tune_vtab.py:219-221 (--train-type finetune); README.md:141",
        "text (P:79): {50 ... 0.05} for every strategy; code: {0.001, 0.0001, 0.0005, 0.005} for "
        "FT. Follows the code"),
    ("lr grid", "paper_sgd"): Source(f"P:79; {VPT} tune_vtab.py:247-253 (--train-type prompt)"),
    ("wd grid", (0.01, 0.001, 0.0001, 0.0)): Source(f"P:79; {VPT} tune_vtab.py:221,253"),
    ("batch", ("vpt_adamw", 128)): Source(f"{VPT} README.md:141 (DATA.BATCH_SIZE 128)",
                                          "text (P:79): '64/128'. Follows the code"),
    ("batch", ("vpt_sgd", 64)): Source(f"P:79; {VPT} README.md:142-143 (DATA.BATCH_SIZE 64)"),
    ("warm-up epochs", ("vpt_adamw", 5)): Source(
        f"{VPT} configs/base-finetune.yaml:12",
        "text (P:79): 10 warm-up epochs; code: 5 for FT. Follows the code"),
    ("warm-up epochs", ("vpt_sgd", 10)): Source(f"P:79; {VPT} configs/base-prompt.yaml:18"),
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
    ("model dropout", 0.1): Source(
        f"VPT src/configs/vit_configs.py:35 (dropout_rate 0.1 on embeddings and MLP, attention "
        f"0); the encoder trains in train mode for FT ({VPT} src/models/vit_models.py:201-202)"),
    ("model dropout", "off: prompted encoder in eval mode"): Source(
        f"{VPT} src/models/vit_prompt/vit.py:100-111 (its train() keeps encoder and embeddings in "
        "eval mode, Mixed included)"),
    ("head init", "vpt"): Source(f"{VPT} src/models/mlp.py:52-57; src/models/vit_models.py:"
                                 f"208-214 (special_bias=True)"),
    ("normalisation", ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))): Source(
        f"{VPT} src/data/datasets/tf_dataset.py:76-77 (ImageNet mean/std for every VTAB task)"),
    ("splits", ("800", "tune")): Source(
        f"P:75; {VPT} src/data/datasets/tf_dataset.py:247-252; task_adaptation split strings"),
    ("splits", ("800", "final")): Source(f"{VPT} tune_vtab.py:166-175 (train800val200 -> test)"),
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
        f"P:77; {VPT} src/models/build_vit_backbone.py:46 (imagenet21k_ViT-B_16.npz)"),
    ("precision", "auto"): Source(
        "project choice (bf16 autocast on CUDA; VPT src/engine/trainer.py trains in fp32)",
        "the code trains in fp32; `--precision fp32` runs it so (bf16's effect on accuracy is "
        "unmeasured)"),
    ("evaluation", "last"): Source(f"{VPT} src/engine/trainer.py:243-247 (every epoch)",
                                   "selection and the reported number read the last epoch, "
                                   "which is always evaluated here"),
    ("prior", "full_ft"): Source(
        f"P:176; {VPT} README.md:144 ('run the full finetuning first, and then run the prompt "
        f"tuning')"),
}


def _source(setting: str, key) -> Source:
    return SOURCES.get((setting, key), Source("project choice"))


def _dropout(spec: StudySpec, strategy: str):
    chosen = get_strategy(strategy)
    if chosen.prompted:
        return "off: prompted encoder in eval mode"
    if not chosen.changes_backbone:
        return "off: frozen backbone in eval mode"
    return max(b.dropout for b in spec.backbones)


def rows(spec: StudySpec) -> list[dict[str, str]]:
    """One row per (setting, strategy): value, source, and where the text and code disagree."""
    out = []

    def add(setting: str, strategy: str, value, key=None) -> None:
        source = _source(setting, value if key is None else key)
        out.append({"setting": setting, "strategy": strategy, "value": str(value),
                    "source": source.where, "text vs code": source.text_vs_code})

    for strategy in spec.strategies:
        chosen = get_strategy(strategy)
        grid = spec.search_space.grid_for(chosen.grid)
        recipe = spec.recipe(chosen.grid, grid.base_lrs[0], grid.weight_decays[0])
        add("optimizer", strategy, recipe.optimizer)
        add("lr grid", strategy, f"{grid.base_lrs} x batch / 256", grid.name)
        add("wd grid", strategy, grid.weight_decays)
        add("weight decay", strategy, recipe.optimizer)
        add("batch", strategy, recipe.batch_size, (recipe.optimizer, recipe.batch_size))
        add("epochs", strategy, recipe.epochs)
        add("warm-up epochs", strategy, recipe.warmup_epochs,
            (recipe.optimizer, recipe.warmup_epochs))
        add("schedule", strategy, recipe.schedule)
        if chosen.prompted:
            lengths = spec.search_space.prompt_lengths
            add("prompt lengths", strategy, ", ".join(
                f"{t}={spec.search_space.prompt_length(t)}" for t in spec.tasks), lengths.name)
            add("prompt dropout", strategy, spec.prompt_dropout)
        if chosen.prior:
            add("prior", strategy, f"{chosen.prior}, at its selected recipe for the task",
                chosen.prior)
        add("model dropout", strategy, _dropout(spec, strategy))
    for backbone in spec.backbones:
        add("backbone", "all", f"{backbone.tag}: timm {backbone.name}, weights {backbone.weights}",
            backbone.tag)
        add("head init", "all", backbone.head_init)
        add("normalisation", "all", backbone.mean_std or "timm's pretrained config")
    for setting in spec.settings:
        tune, final = setting_splits(setting)
        add("splits", "all", f"tune {tune[0]} -> {tune[1]}", (setting, "tune"))
        add("splits", "all", f"final {final[0]} -> {final[1]}", (setting, "final"))
    add("seeds", "all", spec.seeds)
    add("tune seed", "all", spec.tune_seed)
    add("evaluation", "all", f"every {spec.eval_every} epochs and after the last", "last")
    add("precision", "all", "auto (`python -m study run --precision`)", "auto")
    add("selection", "all", "best last-epoch val accuracy; ties: smaller lr, then smaller wd",
        "last")
    add("reported epoch", "all", "last epoch's test accuracy, mean and std over seeds", "last")
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
    lines = [f"# Protocol card: {spec.name}", "", "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    lines += ["| " + " | ".join(r[k].replace("|", "/") for k in head) + " |" for r in table]
    return "\n".join(lines) + "\n"
