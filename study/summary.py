"""The study's answer where the MLflow UI opens. One run per study, tagged stage=summary and named
"<study>: results", holds the table (markdown and CSV), the selected configuration of each cell
(selection.csv: its learning rate, weight decay, val accuracy and runs), one metric per cell
(`test_acc/<task>/<strategy>`, the mean over the final seeds, and `test_acc_std/...`), the
analysis verbs' figures and tables, and a description that its page shows first: the table, the
selected configuration with a link to each selected run, the figures, and which runs on which
machine made them. `study run` writes it after the final stage, and every analysis verb refreshes
it. The experiment's description starts with a link to it and the same table; a saved view of
the runs table (`mlflow.sharedViewState.<key>`, MLflow's "share view") lists the top-level runs
first (the summary, the stage parents, the protocol card: tag `place`, which trials lack), then
the trials, with the accuracy columns and whole run names. `study run` prints both addresses."""
from __future__ import annotations

import json
import tempfile
from pathlib import Path

import pandas as pd
from mlflow.entities import Metric

from results.runs import made_by, search_all
from results.table import PaperTables

STAGE = "summary"
PLACE = "place"                         # the top-level runs' order in the saved views
VIEW = "study-runs"                     # the saved views' share keys: every run,
SELECTED = "study-selected"             # and the tune runs the selection chose
NOTE = "mlflow.note.content"            # a run's or experiment's description in the UI
RULE = "\n\n---\n\n"                    # between the answer and the protocol card
MAX_DESCRIPTION = 8000                  # MLflow keeps this much of a run's tag
MAX_EXPERIMENT_NOTE = 20000             # and takes no more in an experiment's
NAME = "attributes.`Run Name`"          # the runs table's column of run names
COLUMNS = ["metrics.`final_test_acc`", "metrics.`final_val_acc`", "params.`base_lr`",
           "params.`weight_decay`", "tags.`outcome`", "tags.`selected`"]


def run_page(experiment_id: str, run_id: str, mode: bool = True) -> str:
    """A run's page in the UI's model-training view (MLflow 3 opens its GenAI pages unless the
    address asks, and remembers no choice until the user flips its switch); without `mode`,
    shorter, for the many links of a description."""
    return f"#/experiments/{experiment_id}/runs/{run_id}" + \
        ("?workflowType=machine_learning" if mode else "")


def runs_page(experiment_id: str, view: str = VIEW) -> str:
    """The runs table in a saved view (model training, not MLflow's GenAI pages)."""
    return (f"#/experiments/{experiment_id}/runs?workflowType=machine_learning"
            f"&viewStateShareKey={view}")


def find_summary(client, experiment_id: str) -> str | None:
    found = client.search_runs([experiment_id], f"tags.stage = '{STAGE}'")
    return found[0].info.run_id if found else None


def selection(runs: pd.DataFrame) -> pd.DataFrame:
    """Per cell: the selected tune run's learning rate, weight decay and val accuracy, its run
    id and the final runs that used it."""
    chosen = runs[(runs["stage"] == "tune") & (runs["selected"] == "true")]
    final = runs[runs["stage"] == "final"]
    rows = [{"backbone": row.backbone, "setting": row.setting, "task": row.task,
             "strategy": row.strategy, "base_lr": row.base_lr, "weight_decay": row.weight_decay,
             "val_acc": round(row.final_val_acc, 2), "tune_run": row.run_id,
             "final_runs": " ".join(final[final["selected_from"] == row.run_id]["run_id"])}
            for row in chosen.itertuples()]
    return pd.DataFrame(rows, columns=["backbone", "setting", "task", "strategy", "base_lr",
                                       "weight_decay", "val_acc", "tune_run", "final_runs"])


def cell_metrics(tables: PaperTables, stamp: int) -> list[Metric]:
    """One metric per cell and statistic; a study of several blocks names the block too."""
    metrics = []
    for (backbone, setting), table in tables.blocks.items():
        block = "" if len(tables.blocks) == 1 else f"{backbone}/{setting}/"
        for name, values in (("test_acc", table.mean), ("test_acc_std", table.std)):
            metrics += [Metric(f"{name}/{block}{task}/{strategy}", float(value), stamp, 0)
                        for (strategy, task), value in values.stack().items() if pd.notna(value)]
    return metrics


def accuracy(table) -> str:
    """The table's accuracy rows (its Tuned / Total rows are in table.md) as markdown."""
    return table.cells[~table.cells.index.str.startswith("Tuned")].to_markdown()


def _selected_grid(table, chosen: pd.DataFrame, experiment_id: str, links: bool) -> str:
    """The table's layout with each cell's selected base lr / wd, linked to its tune run."""
    grid = pd.DataFrame("", index=table.mean.index, columns=table.mean.columns)
    for row in chosen.itertuples():
        if row.strategy in grid.index and row.task in grid.columns:
            text = f"{row.base_lr:g} / {row.weight_decay:g}"
            grid.loc[row.strategy, row.task] = (
                f"[{text}]({run_page(experiment_id, row.tune_run, mode=False)})" if links
                else text)
    grid.index.name = "strategy"
    return grid.to_markdown()


