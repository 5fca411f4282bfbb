"""Where analyses write: an output folder per study holding each figure as PNG and PDF and each
table as CSV and markdown, every file also logged as an artifact of one study-level MLflow run
(tag stage=analysis) so the MLflow UI shows them beside the trials."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from results.runs import open_client


@dataclass
class Report:
    study: str
    uri: str
    folder: Path

    def __post_init__(self):
        self.folder = Path(self.folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.written: list[Path] = []

    def figure(self, fig, name: str) -> None:
        for suffix in ("png", "pdf"):
            path = self.folder / f"{name}.{suffix}"
            fig.savefig(path, dpi=150, bbox_inches="tight")
            self.written.append(path)

    def table(self, frame: pd.DataFrame, name: str, index: bool = False) -> None:
        csv, md = self.folder / f"{name}.csv", self.folder / f"{name}.md"
        frame.to_csv(csv, index=index)
        md.write_text(frame.to_markdown(index=index) + "\n")
        self.written += [csv, md]

    def text(self, text: str, name: str) -> None:
        path = self.folder / name
        path.write_text(text)
        self.written.append(path)

    def log_to_mlflow(self) -> str:
        """Log everything written so far as artifacts of the study's analysis run."""
        client = open_client(self.uri)
        experiment = client.get_experiment_by_name(self.study)
        runs = client.search_runs([experiment.experiment_id], "tags.stage = 'analysis'")
        run_id = runs[0].info.run_id if runs else client.create_run(
            experiment.experiment_id, tags={"stage": "analysis", "study": self.study,
                                            "mlflow.runName": "analysis"}).info.run_id
        for path in self.written:
            client.log_artifact(run_id, str(path))
        if not runs:
            client.set_terminated(run_id, "FINISHED")
        return run_id
