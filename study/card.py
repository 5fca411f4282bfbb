"""The protocol card of a study: one row per setting and strategy with the value the study runs and
where that value comes from: a line of the paper's text (P:<line> in
../shared/paper/000_b459f27e4e5e8855.txt; `study.paper` names the paper, arXiv 2401.12902, and
says where each cited line sits, in a legend under the card) or a file:line of the code that
produced its numbers (VPT-or-FT = ChengHan111/VPT-or-FT @ 262898f, which copies KMnP/vpt's
solver, data and ViT code unchanged; VPT = KMnP/vpt @ 4410440; TOAST = bfshi/TOAST @ e45b515;
PETL_Vision = OSU-MLB/PETL_Vision @ 245d262 for the `petl` study). A citation names its
repository before its path, relative to that repository's root; later paths of the same text are
in the same repository (tests/test_card_citations.py checks every line against the files' line
counts). Where the text and that code disagree the row says so and which one the study follows.
Values are read from the `StudySpec`; sources are data here, keyed by the value they justify (or
by the study's search space and the value, where one protocol's source for a value is not
another's), so a value without a source reads "project choice". `python -m study explain <study>`
prints it; each run of the study logs it to MLflow."""
from __future__ import annotations

import csv
import io
from dataclasses import dataclass

from study import paper
from study.spec import StudySpec
from tasks import get_task
from tasks.spec import Augment
from tasks.splits import setting_splits, supports
from trainables.backbones import mean_std_name, spec_normalization, weights_source
from trainables.strategy import get_strategy

VPT = "VPT-or-FT"        # the paper's code; its solver/data/model files are KMnP/vpt's


@dataclass(frozen=True)
class Source:
    where: str
    text_vs_code: str = ""      # empty: the text and the code agree (or one of them is silent)


