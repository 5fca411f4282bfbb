"""`quadrants`: Figure 3 (each task's FID, coloured by the VPT / FT winner where the `wins` rule
finds one, grey where it does not; structured tasks hatched) and the Figure 1 quadrant counts,
from the `fid` verb's table."""
from __future__ import annotations

from analysis.inputs import final_runs, measured_fid
from analysis.plots import quadrants, winners
from analysis.verb import Verb, register


def run(args, runs, report) -> str:
    fid, column = measured_fid(args)
    fig, counts, data = quadrants(fid, winners(final_runs(runs)), column)
    report.figure(fig, "figure3_fid_winners")
    report.table(counts, "figure1_quadrants")
    report.table(data, "figure3_data")
    return f"quadrant counts ({column}; FID split at its median)\n" + \
        counts.to_markdown(index=False)


VERB = register(Verb("quadrants", "Figure 3 (FID bars coloured by the VPT / FT winner by the "
                                  "`wins` rule, structured hatched) and the Figure 1 quadrant "
                                  "counts; needs `fid` first", run))
