"""Command line: `python -m study list | plan | explain | run | pretrain <study>`, where <study> is
a registered name or a study file (my-study.toml), and flags such as --tasks or --epochs replace
its settings (`study.compose`). Bad input (an unknown name, a malformed flag) prints one line
and exits with status 2, before anything starts. `run` prints its progress on stderr and the
table on stdout."""
from __future__ import annotations

import argparse
import logging
import os
import shlex
import signal
import sys
import textwrap

from common.openmp import wait_briefly

wait_briefly()                                    # before torch is imported (common/openmp.py)
from common.errors import exit_status, say  # noqa: E402
from trainables.config import PRECISIONS, Execution  # noqa: E402
from trainables.devices import AUTO  # noqa: E402

EPILOG = """examples:
  python -m study list
  python -m study plan demo
  python -m study explain paper             # every setting of a preset and its source
  python -m study plan paper --gpus 8,32 --scheduler halving   # its schedule on 8 and 32 GPUs
  python -m study run demo --smoke          # 2 tasks x 3 strategies, 2 epochs
  python -m study run demo                  # the offline demo study (make demo)
  python -m study pretrain demo             # its backbone pretrained here, not the shipped one
  python -m study run demo --address auto --gpus-per-trial auto   # on a Ray cluster
  python -m study run my-study.toml         # a study file: base, tasks, strategies, backbone...
  python -m study plan demo --name mine-demo --tasks mine --strategies full_ft,vpt_deep,lora
results: every trial is an MLflow run in $MLFLOW_TRACKING_URI (default sqlite:///mlflow.db);
  open them with `mlflow ui --backend-store-uri sqlite:///mlflow.db --host 127.0.0.1`; `run`
  prints the address of the study's summary run (the table, the selected runs, the figures)
  and of all its runs. Print the table again with `python -m analysis table <study>`, draw the
  figures with `make analysis` (into analysis_out/<study>/)."""


def _positive(kind: type, allow_zero: bool = False):
    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"'{text}' is not a number") from None
        if value < 0 or (value == 0 and not allow_zero):
            raise argparse.ArgumentTypeError(f"'{text}' must be {'>= 0' if allow_zero else '> 0'}")
        return value
    return parse


def _gpu_share(text: str) -> float | str:
    if text == AUTO:
        return AUTO
    share = _positive(float, allow_zero=True)(text)
    if share > 1:
        raise argparse.ArgumentTypeError(f"'{text}': a trial uses one GPU at most (no data "
                                         f"parallelism); give a share of one, or auto")
    return share


def _gpu_counts(text: str) -> tuple[int, ...]:
    counts = tuple(_positive(int)(part.strip()) for part in text.split(",") if part.strip())
    if not counts:
        raise argparse.ArgumentTypeError("no GPU count given")
    return counts


def _knob(text: str) -> tuple[str, object]:
    """NAME=VALUE (fixed) or NAME=V1,V2,... (searched beside lr and wd); the value's type is
    checked against the strategy's declaration once the study is known."""
    name, sep, values = text.partition("=")
    if not sep or not name.strip() or not values.strip():
        raise argparse.ArgumentTypeError(f"a knob is NAME=VALUE or NAME=V1,V2, got '{text}'")
    parts = [v.strip() for v in values.split(",")]
    return name.strip(), parts[0] if len(parts) == 1 else tuple(parts)