SOURCES: dict[tuple[str, object], Source] = {
    ("optimizer", "vpt_official_ft"): Source(
        f"{VPT} configs/base-finetune.yaml:14; src/solver/optimizer.py:36-50,100-137,140-234 "
        f"(wd > 0: AdamW, whose decoupled decay is at 231-232; wd 0: SGD)",
        "text (P:79): one grid for all strategies, no optimiser named; code: AdamW for FT. "
        "Follows the code"),
    ("optimizer", "paper_sgd"): Source(f"{VPT} configs/base-prompt.yaml:14-15; "
                                       f"src/solver/optimizer.py:51-98,100-137 (wd > 0: optim.SGD "
                                       f"at 93-98; wd 0: without decay)"),
    ("optimizer", "fgvc_sgd"): Source(f"{VPT} configs/base-prompt.yaml:14-15; "
                                      f"src/solver/optimizer.py:51-98,100-137 (wd > 0: optim.SGD "
                                      f"at 93-98; wd 0: without decay)"),
    ("optimizer", "toast_ft"): Source("TOAST visual_classification/configs/base.yaml:14-15",
                                      "FT here is TOAST's (SGD, batch 32), not the paper's "
                                      "Table 1 FT: Table 20's FT numbers differ from Table 1's"),
    ("optimizer", "toast_lora"): Source("TOAST visual_classification/configs/base.yaml:14-15"),
    ("weight decay", "vpt_adamw"): Source(
        f"{VPT} src/solver/optimizer.py:36-50,100-137 (wd > 0: 0.01 hard-coded on non-bias "
        f"tensors, 0 on biases; wd 0: SGD momentum 0.9, no decay)"),
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
    ("lr grid", ("vpt_official_ft", "fgvc")): Source(
        f"{VPT} tune_fgvc.py:98-100 (--train-type finetune: VTAB's FT grid)",
        "text (P:79): {50 ... 0.05} for every strategy; code: {0.001, 0.0001, 0.0005, 0.005} for "
        "FT. Follows the code"),
    ("lr grid", "paper_sgd"): Source(f"P:79; {VPT} tune_vtab.py:247-253 (--train-type prompt)"),
    ("lr grid", "fgvc_sgd"): Source(
        f"VPT tune_fgvc.py:151-156; {VPT} tune_fgvc.py:181-186 (--train-type prompt: VTAB's grid "
        f"without 0.05)", "text (P:79): {50 ... 0.05}; FGVC's tuner has no 0.05. Follows the code"),
    ("wd grid", (0.01, 0.001, 0.0001, 0.0)): Source(f"P:79; {VPT} tune_vtab.py:221,253"),
    ("wd grid", ((0.01, 0.001, 0.0001, 0.0), "fgvc")): Source(f"P:79; {VPT} tune_fgvc.py:100,187"),
    ("wd grid", "toast_ft"): Source("TOAST visual_classification/tune_vtab.py:231"),
    ("wd grid", "toast_lora"): Source("TOAST visual_classification/tune_vtab.py:246"),
    ("weight decay", ("toast_ft", "vpt_sgd")): Source(
        "TOAST visual_classification/src/solver/optimizer.py:72-77 (the grid's wd on every "
        "trained tensor but the classifier's bias)"),
    ("weight decay", ("toast_lora", "vpt_sgd")): Source(
        "TOAST visual_classification/src/solver/optimizer.py:72-77 (the grid's wd on every "
        "trained tensor but the classifier's bias)"),
    ("batch", ("vpt_official_ft", 128)): Source(
        f"{VPT} README.md:141 (DATA.BATCH_SIZE 128)", "text (P:79): '64/128'. Follows the code"),
    ("batch", ("paper_sgd", 64)): Source(f"P:79; {VPT} README.md:142-143 (DATA.BATCH_SIZE 64)"),
    ("batch", ("fgvc_sgd", 64)): Source(
        f"{VPT} configs/base-prompt.yaml:25 (BATCH_SIZE 64)",
        f"the paper's code's own FGVC example passes DATA.BATCH_SIZE 128 ({VPT} command.txt:27-31, "
        f"as VPT configs/base-prompt.yaml:25 has it). Follows the config"),
    ("warm-up epochs", ("vpt_official_ft", 5)): Source(
        f"{VPT} configs/base-finetune.yaml:12",
        "text (P:79): 10 warm-up epochs; code: 5 for FT. Follows the code"),
    ("warm-up epochs", ("paper_sgd", 10)): Source(f"P:79; {VPT} configs/base-prompt.yaml:18"),
    ("warm-up epochs", ("fgvc_sgd", 10)): Source(f"{VPT} configs/base-prompt.yaml:18"),
    ("epochs", ("vpt_official_ft", 100)): Source(f"P:79; {VPT} configs/base-finetune.yaml:18"),
    ("epochs", ("paper_sgd for full", 100)): Source("P:79"),
    ("epochs", ("toast_ft", 100)): Source("TOAST visual_classification/configs/base.yaml:19"),
    ("epochs", ("toast_lora", 100)): Source("TOAST visual_classification/configs/base.yaml:19"),
    ("epochs", 100): Source(f"P:79; {VPT} configs/base-prompt.yaml:19"),
    ("schedule", "vpt_epoch"): Source(
        f"P:79 (cosine); {VPT} src/solver/lr_scheduler.py:41-66 stepped per epoch at "
        f"src/engine/trainer.py:235 (the first epoch runs at lr 0)"),
    ("prompt_length", "vpt"): Source(
        f"P:137,159,620 (Tuned/Total rows: 9216 P + 769 C fits one P per task); {VPT} "
        f"README.md:125 ('strictly followed the ones in VPT'), README.md:142 (cifar100: 10)",
        "text (P:512, Tables 16-18, cited from E2VPT [37]) differs on 15 of 19 tasks. Follows "
        "the code and the paper's own Tuned/Total rows"),
    ("prompt_length", ("vpt", "fgvc")): Source(
        "P:620 (Table 19's Tuned/Total row: 9216 P + 769 C fits one P per task, VPT's FGVC "
        "lengths)"),
    ("prompt_length", "tables_16_18"): Source(
        "P:512,596-610 (Tables 16-18)",
        "the paper's Tuned/Total rows (P:137,159) and its code use VPT's lengths. Follows the "
        "text"),
    ("prompt_dropout", 0.1): Source(f"{VPT} README.md:142-143 (MODEL.PROMPT.DROPOUT 0.1)"),
    ("model dropout", "train mode"): Source(
        f"the backbone rows; the encoder trains in train mode for FT ({VPT} "
        f"src/models/vit_models.py:201-202) and for LoRA (TOAST "
        f"visual_classification/src/engine/trainer.py:196)"),
    ("model dropout", "off: frozen backbone in eval mode"): Source(
        f"{VPT} src/models/vit_models.py:222-223 (a frozen encoder is put in eval mode)"),
    ("model dropout", "off: prompted encoder in eval mode"): Source(
        f"{VPT} src/models/vit_prompt/vit_exp_self.py:113-124 (the prompted ViT the paper's code "
        f"builds, src/models/build_vit_backbone.py:553-559: its train() keeps encoder and "
        f"embeddings in eval mode, Mixed included)"),
    ("augmentation", None): Source(
        f"{VPT} src/data/datasets/tf_dataset.py:215-223 (every VTAB split resized to "
        f"224, no augmentation)"),
    ("augmentation", Augment()): Source(
        "VPT src/data/transforms.py:7-41 (train: Resize(256), RandomCrop(224), "
        "RandomHorizontalFlip; eval: Resize(256), CenterCrop(224))",
        "training images are cached in 384 px canvases: a longer side beyond 384 is kept as its "
        "centre, which narrows the random crops of such images"),
    ("head init", "vpt"): Source(f"{VPT} src/models/mlp.py:52-57; src/models/vit_models.py:"
                                 f"208-214 (special_bias=True)"),
    ("normalisation", ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))): Source(
        f"{VPT} src/data/datasets/tf_dataset.py:76-77 (ImageNet mean/std for every VTAB task)"),
    ("normalisation", (((0.485, 0.456, 0.406), (0.229, 0.224, 0.225)), "fgvc")): Source(
        "VPT src/data/transforms.py:8-10 (ImageNet mean/std for FGVC)"),
    ("normalisation", (((0.485, 0.456, 0.406), (0.229, 0.224, 0.225)),
                       "vit_b16-in21k-toast")): Source(
        "TOAST visual_classification/src/data/datasets/tf_dataset.py:77-78 (ImageNet mean/std "
        "for every VTAB task)"),
    ("splits", ("800", "tune")): Source(
        f"P:75; {VPT} src/data/datasets/tf_dataset.py:247-252; task_adaptation split strings"),
    ("splits", ("800", "final")): Source(f"{VPT} tune_vtab.py:166-175 (train800val200 -> test)"),
    ("splits", ("sweep", "tune")): Source(
        f"P:115 (re-created train / val sets at a 4:1 ratio); {VPT} README.md:132 (the slices "
        f"are edited by hand per task)",
        "the paper's code keeps no slices of these tasks at this size: a seeded 4:1 sample of "
        "the pool train800 comes from (val too)"),
    ("splits", ("published", "cifar100")): Source(
        f"{VPT} src/data/vtab_datasets/cifar.py:88-112 (train[:10000], val train[45000:47500])"),
    ("splits", ("published", "sun397")): Source(
        f"{VPT} src/data/vtab_datasets/sun397.py:64-82 (train[:10000], val validation[:10000])",
        "text (P:115): 4:1; the code's slices: 1:1 (its comment at line 64 lists 4:1 sizes). "
        "Follows the code"),
    ("splits", ("published", "patch_camelyon")): Source(
        f"{VPT} src/data/vtab_datasets/patch_camelyon.py:59-78 (train[:10000], val "
        f"validation[:2500])"),
    ("splits", ("published", "svhn")): Source(
        f"{VPT} src/data/vtab_datasets/svhn.py:98-132 (train[:10000], val 2000 from 90 % of "
        f"train)", "text (P:115): 4:1; the code's slices: 5:1. Follows the code"),
    ("splits", ("published", "caltech101")): Source(
        f"{VPT} src/data/vtab_datasets/caltech.py:84-111 (train[:2000], val 800 from 70 % of "
        f"train)", "text (P:115): 4:1; the code's slices: 5:2. Follows the code"),
    ("splits", ("published", "oxford_iiit_pet")): Source(
        f"{VPT} src/data/vtab_datasets/oxford_iiit_pet.py:81-103 (train[:2400], val 600 from 80 % "
        f"of train)"),
    ("splits", ("published", "dtd")): Source(
        f"{VPT} src/data/vtab_datasets/dtd.py:73-98 (train[:1000], val validation[:1000])",
        "text (P:115): 4:1; the code's slices: 1:1. Follows the code"),
    ("splits", ("sweep", "final")): Source(f"{VPT} tune_vtab.py:166-175 (train and val -> test)"),
    ("splits", ("full", "tune")): Source(
        "VPT train.py:66-75 (run by tune_fgvc.py for every grid point: non-VTAB data trains on "
        "train and is evaluated on val)",
        "VPT's released json splits are not used: val is the last 10 % of train (Flowers: its "
        "validation split)"),
    ("splits", ("full", "final")): Source(
        "VPT train.py:66-72 (non-VTAB data: the final model trains on train only)"),
    ("splits", ("1shot", "tune")): Source(
        f"P:552; {VPT} src/data/datasets/tf_dataset.py:99-135 (EVEN_SEPARETE: random.seed(0), "
        f"1 per class inside train800 / val200)",
        f"text: representative images chosen by 'iterative testing' with augmentation (P:552); "
        f"code: a random.seed(0) pick in split order, but train800 is read shuffled without a "
        f"seed ({VPT} src/data/datasets/tf_dataset.py:266, src/data/vtab_datasets/base.py:"
        f"371-373), so its train picks change from run to run and only its val200 and "
        f"train800val200 picks can be reproduced. Follows the code; the train picks are one "
        f"draw in split order"),
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
        ", src/models/vit_prompt/vit_mae.py:122-124 (mean of every token but the class token, "
        "prompts included, through a new fc_norm; drop_path 0.1)"),
    ("backbone", "vit_b16-mocov3"): Source(
        "VPT src/models/build_vit_backbone.py:65-91 (timm-style ViT-B, class token, no "
        "drop-path), src/models/vit_backbones/vit_moco.py:27-28,52-68 (a fixed 2-D sin-cos "
        "position embedding with requires_grad=False: no strategy trains it, finetuning "
        "included)", "VPT reads mocov3_linear-vit-b-300ep.pth.tar; here the pretraining "
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
        "TOAST visual_classification/tune_vtab.py:229-231 with "
        "visual_classification/configs/base.yaml:14-15 (SGD)"),
    ("lr grid", "toast_lora"): Source(
        "P:623 (TOAST's settings); TOAST visual_classification/tune_vtab.py:241-246"),
    ("batch", ("toast_ft", 32)): Source("TOAST visual_classification/configs/base.yaml:25"),
    ("batch", ("toast_lora", 32)): Source("TOAST visual_classification/configs/base.yaml:25"),
    ("warm-up epochs", ("toast_ft", 10)): Source("TOAST visual_classification/configs/"
                                                 "base.yaml:18"),
    ("warm-up epochs", ("toast_lora", 10)): Source("TOAST visual_classification/configs/"
                                                   "base.yaml:18"),
    ("lora_rank", 4): Source(
        "TOAST visual_classification/src/models/vit_models.py:106-113 (loralib Linear(r=4) on "
        "each whole qkv)"),
    ("lora_alpha", 1.0): Source(
        "TOAST visual_classification/src/models/vit_models.py:106-113 (loralib's default "
        "lora_alpha 1, so scale 1/4)"),
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
    ("prior", ("full_ft", "ft_then_pt")): Source(
        f"P:176; {VPT} README.md:144 ('run the full finetuning first, and then run the prompt "
        f"tuning'); the head: {VPT} src/models/build_vit_backbone.py:39-40,582-602 (the "
        f"two-step loader keeps every finetuned weight but `head*`, line 599), "
        f"src/models/vit_models.py:208-214 (a new head with the VPT init)",
        f"the text is silent on the head (P:176), and the released code switches its two-step "
        f"loader off ({VPT} src/models/build_vit_backbone.py:582, `resume_model = False`; the FT "
        f"checkpoint path is commented out at line 40). Follows that loader: a fresh VPT head "
        f"drawn from the trial's seed (`ft_then_pt_kept_head` keeps the FT head)"),
    ("prior", ("full_ft", "ft_then_pt_kept_head")): Source(
        f"P:176; {VPT} README.md:144 ('run the full finetuning first, and then run the prompt "
        f"tuning')", f"the paper's code's two-step loader drops the FT head ({VPT} "
        f"src/models/build_vit_backbone.py:599); this reading keeps it, as P:176 allows"),
}