def describe(study: str, experiment_id: str, runs: pd.DataFrame, tables: PaperTables,
             figures: list[str], run_id: str, shown: int = 4, links: bool = True) -> str:
    """The summary run's description: the table, the selected configuration (`links`: each a
    link to its run), the first `shown` figures drawn and the others named."""
    chosen = selection(runs)
    parts = ["Test accuracy %, mean ± std over the final seeds (last epoch)."]
    linked = "; each links to its tune run, named by its final runs' tag selected_from"
    for (backbone, setting), table in tables.blocks.items():
        block = chosen[(chosen["backbone"] == backbone) & (chosen["setting"] == setting)]
        parts.append(f"### backbone {backbone}, train size {setting}\n\n{accuracy(table)}"
                     f"\n\nSelected base lr / weight decay per cell (by last-epoch val "
                     f"accuracy{linked if links else ''}):\n\n"
                     f"{_selected_grid(table, block, experiment_id, links)}")
    parts.append(f"From {made_by(runs)}. Group means with, in parentheses, the tasks where "
                 f"the strategy's mean beats full_ft's (whether a difference is beyond the "
                 f"seeds' noise: `python -m analysis wins {study}`).")
    drawn = [f"**{Path(name).stem}**\n\n![{Path(name).stem}](get-artifact?path={name}&run_uuid="
             f"{run_id})" for name in figures[:shown]]
    named = ", ".join(Path(name).stem for name in figures[shown:])
    parts.append("### Figures\n\n" + ("\n\n".join(drawn) + (
        f"\n\nIn the Artifacts tab too: {named}." if named else "") if figures else
        f"None yet: `make analysis` (or `python -m analysis <verb> {study}`) draws them into "
        f"analysis_out/{study}/ and adds them to this run."))
    parts.append(f"The selected tune runs, one per cell: [selected runs]("
                 f"{runs_page(experiment_id, SELECTED)}). All runs, with their accuracy "
                 f"columns: [runs table]({runs_page(experiment_id)}). Files: this run's "
                 f"artifacts (table.md, table.csv, selection.csv, figures).")
    return "\n\n".join(parts)


def headline_first(figures: list[str]) -> list[str]:
    """The figures over the whole study first, then the per-task ones (Figures 8 and 17)."""
    return sorted(figures, key=lambda name: (name.startswith(("figure8_", "figure17_")), name))


def write_summary(client, experiment_id: str, study: str, runs: pd.DataFrame,
                  tables: PaperTables | None, files=()) -> str:
    """Create or refresh the study's summary run (see the module's docstring); return its id.
    `files` (paths) are logged as its artifacts too; without `tables` (no final runs), only
    they are."""
    run_id = find_summary(client, experiment_id)
    if run_id is None:
        run_id = client.create_run(experiment_id, tags={
            "stage": STAGE, "study": study, "mlflow.runName": f"{study}: results"}).info.run_id
        client.set_terminated(run_id, "FINISHED")
    for path in files:
        client.log_artifact(run_id, str(path))
    if tables is None:                      # no final runs yet: the files, nothing to summarise
        return run_id
    with tempfile.TemporaryDirectory() as folder:
        written = {"table.md": tables.render("markdown") + "\n", "table.csv":
                   tables.render("csv"), "selection.csv": selection(runs).to_csv(index=False)}
        for name, text in written.items():
            (Path(folder) / name).write_text(text)
            client.log_artifact(run_id, str(Path(folder) / name))
    metrics = cell_metrics(tables, int(pd.Timestamp.now().timestamp() * 1000))
    for start in range(0, len(metrics), 1000):                    # log_batch takes 1000
        client.log_batch(run_id, metrics=metrics[start:start + 1000])
    figures = headline_first([a.path for a in client.list_artifacts(run_id)
                              if a.path.endswith(".png")])
    for shown, links in ((4, True), (0, True), (0, False)):       # what fits MLflow's limit
        text = describe(study, experiment_id, runs, tables, figures, run_id, shown, links)
        if len(text) <= MAX_DESCRIPTION:
            break
    client.set_tag(run_id, NOTE, text[:MAX_DESCRIPTION])
    answer = (f"**The answer: [{study}: results]({run_page(experiment_id, run_id)})** (the "
              f"table, the selected configuration per cell with links to its runs, the figures; "
              f"[all runs]({runs_page(experiment_id)}))\n\n" +
              "\n\n".join(accuracy(table) for table in tables.blocks.values()))
    set_description(client, experiment_id, answer=answer)
    top = search_all(client, experiment_id, "tags.mlflow.parentRunId IS NULL")
    top = sorted(top, key=lambda r: r.info.run_id != run_id)      # the summary, then newest
    for place, run in enumerate(top, 1):            # listed before any trial (which has none)
        if run.data.tags.get(PLACE) != f"{place:03d}":
            client.set_tag(run.info.run_id, PLACE, f"{place:03d}")
    view = {"selectedColumns": COLUMNS, "columnOrder": [NAME, *COLUMNS],  # widths need both
            "columnWidths": {NAME: 360},
            "runsHiddenMode": "SHOW_ALL", "orderByKey": f"tags.`{PLACE}`", "orderByAsc": True}
    for key, search in ((VIEW, ""), (SELECTED, "tags.selected = 'true'")):
        client.set_experiment_tag(experiment_id, f"mlflow.sharedViewState.{key}",
                                  json.dumps({**view, "searchFilter": search}))
    return run_id


def set_description(client, experiment_id: str, answer: str | None = None,
                    card: str | None = None) -> None:
    """The experiment's description: the answer above the protocol card; either part is kept
    as it is when not given."""
    current = client.get_experiment(experiment_id).tags.get(NOTE, "")
    old_answer, _, old_card = current.partition(RULE) if RULE in current else ("", "", current)
    answer, card = answer if answer is not None else old_answer, card if card is not None \
        else old_card
    if len(answer) + len(RULE) + len(card) > MAX_EXPERIMENT_NOTE:    # the link, not the table
        answer = answer.split("\n\n")[0]
    text = (answer + RULE if answer else "") + card
    client.set_experiment_tag(experiment_id, NOTE, text[:MAX_EXPERIMENT_NOTE])
