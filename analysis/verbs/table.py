"""`table`: the paper's Table 1/2 layout, per backbone and data setting: mean ± std over the
final seeds per task, group means with the count of tasks beating full finetuning, and the
Tuned / Total rows, and which runs on which machine made it; as CSV, one row per cell with numeric
mean and std."""
from __future__ import annotations

from analysis.inputs import final_runs
from analysis.verb import Verb, register
from results.runs import made_by
from results.table import paper_tables

SUFFIX = {"markdown": "md", "csv": "csv", "latex": "tex"}


def arguments(parser) -> None:
    parser.add_argument("--format", choices=tuple(SUFFIX), default="markdown",
                        help="what is printed and written as table.<md|csv|tex>; csv: one row "
                             "per cell, numeric mean and std columns")


def run(args, runs, report) -> str:
    text = paper_tables(final_runs(runs), tune_runs=runs[runs["stage"] == "tune"]) \
        .render(args.format)
    if args.format != "csv":               # CSV stays one header and rows, for programs
        text += f"\n\n{'% ' if args.format == 'latex' else ''}From {made_by(runs)}."
    report.text(text + "\n", f"table.{SUFFIX[args.format]}")
    return text


VERB = register(Verb("table", "the paper's Table 1/2 layout (per backbone and data setting)",
                     run, arguments))