PETL = "PETL_Vision"     # OSU-MLB/PETL_Vision @ 245d262; config/ is experiment/config/
PETL_DEFAULTS = f"{PETL} experiment/config/default_vtab_processed.yml"
EAGER_FROZEN = (f"{PETL} trains every method with the whole model in train mode "
                f"(engine/trainer.py:100), so drop-path 0.1 acts in its frozen encoder too")
SOURCES.update({            # the `petl` study's (search space "petl"), keyed (protocol, value)
    ("optimizer", "petl_adamw"): Source(f"{PETL_DEFAULTS}:5; engine/optimizer.py:25-30 (torch "
                                        f"AdamW)"),
    ("lr grid", "petl_adamw"): Source(
        f"{PETL} experiment/config/lr_wd_vtab_processed.yml:2 (lr 0.001, 0.01), given to AdamW "
        f"unscaled (engine/optimizer.py:25-30): base lrs 0.004, 0.04 at batch 64 are those lrs"),
    ("wd grid", (0.0001, 0.001)): Source(f"{PETL} experiment/config/lr_wd_vtab_processed.yml:3"),
    ("weight decay", ("petl", "adamw")): Source(
        f"{PETL} engine/optimizer.py:25-30 (the grid's wd on every trained tensor, biases and "
        f"norms included)"),
    ("batch", ("petl_adamw", 64)): Source(
        f"{PETL_DEFAULTS}:10",
        f"{PETL} drops each epoch's last partial batch (experiment/build_loader.py:106: 12 steps "
        f"on 800 images, 15 on 1,000); here every image trains each epoch (13 and 16 steps)"),
    ("epochs", ("petl", 100)): Source(f"{PETL_DEFAULTS}:6"),
    ("warm-up epochs", ("petl_adamw", 10)): Source(f"{PETL_DEFAULTS}:7"),
    ("schedule", "petl_epoch"): Source(
        f"{PETL} engine/trainer.py:37-39,151 (timm 0.9.12's CosineLRScheduler, env_setup.sh:7: "
        f"t_initial 100, warmup_t 10, warmup_lr_init 1e-6, lr_min 1e-5, {PETL_DEFAULTS}:6-9; "
        f"stepped after each epoch, so epochs 0 and 1 run at 1e-6 and the cosine counts from "
        f"epoch 0, without a warm-up prefix)"),
    ("prompt_length", (5, 10, 50, 100)): Source(
        f"{PETL} experiment/config/method/vpt_deep.yml:2 (vpt_num)"),
    ("prompt_length", (5, 10, 50, 100, 200)): Source(
        f"{PETL} experiment/config/method/vpt_shallow.yml:2 (vpt_num)",
        f"{PETL}'s shallow prompts act in the first block only (model/vision_transformer.py:"
        f"223-241 drops them after each block); VPT's, here, stay through all blocks: "
        f"petl_vpt_shallow, where registered, is {PETL}'s"),
    ("prompt_dropout", ("petl", 0.1)): Source(f"{PETL_DEFAULTS}:31 (vpt_dropout); "
                                              f"model/vpt.py:30,39"),
    ("lora_rank", (1, 8, 16, 32)): Source(
        f"{PETL} experiment/config/method/lora.yml:2 (lora_bottleneck)",
        f"{PETL}'s LoRA (model/lora.py:5-28) adds dropout 0.1 on its input and its own init; "
        f"this is loralib's with alpha = rank (scale 1, as merge_factor 1 there): petl_lora, "
        f"where registered, is {PETL}'s"),
    ("model dropout", ("petl", "train mode")): Source(
        f"{PETL} engine/trainer.py:100 (model.train() on the whole model); drop_path_rate 0.1, "
        f"{PETL_DEFAULTS}:3"),
    ("model dropout", ("petl", "off: prompted encoder in eval mode")): Source(
        f"{VPT} src/models/vit_prompt/vit_exp_self.py:113-124 (the paper code's way)",
        f"{EAGER_FROZEN}; here VPT's strategies keep theirs in eval mode (petl_vpt_*, where "
        f"registered, follow {PETL})"),
    ("model dropout", ("petl", "off: frozen backbone in eval mode")): Source(
        f"{VPT} src/models/vit_models.py:222-223 (VPT's way)",
        f"{EAGER_FROZEN}; here the linear probe's frozen backbone runs in eval mode"),
    ("backbone", "vit_b16-in21k-petl"): Source(
        f"{PETL} experiment/build_model.py:92-98 (ViT-B_16_in21k.npz through timm's "
        f"_load_weights, model/vision_transformer.py:276-278); drop_path_rate 0.1 "
        f"({PETL_DEFAULTS}:3); no dropout (model/vision_transformer.py:64-68)"),
    ("head init", "torch"): Source(
        f"{PETL} experiment/build_model.py:98 (reset_classifier after loading: a new "
        f"nn.Linear with torch's init)"),
    ("normalisation", ((0.0, 0.0, 0.0), (1.0, 1.0, 1.0))): Source(
        f"{PETL_DEFAULTS}:57 (normalized: False); data/dataset/vtab_processed.py:14-22 "
        f"(Resize, ToTensor: pixels in [0, 1])",
        f"text ({PETL} README.md:43): 'optionally Normalize' with ImageNet mean/std; its stored "
        f"results ran without (normalized: False in their logs.txt). Follows the code"),
    ("augmentation", ("petl", None)): Source(
        f"{PETL} data/dataset/vtab_processed.py:14-22 (Resize((224, 224)) bicubic, ToTensor)",
        f"{PETL} reads its processed VTAB-1k download's image files (README.md:34-35) resized "
        f"by PIL, bicubic; here TFDS's images resized as tf.image.resize (bilinear)"),
    ("splits", ("petl", ("800", "tune"))): Source(
        f"{PETL} experiment/build_loader.py:29-32, data/dataset/vtab_processed.py:24-31 "
        f"(train800.txt -> val200.txt)",
        f"{PETL}'s lists ship with its processed download (README.md:34-35), not the "
        f"repository; here task_adaptation's split strings, of the same sizes"),
    ("splits", ("petl", ("800", "final"))): Source(
        f"{PETL} experiment/run.py:130-131, experiment/build_loader.py:25-28 (train800val200.txt -> "
        f"test.txt)"),
    ("seeds", (42, 210, 420)): Source(
        f"{PETL} experiment/run.py:133 (the three seeds its commented-out line names: 42, x5, "
        f"x10)", f"{PETL}'s stored results ran one final seed, 42 (experiment/run.py:132, "
        f"{PETL_DEFAULTS}:54): single runs; `--seeds 42` runs that alone"),
    ("tune seed", ("petl", 42)): Source(
        f"{PETL} main_tune.py:30 (set_seed(42) once, before the grid)",
        "there each grid point continues one random stream; here every point starts from 42"),
    ("evaluation", ("petl", "last")): Source(
        f"{PETL} engine/trainer.py:131 (eval_freq 200 in tuning, {PETL_DEFAULTS}:55: epochs 0 "
        f"and 99; 1 in the final run, experiment/run.py:126)",
        "selection and the reported number read the last epoch, which is always evaluated here"),
    ("precision", ("petl", "auto")): Source(
        "project choice (bf16 autocast on CUDA)",
        f"{PETL} trains in fp32 (engine/trainer.py:60-67); `--precision fp32` runs it so"),
    ("selection", ("petl", "last")): Source(
        f"{PETL} experiment/run.py:118-120 (final_acc_hp: True, {PETL_DEFAULTS}:61: the last "
        f"epoch's val top-1)",
        "ties (val top-1 on 200 images moves in steps of 0.5) go there to the last tied point "
        f"in sklearn's ParameterGrid order ({PETL} experiment/run.py:120 sorts ascending and takes [-1]; keys "
        "alphabetical, the last fastest); here to the smaller lr, then the smaller wd"),
    ("reported epoch", ("petl", "last")): Source(
        f"{PETL} experiment/run.py:151,155 (avg_acc: the last epoch's test top-1; its "
        f"avg_best_acc, the best epoch's, reads the test set and is not used)"),
})