class _OneLineParser(argparse.ArgumentParser):
    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _OneLineParser(prog="python -m study", epilog=EPILOG,
                            formatter_class=argparse.RawDescriptionHelpFormatter,
                            description="VPT or full finetuning? Run the study as a Ray Tune "
                                        "hyperparameter study recorded in MLflow.")
    commands = parser.add_subparsers(dest="command", required=True, parser_class=_OneLineParser)
    commands.add_parser("list", help="list studies, tasks and strategies")
    for name, helptext in (("plan", "print trials and cost per stage and task; runs nothing"),
                           ("explain", "print the protocol card: every setting, its value and "
                                       "its source (paper line or official code file:line)"),
                           ("run", "run tune -> select -> final and print the table")):
        sub = commands.add_parser(name, help=helptext)
        sub.add_argument("study", help="a study name from `python -m study list`, or a study "
                                       "file, my-study.toml (docs/data.md)")
        sub.add_argument("--smoke", action="store_true", help="a tiny version (a few tasks, 2 epochs)")
        overrides = sub.add_argument_group(
            "settings over the study's (a study file's included): `python -m study explain` "
            "marks each 'set on the command line'")
        overrides.add_argument("--name", help="the study's name, its MLflow experiment")
        overrides.add_argument("--tasks", help="task names, e.g. mine,digits (imported tasks "
                                               "included)")
        overrides.add_argument("--strategies", help="strategy names, e.g. full_ft,vpt_deep,lora")
        overrides.add_argument("--backbone", help="a registered backbone's tag (`python -m study "
                                                  "list`), e.g. demo-vit-32 or clip-vitb16, or "
                                                  "any timm ViT as timm:NAME (docs/data.md)")
        overrides.add_argument("--weights", metavar="FILE",
                               help="the backbone's weights file (safetensors, .pth or .npz; "
                                    "relative: under --cache-dir), in place of its own or "
                                    "timm's hub")
        overrides.add_argument("--search-space", help="the lr x wd grids by name, e.g. demo")
        overrides.add_argument("--epochs", help="training epochs of every trial")
        overrides.add_argument("--warmup-epochs", help="warm-up epochs (where the grid sets none)")
        overrides.add_argument("--settings", help="train sizes, e.g. 800 or an imported task's "
                                                  "--train-size")
        overrides.add_argument("--seeds", help="final-stage seeds, e.g. 42,44")
        overrides.add_argument(
            "--knob", type=_knob, action="append", default=[], metavar="NAME=VALUE",
            help="set a strategy's knob for the study: lora_rank=4 (every strategy that takes "
                 "it) or adaptformer.bottleneck=8 (one strategy); several values, e.g. "
                 "lora_rank=4,8,16, are searched beside lr and wd; `python -m study list` shows "
                 "each strategy's knobs")
        sub.add_argument("--cache-dir", default=os.environ.get("VPT_CACHE_DIR", "cache"),
                         help="task array cache (imported tasks too) and backbone weights "
                              "(default: $VPT_CACHE_DIR, else ./cache)")
        if name == "explain":
            sub.add_argument("--format", choices=("markdown", "csv"), default="markdown")
        if name in ("plan", "run"):
            sub.add_argument("--scheduler", choices=("grid", "halving"),
                             help="tune stage: every grid point to the end (grid, the paper's "
                                  "protocol; the default unless a study file says otherwise), "
                                  "or successive halving within each cell (halving: Ray Tune's "
                                  "ASHA; stopped trials are never selected)")
            sub.add_argument("--reduction", type=_positive(float), default=3.0,
                             help="halving: keep the best 1/REDUCTION at each rung (default 3)")
            sub.add_argument("--grace-epochs", type=_positive(int),
                             help="halving: the first rung (default: the first epoch after "
                                  "the warm-up)")
        if name == "plan":
            sub.add_argument("--gpus", type=_gpu_counts, metavar="N[,N...]",
                             help="also simulate the study's schedule on N GPUs (several: "
                                  "8,32), with the stage barriers `run` keeps and pipelined "
                                  "without them: makespan, utilisation, idle GPU-hours, the "
                                  "cell that ends last; with --scheduler halving, for the grid "
                                  "and halving")
            sub.add_argument("--gpus-per-trial", type=_gpu_share, default=1.0,
                             help="with --gpus: each trial's share of a GPU (default 1), or "
                                  "auto: each strategy the smallest 1/k of an A100 40GB that "
                                  "holds its peak memory (the card whose speed the GPU-hours "
                                  "assume); k trials of 1/k share a GPU, each as fast as alone")
        if name == "run":
            sub.add_argument("--cpus-per-trial", type=_positive(float), default=1.0)
            sub.add_argument("--gpus-per-trial", type=_gpu_share,
                             help="the share of one GPU each trial takes, e.g. 0.5 (checked "
                                  "against each strategy's peak memory, as `plan` prints it), "
                                  "or auto: each strategy the smallest 1/k of the card that "
                                  "holds its peak; 0: trials on CPUs (default: auto when the "
                                  "Ray cluster has GPUs, else 0)")
            sub.add_argument("--gpu-wait", type=_positive(float), default=1200.0,
                             help="on an autoscaling cluster, the seconds a node with the "
                                  "trials' GPU share may take to come up (default 1200)")
            sub.add_argument("--address", help="Ray cluster address (e.g. auto); default: a "
                                               "local Ray started for this run")
            sub.add_argument("--storage-path", default="ray_results",
                             help="Ray Tune storage; shared (NFS, s3://) on a cluster")
            sub.add_argument("--max-failures", type=_positive(int, allow_zero=True), default=1,
                             help="retries of a failing trial before it is recorded FAILED")
            sub.add_argument("--format", choices=("markdown", "csv", "latex"),
                             default="markdown")
            sub.add_argument("--precision", choices=PRECISIONS, default="auto",
                             help="auto: bf16 autocast on a GPU (Ampere or newer: elsewhere pass fp32), and on a CPU "
                                  "with native bf16 for models of 5M parameters or more "
                                  "(measured faster there by `python -m bench`); fp32 "
                                  "otherwise; tf32: fp32 with TF32 matrix products on a GPU")
            sub.add_argument("--compile", action="store_true",
                             help="run training steps through torch.compile (pays a compile per "
                                  "trial; worth it for long trials)")
            sub.add_argument("--save-full-weights", action="store_true", default=None,
                             help="final stage: keep full weights of strategies that change the "
                                  "backbone (for `analysis attributions`; large for ViT-B)")
    pretrain = commands.add_parser(
        "pretrain", help="pretrain the backbone of a study that makes its own (the demo) into "
                         "the cache, instead of the weights the project ships; then stop")
    pretrain.add_argument("study", help="a study name from `python -m study list`")
    pretrain.add_argument("--cache-dir", default=os.environ.get("VPT_CACHE_DIR", "cache"),
                          help="where the weights go, under backbones/ (default: ./cache); a "
                               "cache that has them already is left as it is")
    return parser


