"""`wins`: each strategy's wins against full finetuning per task and per group, each verdict
read from the 95 % Welch t interval of the mean difference over the seeds (`analysis.wins`)."""
from __future__ import annotations

from analysis.inputs import final_runs
from analysis.verb import Verb, register
from analysis.wins import RULE, group_wins, task_wins


def run(args, runs, report) -> str:
    per_task = task_wins(final_runs(runs))
    per_group = group_wins(per_task)
    report.table(per_task, "wins_per_task")
    report.table(per_group, "wins_per_group")
    return (RULE + "\n\n" + per_group.to_markdown(index=False) + "\n\n" +
            per_task.to_markdown(index=False))


VERB = register(Verb("wins", "wins against full finetuning per task and group: a verdict "
                             "from the 95% Welch t interval of the mean difference ('too few "
                             "seeds to tell' under 3 seeds)", run))