def _source(setting: str, keys, otherwise: str = "project choice",
            protocol: str = "") -> Source:
    """The source of the first key that has one, the protocol's own (protocol, key) first."""
    keys = [*((protocol, k) for k in keys), *keys] if protocol else keys
    return next((SOURCES[(setting, k)] for k in keys if (setting, k) in SOURCES),
                Source(otherwise))


def _table_note(choice, task: str) -> str:
    """Where a per-task value comes from when not from the study's table."""
    table = choice.table_for(task)
    return (" (imported: the strategy's default)" if table is None else "" if
            table is choice.table else f" ({table.source})")


def _knob_row(spec: StudySpec, choice, data: str) -> tuple[str, tuple, str]:
    """(value, source keys, source otherwise) of one knob of a strategy (`KnobChoice`)."""
    knob = choice.knob
    declared = knob.source if choice.origin == "strategy" else f"set by the study ({knob.source})"
    if choice.mode == "per task":
        table = choice.table
        return (f"per task ({table.name}): " + ", ".join(
            f"{t}={choice.for_task(t)}" + _table_note(choice, t) for t in spec.tasks),
            ((table.name, data), table.name), table.source)
    if choice.mode == "searched":
        return f"searched: {choice.values}", (choice.values,), declared
    return str(choice.value), (choice.value,), declared


