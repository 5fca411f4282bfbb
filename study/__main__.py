"""Command line: `python -m study list | plan | explain | run | pretrain <study>`. Bad input
(an unknown name, a malformed flag) prints one line and exits with status 2, before anything
starts. `run` prints its progress on stderr and the table on stdout."""
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
from common.errors import StudyInputError, say  # noqa: E402
from trainables.config import PRECISIONS, Execution  # noqa: E402

EPILOG = """examples:
  python -m study list
  python -m study plan demo
  python -m study explain paper             # every setting of a preset and its source
  python -m study run demo --smoke          # about a minute
  python -m study run demo                  # the offline demo study (make demo)
  python -m study pretrain demo             # its backbone pretrained here, not the shipped one
  python -m study run demo --address auto --gpus-per-trial 0.25   # on a Ray cluster
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


def _seeds(text: str) -> tuple[int, ...]:
    try:
        seeds = tuple(int(s) for s in text.split(",") if s.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"seeds must be integers separated by commas, got "
                                         f"'{text}'") from None
    if not seeds:
        raise argparse.ArgumentTypeError("no seeds given")
    twice = sorted({s for s in seeds if seeds.count(s) > 1})
    if twice:
        raise argparse.ArgumentTypeError(f"seed{'s' * (len(twice) > 1)} "
                                         f"{', '.join(map(str, twice))} given twice; each seed "
                                         f"is one run per cell")
    return seeds


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
        sub.add_argument("study", help="a study name from `python -m study list`")
        sub.add_argument("--smoke", action="store_true", help="a tiny version (about a minute)")
        sub.add_argument("--seeds", type=_seeds, help="final-stage seeds, e.g. 42,44")
        if name == "explain":
            sub.add_argument("--format", choices=("markdown", "csv"), default="markdown")
        if name in ("plan", "run"):
            sub.add_argument("--scheduler", choices=("grid", "halving"), default="grid",
                             help="tune stage: every grid point to the end (grid, the paper's "
                                  "protocol), or successive halving within each cell (halving: "
                                  "Ray Tune's ASHA; stopped trials are never selected)")
            sub.add_argument("--reduction", type=_positive(float), default=3.0,
                             help="halving: keep the best 1/REDUCTION at each rung (default 3)")
            sub.add_argument("--grace-epochs", type=_positive(int),
                             help="halving: the first rung (default: the first epoch after "
                                  "the warm-up)")
        if name == "run":
            sub.add_argument("--cpus-per-trial", type=_positive(float), default=1.0)
            sub.add_argument("--gpus-per-trial", type=_positive(float, allow_zero=True),
                             default=0.0, help="fractions pack trials on one GPU, e.g. 0.25")
            sub.add_argument("--address", help="Ray cluster address (e.g. auto); default: a "
                                               "local Ray started for this run")
            sub.add_argument("--cache-dir", default=os.environ.get("VPT_CACHE_DIR", "cache"),
                             help="task array cache and backbone weights (default: ./cache)")
            sub.add_argument("--storage-path", default="ray_results",
                             help="Ray Tune storage; shared (NFS, s3://) on a cluster")
            sub.add_argument("--max-failures", type=_positive(int, allow_zero=True), default=1,
                             help="retries of a failing trial before it is recorded FAILED")
            sub.add_argument("--format", choices=("markdown", "csv", "latex"),
                             default="markdown")
            sub.add_argument("--precision", choices=PRECISIONS, default="auto",
                             help="auto: bf16 autocast on a GPU, and on a CPU with native bf16 "
                                  "for models of 5M parameters or more (measured faster there "
                                  "by `python -m bench`); fp32 otherwise")
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
    from study.spec import all_studies, study_doc
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
        print(f"  {strategy.name:<22} grid={strategy.grid:<7} {strategy.summary}")


def cmd_plan(spec, halving=None) -> None:
    from study.cost import METHOD, StageCost
    from trainables.strategy import get_strategy
    print(f"study {spec.name}: {len(spec.tasks)} tasks x {len(spec.strategies)} strategies x "
          f"{len(spec.backbones)} backbone(s) x settings {', '.join(spec.settings)}; "
          f"search space {spec.search_space.name}, {spec.epochs} epochs, seeds "
          f"{', '.join(map(str, spec.seeds))} (every setting and its source: "
          f"`python -m study explain {spec.name}`)")
    for backbone in spec.backbones:
        print(f"  backbone {backbone.tag}: timm {backbone.name}"
              + (f", weights {backbone.weights}" if backbone.weights else ""))
    for s in spec.strategies:
        grid = spec.search_space.grid_for(get_strategy(s).grid)
        recipe = spec.recipe(get_strategy(s).grid, 0.0, 0.0)
        print(f"  {s:<12} grid {grid.name} ({grid.optimizer}, batch {recipe.batch_size}, "
              f"warm-up {recipe.warmup_epochs}): base lr {grid.base_lrs} x wd "
              f"{grid.weight_decays}")
    assumed = spec.first_points()          # the price of a trial does not depend on its lr
    tune = spec.tune_trials() + spec.tune_trials(assumed)
    stages = {"tune": [(cfg, 1.0) for cfg in tune]}
    if halving:
        stages["halving"] = [(cfg, halving_share(spec, cfg, halving)) for cfg in tune]
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
              f"somewhat more)")
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
    print(f"GPU-hours: an estimate from {METHOD}")


def halving_share(spec, cfg, halving) -> float:
    """The fraction of a tune trial's own epochs that halving is expected to run, over its
    cell's grid."""
    from trainables.strategy import get_strategy
    points = len(spec.search_space.grid_for(get_strategy(cfg.strategy).grid).points())
    return halving.expected_epochs(points, cfg.recipe) / (points * cfg.recipe.epochs)


def cmd_run(spec, args, halving=None, command: str = "") -> int:
    from study.protocol import run_study
    from study.ray_runner import RayRunner
    from study.tracking import StudyTracker
    tracker = StudyTracker(spec.name)
    runner = RayRunner(tracker, args.cpus_per_trial, args.gpus_per_trial, args.address,
                       args.storage_path, args.max_failures, halving=halving)
    runner.preflight()
    try:
        execution = Execution(threads=max(1, int(args.cpus_per_trial)), precision=args.precision,
                              compile=args.compile, gpu_share=args.gpus_per_trial)
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
    try:
        if args.command == "list":
            cmd_list()
            return 0
        from study.spec import get_study
        spec = get_study(args.study, smoke=getattr(args, "smoke", False),
                         seeds=getattr(args, "seeds", None),
                         save_full_weights=getattr(args, "save_full_weights", None))
        if args.command == "pretrain":
            return cmd_pretrain(spec.pretraining_here(), args.cache_dir)
        halving = None
        if getattr(args, "scheduler", "grid") == "halving":
            from study.halving import Halving
            halving = Halving(args.reduction, args.grace_epochs)
        if args.command == "plan":
            cmd_plan(spec, halving)
            return 0
        if args.command == "explain":
            from study.card import render
            print(render(spec, args.format), end="")
            return 0
        command = "python -m study " + shlex.join(sys.argv[1:] if argv is None else argv)
        return cmd_run(spec, args, halving, command)
    except StudyInputError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except Exception as error:                 # a full disk under the cache or the store
        from common.files import disk_full
        if not disk_full(error):
            raise
        print(f"error: {error}; free space there and run the same command again",
              file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted: finished trials are kept in MLflow; rerun the same command to "
              "continue", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
