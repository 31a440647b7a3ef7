"""Reading finished runs: each run's accuracy under the reporting protocol, summarised over seeds."""

from __future__ import annotations

import json
import math
import statistics
from dataclasses import dataclass
from typing import Any

import pandas as pd

from kdrepro.experiments import SNAPSHOT, Registry

# The accuracy each reporting protocol reads from metrics.json, and how captions name it.
REPORT_KEYS = {
    "best_test": ("best_test_acc", "best test accuracy over epochs"),
    "final_test": ("final_test_acc", "test accuracy after the last epoch"),
    "test_at_best_val": ("test_acc_at_best_val", "test accuracy at the epoch of best validation accuracy"),
}


@dataclass
class Stat:
    values: list[float]
    missing: int = 0

    @property
    def n(self) -> int:
        return len(self.values)

    @property
    def mean(self) -> float:
        return statistics.fmean(self.values) if self.values else math.nan

    @property
    def std(self) -> float:
        return statistics.stdev(self.values) if self.n > 1 else math.nan

    def text(self) -> str:
        if not self.values:
            return "missing"
        return f"{self.mean:.2f} ± {self.std:.2f}" if self.n > 1 else f"{self.mean:.2f}"


class Results:
    """Reads one paper's finished runs and summarises them over its seeds under the reporting protocol
    (the setting's `report`, or the paper's own where that says `paper`)."""

    def __init__(self, registry: Registry, paper: str):
        self.registry, self.paper = registry, paper
        report = registry.config["report"]
        self.report = registry.experiments[paper]["report"] if report == "paper" else report
        self.key, self.protocol_text = REPORT_KEYS[self.report]
        self.seeds = registry.seeds(paper)

    def metrics(self, run: str) -> dict[str, Any] | None:
        path = self.registry.run_dir(run) / "metrics.json"
        return json.loads(path.read_text()) if path.exists() else None

    def accuracy(self, ref: str) -> float | None:
        """A run's accuracy under the protocol, or, for "run@epochN", the test accuracy of its epoch-N snapshot."""
        run, _, epoch = ref.partition(SNAPSHOT)
        metrics = self.metrics(run)
        if metrics is None:
            return None
        if epoch:
            return metrics["snapshot_test_acc"][epoch]
        if self.key not in metrics:
            raise KeyError(f"run {run} has no {self.key}: the {self.report} protocol needs a validation split (data.validation > 0)")
        return metrics[self.key]

    def stat(self, runs: list[str]) -> Stat:
        values = [v for v in (self.accuracy(r) for r in runs) if v is not None]
        return Stat(values, missing=len(runs) - len(values))

    def curves(self, runs: list[str]) -> pd.DataFrame:
        """Test accuracy of each run's reported node after every epoch: one column per finished run."""
        columns = {}
        for run in runs:
            path = self.registry.run_dir(run) / "epochs.csv"
            if path.exists():
                frame = pd.read_csv(path, index_col="epoch")
                columns[run] = frame[f"test_acc[{self.registry.runs[run].eval_node}]"]
        return pd.DataFrame(columns)