def cmd_pretrain(spec, cache_dir: str) -> int:
    from study.tracking import StudyTracker
    from study.upstream import ensure_backbones
    ensure_backbones(spec, os.path.abspath(cache_dir), StudyTracker(spec.name), say)
    return 0


def cmd_list() -> None:
    from search_spaces import search_spaces
    from study.spec import BACKBONES, all_studies, study_doc
    from tasks import TASKS
    from trainables.strategy import all_strategies
    print("studies:")
    for name in all_studies():
        summary = " ".join(study_doc(name).split()).split(". ")[0].rstrip(".") + "."
        print(textwrap.fill(summary, 100, initial_indent=f"  {name:<22} ",
                            subsequent_indent=" " * 25, break_on_hyphens=False))
    print("tasks (slug, group, classes, source):")
    for task in TASKS.values():
        print(f"  {task.slug:<22} {task.group:<12} {task.num_classes:>4}  {task.source}")
    print("strategies:")
    for strategy in all_strategies().values():
        knobs = "; ".join(f"{k.name}={k.default}" + (f" searched {k.search}" if k.search else
                          " per task" if k.per_task else "") for k in strategy.knobs)
        print(f"  {strategy.name:<22} grid={strategy.grid:<7} {strategy.summary}"
              + (f" [{knobs}]" if knobs else ""))
    print("backbones (tag: timm architecture; --backbone, a study file's backbone):")
    for backbone, upstream in BACKBONES.values():
        print(f"  {backbone.tag:<22} {backbone.name}" + (
            f" (pretrained by the project on '{upstream.task}')" if upstream else ""))
    print("  any timm ViT as timm:NAME, e.g. timm:vit_base_patch16_clip_224.openai (weights from "
          "timm's hub, or --weights FILE)")
    print(f"search spaces (--search-space): {', '.join(search_spaces())}")


