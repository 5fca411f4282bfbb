"""Command line: `python -m analysis table <study> [--format markdown|csv|latex]` prints the
paper's Table 1/2 layout from the study's final-stage MLflow runs (and nothing else)."""
from __future__ import annotations

import argparse
import sys

from study.errors import StudyInputError


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m analysis", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    table = commands.add_parser("table", help="the paper's Table 1/2 layout for a study")
    table.add_argument("study", help="the study's name (its MLflow experiment)")
    table.add_argument("--format", choices=("markdown", "csv", "latex"), default="markdown")
    table.add_argument("--tracking-uri", help="default: $MLFLOW_TRACKING_URI or "
                                              "sqlite:///mlflow.db")
    args = parser.parse_args(argv)

    from analysis.runs import load_runs
    from analysis.table import paper_tables
    from study.tracking import tracking_uri
    try:
        runs = load_runs(args.study, args.tracking_uri or tracking_uri())
        final = runs[runs["stage"] == "final"]
        if final.empty:
            raise StudyInputError(f"study '{args.study}' has no final-stage runs yet")
        print(paper_tables(final, tune_runs=runs[runs["stage"] == "tune"]).render(args.format))
    except StudyInputError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
