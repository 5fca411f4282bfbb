"""The verb registry. A verb is one module under `analysis/verbs/`: a name, a one-line summary,
the flags it takes (`arguments` adds them to its own subparser) and `run`, which reads the study's
MLflow runs, writes its figures and tables through the `Report` and returns the text it prints.
`python -m analysis` builds its command line from this registry."""
from __future__ import annotations

import argparse
from dataclasses import dataclass
from typing import Callable

import pandas as pd

from analysis.report import Report
from common.registry import add


def no_arguments(parser: argparse.ArgumentParser) -> None:
    pass


@dataclass(frozen=True)
class Verb:
    name: str
    summary: str
    run: Callable[[argparse.Namespace, pd.DataFrame, Report], str]
    arguments: Callable[[argparse.ArgumentParser], None] = no_arguments
    # runs without a study: given an empty runs table when the store or study is not there
    study_optional: bool = False


VERBS: dict[str, Verb] = {}


def register(verb: Verb) -> Verb:
    return add(VERBS, "verb", verb.name, verb)


def all_verbs() -> dict[str, Verb]:
    import analysis.verbs  # noqa: F401  (fills the registry)
    return dict(VERBS)