def cmd_plan(spec, halving=None, study: str = "", gpus: tuple[int, ...] = (),
             gpus_per_trial=1.0) -> None:
    from common.errors import StudyInputError
    from study.cost import METHOD, StageCost
    from trainables.backbones import weights_source
    from trainables.strategy import get_strategy
    if gpus and gpus_per_trial == 0:
        raise StudyInputError("--gpus simulates trials on GPUs: give --gpus-per-trial a share "
                              "> 0, or auto")
    print(f"study {spec.name}: {len(spec.tasks)} tasks x {len(spec.strategies)} strategies x "
          f"{len(spec.backbones)} backbone(s) x settings {', '.join(spec.settings)}; "
          f"search space {spec.search_space.name}, {spec.epochs} epochs, seeds "
          f"{', '.join(map(str, spec.seeds))} (every setting and its source: "
          f"`python -m study explain {study or spec.name}`)")
    for backbone in spec.backbones:
        print(f"  backbone {backbone.tag}: timm {backbone.name}, weights "
              f"{weights_source(backbone)}")
    for s in spec.strategies:
        grid = spec.search_space.grid_for(get_strategy(s).grid)
        recipe = spec.recipe(get_strategy(s).grid, 0.0, 0.0)
        searched = "".join(f" x {c.knob.name} {c.values}" for c in spec.knob_choices(s)
                           if c.mode == "searched")
        print(f"  {s:<12} grid {grid.name} ({grid.optimizer}, batch {recipe.batch_size}, "
              f"warm-up {recipe.warmup_epochs}): base lr {grid.base_lrs} x wd "
              f"{grid.weight_decays}{searched} = {len(spec.points(s))} points")
    assumed = spec.first_points()          # the price of a trial does not depend on its lr
    tune = spec.tune_trials() + spec.tune_trials(assumed)
    stages = {"tune": [(cfg, 1.0) for cfg in tune]}
    if halving:
        stages["halving"] = halving.ranked(tune, {s: len(spec.points(s))
                                                  for s in spec.strategies})
    stages["final"] = [(cfg, 1.0) for cfg in spec.final_trials(assumed)]
    costs = {stage: StageCost() for stage in stages}
    for stage, configs in stages.items():
        for cfg, share in configs:
            costs[stage].add(cfg, share)
        cost = costs[stage].total
        label = "tune, halving" if stage == "halving" else stage
        print(f"stage {label:<{13 if halving else 5}}: {cost.trials:>6} trials, "
              f"{cost.trial_epochs:>10,.0f} trial-epochs, {cost.train_images:>14,} training images x epochs, "
              f"{cost.eval_images:>14,} evaluated images, ~{cost.gpu_hours:,.1f} GPU-hours")
    if halving:
        full, halved = costs["tune"].total, costs["halving"].total
        print(f"  halving: the tune stage by {halving.describe(spec.recipe('full', 0, 0))} (for "
              f"the FT grid; each grid's own warm-up sets its grace); "
              f"{full.trial_epochs / halved.trial_epochs:.1f}x fewer trial-epochs by "
              f"synchronous halving's arithmetic (ASHA, deciding as results arrive, runs "
              f"somewhat more); its trials evaluate val after each rung epoch and the last "
              f"only, where ASHA judges: {halved.val_passes:,} val passes (the grid's "
              f"{full.val_passes:,}), one ~{halved.val_pass()[0]:.2g} GPU-s, "
              f"{halved.val_pass()[1]:.2g} trial-epochs on average")
    columns = [("tune", "tune GPU-h"), ("final", "final GPU-h")] + \
        ([("halving", "halving GPU-h")] if halving else [])
    print(f"per task: {'task':<22} {'tune trials':>11}" +
          "".join(f" {title:>13}" for _, title in columns))
    for task in spec.tasks:
        found = {stage: costs[stage].by_task.get(task) for stage, _ in columns}
        if any(found.values()):
            trials = found["tune"].trials if found["tune"] else 0
            print(f"          {task:<22} {trials:>11}" + "".join(
                f" {(found[stage].gpu_hours if found[stage] else 0.0):>13.2f}"
                for stage, _ in columns))
    print_strategies(spec, costs, tune)
    print(f"GPU-hours: an estimate from {METHOD}")
    peaks = print_memory(spec, every_trial(spec))
    if gpus:
        from study.plan_schedule import print_schedules
        print_schedules(spec, halving, gpus, gpus_per_trial, peaks)


