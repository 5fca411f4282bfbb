"""Analyses that read only MLflow: the runs as a tidy pandas frame, hyperparameter selection
(best last-epoch val accuracy, ties to the smaller lr) and the paper's Table 1/2 layout.
`python -m analysis --help` is the entry point."""
