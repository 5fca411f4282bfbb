"""A study's results as data: MLflow runs as a tidy frame, the hyperparameter selection and the
paper's tables. Below both the study (which selects from its tune runs) and the analyses (which
read the final runs); it imports neither."""
