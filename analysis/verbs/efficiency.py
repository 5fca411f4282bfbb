"""`efficiency`: test accuracy against trainable parameters (log x), one panel per task group,
one point per strategy (the group's mean of each task's mean over seeds), and the numbers behind
it; for a study of many parameter-efficient methods, such as demo-petl or petl."""
from __future__ import annotations

from analysis.inputs import final_runs
from analysis.plots import efficiency
from analysis.verb import Verb, register
from common.errors import StudyInputError


def run(args, runs, report) -> str:
    final = final_runs(runs)
    if "trainable_params" not in final:
        raise StudyInputError("the study's final runs record no trainable_params")
    fig, points = efficiency(final)
    report.figure(fig, "efficiency")
    points = points.sort_values(["group", "trainable_params"])
    report.table(points, "efficiency_data")
    return points.to_markdown(index=False, floatfmt=("", "", ".1f", ",.0f", ".0f"))


VERB = register(Verb("efficiency", "test accuracy against trainable parameters (log x), a point "
                                   "per strategy and task group", run))
