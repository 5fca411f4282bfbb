"""`curves`: Figures 5/6, train and test loss per epoch per task and strategy (the tune grid's
val loss and its selected point behind), and an overfitting flag per (task, strategy)."""
from __future__ import annotations

from analysis.inputs import final_runs
from analysis.plots import OVERFIT_RULE, loss_curves
from analysis.verb import Verb, register


def run(args, runs, report) -> str:
    final_runs(runs)                                # refuses a study without final runs
    fig, flags = loss_curves(runs, args.tracking_uri)
    report.figure(fig, "figures5_6_loss_curves")
    report.table(flags, "overfitting")
    return OVERFIT_RULE + "\n" + flags.to_markdown(index=False)


VERB = register(Verb("curves", "Figures 5/6 (train and test loss per epoch) and an overfitting "
                               "flag per run", run))
