"""`compare`: the study's numbers next to the paper's Tables 1, 2 and 19, and whether the winner
against full finetuning agrees per task."""
from __future__ import annotations

from analysis.compare import compare, winner_agreement
from analysis.inputs import final_runs
from analysis.verb import Verb, register


def run(args, runs, report) -> str:
    comparison = compare(final_runs(runs))
    if comparison.empty:
        return "no (strategy, task) in common with the paper's Tables 1, 2 and 19"
    agreement = winner_agreement(comparison)
    report.table(comparison, "compare_with_paper")
    report.table(agreement, "winner_agreement")
    share = agreement["agrees"].mean() if len(agreement) else float("nan")
    return comparison.to_markdown(index=False) + \
        f"\n\nthe winner against full_ft agrees with the paper on {share:.0%} of tasks"


VERB = register(Verb("compare", "the study's numbers next to the paper's, with the win "
                                "pattern's agreement", run))
