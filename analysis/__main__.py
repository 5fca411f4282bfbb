"""Command line: `python -m analysis <verb> [study] [flags]`, reading MLflow runs and the task
cache only. Each verb is a module under analysis/verbs/ with its own flags
(`python -m analysis <verb> --help`). Figures go to --out (PNG and PDF), tables as CSV and
markdown, and all of it is logged as artifacts of the study's summary run ('<study>: results', the
first run the MLflow UI lists). Data goes to stdout, status lines to stderr. A verb reads a store
that exists: a mistyped path is refused (no new store is made), and a server or database that
does not answer is refused within seconds."""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from common.errors import StudyInputError, exit_status


def study_arguments() -> argparse.ArgumentParser:
    """The arguments every verb takes."""
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("study", nargs="?", default="demo",
                        help="the study's name (its MLflow experiment; default demo)")
    common.add_argument("--tracking-uri",
                        help="default: $MLFLOW_TRACKING_URI or sqlite:///mlflow.db")
    common.add_argument("--out", help="output folder (default: analysis_out/<study>)")
    common.add_argument("--cache-dir", default=os.environ.get("VPT_CACHE_DIR", "cache"),
                        help="the task cache (default: $VPT_CACHE_DIR, else cache)")
    return common


def parser() -> argparse.ArgumentParser:
    from analysis.verb import all_verbs
    top = argparse.ArgumentParser(prog="python -m analysis", description=__doc__,
                                  formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = top.add_subparsers(dest="verb", required=True, metavar="verb")
    common = study_arguments()
    for verb in all_verbs().values():
        # help strings are %-formatted by argparse: a summary's "95%" must reach it as "95%%"
        verb.arguments(sub.add_parser(verb.name, parents=[common],
                                      help=verb.summary.replace("%", "%%"),
                                      description=verb.summary))
    return top


def main(argv=None) -> int:
    args = parser().parse_args(argv)

    import pandas as pd

    from analysis.report import Report
    from analysis.verb import all_verbs
    from results.runs import COLUMNS, load_runs
    from study.spec import all_studies
    from study.tracking import check_readable, tracking_uri, unanswered
    args.tracking_uri = args.tracking_uri or tracking_uri()
    args.out = args.out or f"analysis_out/{args.study}"
    args.study_spec = args.study in all_studies()
    # a verb reads a store that is there already: no retries that wait out a server for minutes
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "30")

    verb = all_verbs()[args.verb]

    def study_runs():
        try:
            check_readable(args.tracking_uri)
            return load_runs(args.study, args.tracking_uri)
        except StudyInputError as error:
            if not verb.study_optional:
                raise
            print(f"no runs of study '{args.study}' ({error}): answering without them",
                  file=sys.stderr)
            return None

    def run() -> None:
        runs = study_runs()
        try:
            report = Report(args.study, args.tracking_uri, Path(args.out),
                            pd.DataFrame(columns=COLUMNS) if runs is None else runs)
            print(verb.run(args, report.runs, report))
            if report.written and runs is not None:
                run_id = report.log_to_mlflow()
                count = len(report.written)
                print(f"\nwrote {count} file{'s' * (count > 1)} to {args.out}; logged to MLflow "
                      f"run {run_id}, '{args.study}: results'", file=sys.stderr)
        except Exception as error:
            if not unanswered(error):
                raise
            raise StudyInputError(f"MLflow server {args.tracking_uri} stopped answering: "
                                  f"{str(error).splitlines()[0][:200]}") from None
    return exit_status(run)


if __name__ == "__main__":
    sys.exit(main())
