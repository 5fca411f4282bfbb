"""`compare [SOURCE] STUDY`: the study's numbers next to published ones, SOURCE one of petl
(PETL_Vision's stored VTAB-1k results), vpt (the VPT paper's table) or paper (this paper's tables,
the default): per cell ours (mean ± std over seeds), theirs and a verdict from the seeds'
interval; both VTAB-1k averages, labelled; and whether the winner against full finetuning
agrees."""
from __future__ import annotations

import argparse

from analysis.compare import RULE, averages, compare, winner_agreement
from analysis.inputs import final_runs
from analysis.verb import Verb, register
from results.published import SOURCES, get_source

AVERAGES = ("both VTAB-1k averages, each side over the tasks the row shares with the source "
            "(over all 19 when the study ran them all): the mean over those tasks, and the mean "
            "of the group means (Natural, Specialized and Structured each averaged first)")


class _SourceThenStudy(argparse.Action):
    """The second name: with two names the first is the source; with one, it is the study."""

    def __call__(self, parser, namespace, values, option_string=None):
        if values is not None:
            namespace.source, namespace.study = namespace.study, values


def arguments(parser) -> None:
    parser.usage = "python -m analysis compare [-h] [options] [SOURCE] [STUDY]"
    parser.description += (f". With two names, the first is SOURCE ({', '.join(SOURCES)}) and "
                           f"the second the study; with one name, it is the study and SOURCE "
                           f"is paper")
    parser.set_defaults(source="paper")
    parser.add_argument("after_source", nargs="?", action=_SourceThenStudy, metavar="STUDY",
                        help="the study, when the first name is SOURCE")


def run(args, runs, report) -> str:
    source = get_source(args.source)
    comparison = compare(final_runs(runs), source.name)
    if comparison.empty:
        return (f"no cell of study '{args.study}' (data setting, task, strategy, backbone) has "
                f"a number in {source.title}: nothing to compare")
    means, agreement = averages(comparison), winner_agreement(comparison)
    report.table(comparison, f"compare_with_{source.name}")
    report.table(means, f"compare_with_{source.name}_averages")
    report.table(agreement, f"winner_agreement_with_{source.name}")
    shown = comparison.assign(ours=[f"{m:.2f}" if s != s else f"{m:.2f} ± {s:.2f}"
                                    for m, s in zip(comparison["ours"], comparison["ours_std"])])
    text = [f"the study '{args.study}' against {source.title}", RULE,
            shown.drop(columns="ours_std").to_markdown(index=False)]
    if not means.empty:
        text += [AVERAGES, means.to_markdown(index=False)]
    if len(agreement):
        text.append(f"the winner against full_ft agrees with the source on "
                    f"{agreement['agrees'].mean():.0%} of {len(agreement)} (task, strategy) "
                    f"pairs")
    return "\n\n".join(text)


VERB = register(Verb("compare", "the study's numbers next to published ones (SOURCE: petl, vpt "
                                "or paper), with a verdict per cell and both VTAB-1k averages",
                     run, arguments))
