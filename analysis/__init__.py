"""The paper's analyses as verbs of `python -m analysis` (one module each under analysis/verbs/,
registered in analysis/verb.py), over the library code beside them: wins and their statistics,
FID, plots, attributions, the comparison with the paper and the advice rule. They read the runs
through `results` and write through `analysis.report`."""
