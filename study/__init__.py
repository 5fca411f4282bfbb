"""The study: typed study specs (Python functions registered by name), the tune -> select ->
final protocol, MLflow tracking, the demo backbone's pretraining and the Ray runner (the one
module that imports ray). `python -m study --help` is the entry point."""
