"""Keys shared across layers: the mark of a trial's last report (written by trainables, recorded
by study) and the cell, the unit a study tunes and selects for (built by study, read back from
MLflow's columns by results)."""
from typing import NamedTuple

SUMMARY = "summary"          # marks a trial's last report: its summary, not an epoch


class Cell(NamedTuple):
    """One row of a study's results: a strategy on a task at a data setting with a backbone. Each
    cell is tuned on its strategy's grid, then run once per final seed."""
    backbone: str                   # the backbone's tag
    setting: str
    task: str
    strategy: str