def every_trial(spec, **where) -> list:
    """Each cell's trials at its first grid point, tune and final: what plan and run price."""
    assumed = spec.first_points()
    return spec.tune_trials(**where) + spec.tune_trials(assumed, **where) + \
        spec.final_trials(assumed, **where)


def peaks(spec, precision: str, cache_dir: str) -> dict[str, int]:
    """Each strategy's peak memory per trial on a GPU in this precision."""
    import torch
    from study.cost import strategy_footprints
    dtype = torch.bfloat16 if precision in ("auto", "bf16") else None
    configs = every_trial(spec, cache_dir=cache_dir)
    return {strategy: footprint.peak
            for strategy, footprint in strategy_footprints(configs, dtype).items()}


def print_memory(spec, configs) -> dict[str, int]:
    """Each strategy's peak memory per trial, and the share of a GPU `auto` gives it per card;
    returns each one's in bf16."""
    import torch
    from study.cost import strategy_footprints
    from trainables.devices import CARDS, amount, smallest_share
    from trainables.strategy import get_strategy
    counted = {name: strategy_footprints(configs, dtype)
               for name, dtype in (("bf16", torch.bfloat16), ("fp32", None))}
    print("peak memory per trial on its device (weights, and the grads and optimiser state of "
          "what trains, plus the activations saved for backward at its batch, x 1.1; plus its "
          "resident training split), and the GPU share `--gpus-per-trial auto` gives it in bf16:")
    for strategy in spec.strategies:
        bf16, fp32 = counted["bf16"][strategy], counted["fp32"][strategy]
        batch = spec.recipe(get_strategy(strategy).grid, 0.0, 0.0).batch_size
        shares = ", ".join(f"{card.name} {smallest_share(bf16.peak, card.total_bytes) or '-'}"
                           for card in CARDS)
        print(f"  {strategy:<12} batch {batch:>3}: bf16 {amount(bf16.peak)} (activations "
              f"{amount(bf16.activations)}, data {amount(bf16.data)}), fp32 {amount(fp32.peak)}; "
              f"share {shares}")
    return {strategy: footprint.peak for strategy, footprint in counted["bf16"].items()}


def _span(values) -> str:
    low, high = min(values), max(values)
    return f"{low:,}" if low == high else f"{low:,}-{high:,}"


def print_strategies(spec, costs, tune) -> None:
    """Per strategy: trials and GPU-hours per stage, and the parameters it trains without the
    classifier head on the study's first backbone (over the models its tune trials build), next
    to the `inserted_parameters` PETL_Vision recorded on VTAB-1k's tasks (at the knobs it
    selected per task) where that backbone is a ViT-B/16."""
    from results.published import petl_inserted_parameters
    from study.cost import trainable_parameters
    backbone = spec.backbones[0]
    petl = petl_inserted_parameters() if backbone.name.startswith("vit_base_patch16_224") else {}
    counts = {s: {trainable_parameters(cfg) for cfg in tune
                  if cfg.strategy == s and cfg.backbone == backbone} for s in spec.strategies}
    print(f"per strategy: {'strategy':<18} {'tune trials':>11} {'tune GPU-h':>11} "
          f"{'final trials':>12} {'final GPU-h':>11}  trained parameters without the head on "
          f"{backbone.tag}" + ("  |  PETL_Vision's inserted_parameters over VTAB-1k's tasks"
                                if petl else ""))
    for s in spec.strategies:
        tune_cost, final_cost = (costs[stage].by_strategy.get(s) for stage in ("tune", "final"))
        low, mean, high = petl.get(s, (None, None, None))
        print(f"              {s:<18} {tune_cost.trials if tune_cost else 0:>11} "
              f"{tune_cost.gpu_hours if tune_cost else 0.0:>11.2f} "
              f"{final_cost.trials if final_cost else 0:>12} "
              f"{final_cost.gpu_hours if final_cost else 0.0:>11.2f}  "
              f"{_span(counts[s]) if counts[s] else 'n/a':<31}" + (
                  f"  |  {_span((low, high))} (mean {mean:,.0f})" if low is not None else
                  "  |  not in PETL_Vision's results" if petl else ""))