def _dropout(spec: StudySpec, strategy: str) -> tuple[str, str]:
    """(value, source key) of the dropout and drop-path acting inside the backbone."""
    chosen = get_strategy(strategy)
    if chosen.prompted and chosen.frozen_eval:
        return "off: prompted encoder in eval mode", "off: prompted encoder in eval mode"
    if chosen.frozen_eval and not chosen.changes_backbone:
        return "off: frozen backbone in eval mode", "off: frozen backbone in eval mode"
    return "; ".join(f"{b.tag}: dropout {b.dropout}, drop-path "
                     f"{dict(b.overrides).get('drop_path_rate', 0.0)}"
                     for b in spec.backbones), "train mode"


def _sweep_splits(spec: StudySpec, setting: str):
    """(value, source key) of a data-size sweep's tune splits: one row per task whose slices
    the paper's code publishes at this size, one for the tasks sampled here."""
    size, sampled = int(setting), []
    for slug in spec.tasks:
        task = get_task(slug)
        if not supports(task, setting):
            continue
        if size not in task.sweeps:
            sampled.append(slug)
            continue
        (train, val), _ = setting_splits(setting, task)
        expressions = task.sweeps[size]
        yield (f"@{setting} {slug}: tune {train} ({expressions[0]}) -> {val} "
               f"({expressions[1]})"), ("published", slug)
    if sampled:
        (train, val), _ = setting_splits(setting)
        yield f"@{setting} {', '.join(sampled)}: tune {train} -> {val}", ("sweep", "tune")


