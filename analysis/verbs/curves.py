"""`curves`: Figures 5/6, train and test loss per epoch, and an overfitting flag per run."""
from __future__ import annotations

from analysis.inputs import final_runs
from analysis.plots import OVERFIT_RULE, loss_curves
from analysis.verb import Verb, register


def run(args, runs, report) -> str:
    fig, flags = loss_curves(final_runs(runs), args.tracking_uri)
    report.figure(fig, "figures5_6_loss_curves")
    report.table(flags, "overfitting")
    return OVERFIT_RULE + "\n" + flags.to_markdown(index=False)


VERB = register(Verb("curves", "Figures 5/6 (train and test loss per epoch) and an overfitting "
                               "flag per run", run))