def cmd_run(spec, args, halving=None, command: str = "") -> int:
    from study.protocol import run_study
    from study.ray_runner import RayRunner
    from study.tracking import StudyTracker
    tracker = StudyTracker(spec.name)
    runner = RayRunner(tracker, args.cpus_per_trial, args.gpus_per_trial, args.address,
                       args.storage_path, args.max_failures, halving=halving,
                       gpu_wait=args.gpu_wait)
    runner.preflight()
    try:
        runner = runner.fit_resources(
            lambda: peaks(spec, args.precision, os.path.abspath(args.cache_dir)))
        execution = Execution(threads=max(1, int(args.cpus_per_trial)), precision=args.precision,
                              compile=args.compile)     # the runner gives each trial its share
        table = run_study(spec, runner, tracker, os.path.abspath(args.cache_dir), execution,
                          log=say, command=command)
    finally:
        runner.shutdown()
    print(table.render(args.format))
    from study.summary import find_summary, run_page, runs_page
    served = tracker.uri.startswith(("http://", "https://"))      # the server is the UI
    ui = tracker.uri.rstrip("/") if served else "http://127.0.0.1:5000"
    summary = find_summary(tracker.client, tracker.experiment_id)
    say(f"\nMLflow store: {tracker.uri} (experiment '{spec.name}')\n" + (
        "" if served else f"start its UI: mlflow ui --backend-store-uri {tracker.uri} "
                          f"--host 127.0.0.1\n") +
        f"the answer (table, selected runs, figures): "
        f"{ui}/{run_page(tracker.experiment_id, summary)}\n"
        f"every run: {ui}/{runs_page(tracker.experiment_id)}")
    return 0


def _interrupt(signum, frame):
    raise KeyboardInterrupt


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    os.environ.setdefault("MLFLOW_LOGGING_LEVEL", "WARNING")    # one line per problem on stderr
    logging.getLogger("alembic").setLevel(logging.WARNING)
    signal.signal(signal.SIGTERM, _interrupt)                  # SIGTERM ends runs as KILLED too
    return exit_status(lambda: run_command(args, argv), interrupted=(
        "interrupted: finished trials are kept in MLflow; rerun the same command to continue"))


def study_of(args):
    """The study the command line names (a registered name or a study file) with its flags
    applied (`study.compose`), and the tune stage's scheduler."""
    from study.compose import SETTINGS, resolve
    flags = {key: getattr(args, key, None) for key in SETTINGS}
    flags["knobs"] = dict(getattr(args, "knob", None) or ()) or None
    return resolve(args.study, flags, smoke=getattr(args, "smoke", False),
                   save_full_weights=getattr(args, "save_full_weights", None))


def run_command(args, argv) -> int:
    if args.command == "list":
        cmd_list()
        return 0
    if getattr(args, "cache_dir", None):       # where this process and its local workers find
        os.environ["VPT_CACHE_DIR"] = os.path.abspath(args.cache_dir)   # imported tasks
    spec, scheduler = study_of(args)
    if args.command == "pretrain":
        return cmd_pretrain(spec.pretraining_here(), args.cache_dir)
    halving = None
    if scheduler == "halving" and args.command != "explain":
        from study.halving import Halving
        halving = Halving(args.reduction, args.grace_epochs)
    if args.command == "plan":
        cmd_plan(spec, halving, args.study, args.gpus or (), args.gpus_per_trial)
        return 0
    if args.command == "explain":
        from study.card import render
        print(render(spec, args.format), end="")
        return 0
    command = "python -m study " + shlex.join(sys.argv[1:] if argv is None else argv)
    return cmd_run(spec, args, halving, command)


if __name__ == "__main__":
    sys.exit(main())