def rows(spec: StudySpec) -> list[dict[str, str]]:
    """One row per (setting, strategy): value, source, and where the text and code disagree."""
    out = []
    data = "fgvc" if {get_task(t).group for t in spec.tasks} == {"fgvc"} else "vtab"
    given = dict(spec.origins)          # a setting a study file or a flag set -> who set it

    def add(setting: str, strategy: str, value, *keys, otherwise="project choice",
            set_by: str | None = None) -> None:
        source = Source(set_by) if set_by else _source(   # keys: most specific first
            setting, keys or (value,), otherwise, spec.search_space.name)
        out.append({"setting": setting, "strategy": strategy, "value": str(value),
                    "source": source.where, "text vs code": source.text_vs_code})

    for setting in ("tasks", "strategies"):
        if setting in given:
            add(setting, "all", ", ".join(getattr(spec, setting)), set_by=given[setting])
    for strategy in spec.strategies:
        chosen = get_strategy(strategy)
        grid = spec.search_space.grid_for(chosen.grid)
        recipe = spec.recipe(chosen.grid, grid.base_lrs[0], grid.weight_decays[0])
        used = f"{grid.name} for {chosen.grid}"        # a grid's source can depend on its use
        space = given.get("search_space")
        add("optimizer", strategy, recipe.optimizer, used, grid.name, set_by=space)
        add("lr grid", strategy, f"{grid.base_lrs} x batch / 256", used, (grid.name, data),
            grid.name, set_by=space)
        add("wd grid", strategy, grid.weight_decays, grid.name, (grid.weight_decays, data),
            grid.weight_decays, set_by=space)
        add("weight decay", strategy, recipe.optimizer, (grid.name, recipe.optimizer),
            recipe.optimizer)
        add("batch", strategy, recipe.batch_size, (used, recipe.batch_size),
            (grid.name, recipe.batch_size))
        add("epochs", strategy, recipe.epochs, (used, recipe.epochs),
            (grid.name, recipe.epochs), recipe.epochs, set_by=given.get("epochs"))
        add("warm-up epochs", strategy, recipe.warmup_epochs, (used, recipe.warmup_epochs),
            (grid.name, recipe.warmup_epochs),
            set_by=given.get("warmup_epochs") if grid.warmup_epochs is None else None)
        add("schedule", strategy, recipe.schedule)
        for choice in spec.knob_choices(strategy):
            value, keys, otherwise = _knob_row(spec, choice, data)
            add(choice.knob.name, strategy, value, *keys, otherwise=otherwise,
                set_by=given.get(f"knobs.{strategy}.{choice.knob.name}") or (
                    None if f"knobs.{strategy}.{choice.knob.name}" in spec.knobs else
                    given.get(f"knobs.{choice.knob.name}")))
        if chosen.prior:
            then = chosen.summary.removeprefix(f"{chosen.prior}, then ")
            add("prior", strategy, f"{chosen.prior} at its selected recipe for the task (in the "
                f"final stage, {chosen.prior}'s own final run of the same seed), then {then}",
                (chosen.prior, strategy), chosen.prior)
        if chosen.merges:
            add("inference cost", strategy, "none added: the trained update merges into the "
                "weights after training", otherwise="the update is linear in the frozen weights "
                "(W + dW, or a scale and shift folded into the layer before)")
        add("model dropout", strategy, *_dropout(spec, strategy))
    for backbone in spec.backbones:
        fixed = f"; never trained: {', '.join(backbone.fixed)}" if backbone.fixed else ""
        add("backbone", "all", f"{backbone.tag}: timm {backbone.name}, weights "
            f"{weights_source(backbone)}{fixed}; normalisation "
            f"{mean_std_name(spec_normalization(backbone))}", backbone.tag,
            set_by=given.get("backbone"))
        add("head init", "all", backbone.head_init)
        normalisation = backbone.mean_std or "timm's pretrained config"
        add("normalisation", "all", normalisation, (normalisation, backbone.tag),
            (normalisation, data), normalisation,
            otherwise="the backbone's pretraining normalisation (timm's config for its name)")
    for augment in dict.fromkeys(get_task(t).augment for t in spec.tasks):
        add("augmentation", "all", "none" if augment is None else
            f"train: shorter side {augment.resize}, random {augment.crop} crop, horizontal flip "
            f"(on the device); eval: centre {augment.crop} crop", augment)
    sizes = given.get("settings")
    for setting in spec.settings:
        if setting in ("800", "1shot", "full"):
            tune, final = setting_splits(setting)
            add("splits", "all", f"tune {tune[0]} -> {tune[1]}", (setting, "tune"),
                set_by=sizes)
            add("splits", "all", f"final {final[0]} -> {final[1]}", (setting, "final"),
                set_by=sizes)
            continue
        for value, key in _sweep_splits(spec, setting):
            add("splits", "all", value, key, set_by=sizes)
        add("splits", "all", f"@{setting} final: the tune stage's train and val together -> "
            f"test", ("sweep", "final"), set_by=sizes)
    add("seeds", "all", spec.seeds, set_by=given.get("seeds"))
    add("tune seed", "all", spec.tune_seed)
    add("evaluation", "all", f"every {spec.eval_every} epochs and after the last", "last")
    add("precision", "all", "auto (`python -m study run --precision`)", "auto")
    add("selection", "all", "best last-epoch val accuracy; ties: smaller lr, then smaller wd",
        "last")
    add("reported epoch", "all", "last epoch's test accuracy, mean and std over seeds", "last")
    reference = spec.upstream.task if spec.upstream else "imagenet_sample"
    add("FID", "all", f"each task's train800val200 (FGVC: train) to '{reference}', Inception or "
        f"backbone features: mean and std over 5 draws of 1000 images of each side; a VTAB "
        f"task has exactly 1000 (train800val200), so only the reference is redrawn and the std "
        f"measures that draw alone (`python -m analysis fid`)", reference)
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
