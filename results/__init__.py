"""A study's results as data: MLflow runs as a tidy frame, the hyperparameter selection, the
paper's tables and published results to set beside them. Below both the study (which selects
from its tune runs) and the analyses (which read the final runs); it imports neither."""
