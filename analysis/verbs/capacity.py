"""`capacity`: Figure 4, accuracy against training-set size (FT solid, VPT dotted, mean ± std
over the seeds), and the Table 5/6 layout, from a study run at several train sizes."""
from __future__ import annotations

from analysis.inputs import final_runs
from analysis.plots import capacity
from analysis.verb import Verb, register
from common.errors import StudyInputError
from results.table import paper_tables


def run(args, runs, report) -> str:
    final = final_runs(runs)
    fig, points = capacity(final)
    if points["train_size"].nunique() < 2:
        raise StudyInputError("capacity needs final runs at two or more train sizes (a study "
                              "with several settings, such as demo-scale or paper-scale)")
    report.figure(fig, "figure4_capacity")
    report.table(points, "figure4_data")
    tables = paper_tables(final).render("markdown")
    report.text(tables + "\n", "tables5_6.md")
    return tables


VERB = register(Verb("capacity", "Figure 4 (accuracy against training-set size, FT solid, VPT "
                                 "dotted) and the Table 5/6 layout, from a study with several "
                                 "train sizes (demo-scale, paper-scale)", run))
