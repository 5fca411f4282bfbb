"""Where analyses write: an output folder per study holding each figure as PNG and PDF and each
table as CSV and markdown, every file also logged as an artifact of the study's summary run
(`study.summary`: the run the MLflow UI lists first, whose page shows the table and the
figures). Each figure says, in a line under it, which runs on which machine made it."""
from __future__ import annotations

import textwrap
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from results.runs import made_by, open_client
from results.table import paper_tables


@dataclass
class Report:
    study: str
    uri: str
    folder: Path
    runs: pd.DataFrame

    def __post_init__(self):
        self.folder = Path(self.folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.written: list[Path] = []

    def figure(self, fig, name: str) -> None:
        footer = f"{self.study}: from {made_by(self.runs)}; store {self.uri}"
        fig.draw_without_rendering()                              # the layout, then below it
        bottom = fig.get_tightbbox(fig.canvas.get_renderer())     # all, tick labels too
        fig.text(bottom.x0 / fig.get_figwidth(), bottom.y0 / fig.get_figheight() - 0.01,
                 textwrap.fill(footer, 160), fontsize=6, color="0.35", va="top", ha="left")
        for suffix in ("png", "pdf"):
            path = self.folder / f"{name}.{suffix}"
            fig.savefig(path, dpi=150, bbox_inches="tight")
            self.written.append(path)

    def table(self, frame: pd.DataFrame, name: str, index: bool = False) -> None:
        csv, md = self.folder / f"{name}.csv", self.folder / f"{name}.md"
        frame.to_csv(csv, index=index)
        md.write_text(frame.to_markdown(index=index) + f"\n\nFrom {made_by(self.runs)}.\n")
        self.written += [csv, md]

    def text(self, text: str, name: str) -> None:
        path = self.folder / name
        path.write_text(text)
        self.written.append(path)

    def log_to_mlflow(self) -> str:
        """Log everything written so far to the study's summary run, and refresh its table,
        metrics and description."""
        from study.summary import write_summary
        from study.tracking import keep_artifacts_beside
        keep_artifacts_beside(self.uri)
        client = open_client(self.uri)
        experiment = client.get_experiment_by_name(self.study)
        final = self.runs[self.runs["stage"] == "final"]
        tables = paper_tables(final, tune_runs=self.runs[self.runs["stage"] == "tune"]) \
            if not final.empty else None
        return write_summary(client, experiment.experiment_id, self.study, self.runs, tables,
                             self.written)
