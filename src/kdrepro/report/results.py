"""Reading finished runs: each run's accuracy under the reporting protocol, summarised over seeds."""

from __future__ import annotations

import json
import math
import statistics
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from kdrepro.data.folders import data_meta
from kdrepro.experiments import SNAPSHOT, Registry, run_of
from kdrepro.graph import Data

# The accuracy each reporting protocol reads from metrics.json, and how captions name it.
REPORT_KEYS = {
    "best_test": ("best_test_acc", "best test accuracy over epochs"),
    "final_test": ("final_test_acc", "test accuracy after the last epoch"),
    "test_at_best_val": ("test_acc_at_best_val", "test accuracy at the epoch of best validation accuracy"),
}


NOT_TRAINED_MARK = "†"  # beside a number that includes a run that did not train (metrics.json `trained: false`)


@dataclass
class Stat:
    """A template's runs over seeds: their accuracies, and what the claims need to pair and weigh them."""

    values: list[float]
    missing: int = 0
    seeds: list[int] | None = None  # the seed of each value (None: the values' positions stand for them)
    runs: list[str] = field(default_factory=list)  # the run behind each value, where known
    not_trained: dict[str, str] = field(default_factory=dict)  # run -> why it did not train (its value is in `values`)
    test_images: int | None = None  # the size of the test set the values were measured on

    def by_seed(self) -> dict[int, float]:
        """The values of the runs that trained, by seed (what a claim may count as evidence)."""
        seeds = self.seeds if self.seeds is not None else list(range(self.n))
        runs = self.runs or [""] * self.n
        return {seed: value for seed, run, value in zip(seeds, runs, self.values) if run not in self.not_trained}

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
        mark = NOT_TRAINED_MARK if self.not_trained else ""
        return (f"{self.mean:.2f} ± {self.std:.2f}" if self.n > 1 else f"{self.mean:.2f}") + mark


def read_metrics(registry: Registry, run: str) -> dict[str, Any] | None:
    """A finished run's metrics.json, or None while it has not finished."""
    path = registry.run_dir(run) / "metrics.json"
    return json.loads(path.read_text()) if path.exists() else None


def not_trained_because(registry: Registry, run: str) -> str | None:
    """Why a finished run did not train (its metrics say `trained: false`), or None."""
    metrics = read_metrics(registry, run) or {}
    return None if metrics.get("trained", True) else metrics.get("not_trained_because", "no reason recorded")


def seeds_text(registry: Registry, refs: list[str], seeds: list[int]) -> str:
    """The seeds that the runs `refs` cover, cell by cell (a cell: the runs of one name but the seed; a run named
    without its seed, an external teacher's evaluation, is no cell): "3 seed(s) (0, 1, 2)", or where cells differ
    (takd.seeds_by_family) "3 or 5 seeds per cell (0, 1, 2 / 0, 1, 2, 3, 4)"; `seeds` where `refs` names no cell."""
    cells: dict[str, set[int]] = {}
    for run in {run_of(ref) for ref in refs}:
        seed = registry.spec(run).seed
        if run.endswith(f"/s{seed}"):
            cells.setdefault(run.removesuffix(f"/s{seed}"), set()).add(seed)
    kinds = sorted({tuple(sorted(cell)) for cell in cells.values()}, key=lambda cell: (len(cell), cell)) or [tuple(seeds)]
    listed = " / ".join(", ".join(map(str, kind)) for kind in kinds)
    if len(kinds) == 1:
        return f"{len(kinds[0])} seed(s) ({listed})"
    return f"{' or '.join(str(len(kind)) for kind in kinds)} seeds per cell ({listed})"


def not_trained_note(registry: Registry, refs: list[str]) -> str:
    """The caption sentence naming the runs among `refs` that did not train and why ("" when none); a snapshot
    reference ("run@epochN", a deliberately early model) is not judged."""
    runs = sorted({ref for ref in refs if SNAPSHOT not in ref})
    reasons = [f"{run} ({why})" for run in runs if (why := not_trained_because(registry, run))]
    if not reasons:
        return ""
    return f"{NOT_TRAINED_MARK} includes a run that did not train (excluded from every claim): " + "; ".join(reasons) + "."


def test_images(data: Data) -> int | None:
    """The number of test images a run is measured on: its test subset, else the dataset's test split."""
    meta = data_meta(data)
    return data.test_subset or (meta.test if meta else None)


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
        return read_metrics(self.registry, run)

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

    def stat(self, refs: list[str]) -> Stat:
        """The references' accuracies with their seeds and test-set size, and the runs among them that did not
        train (a snapshot reference, "run@epochN", is read as the deliberately early model it is: never flagged)."""
        found = [(ref, v) for ref, v in ((ref, self.accuracy(ref)) for ref in refs) if v is not None]
        specs = [self.registry.spec(run_of(ref)) for ref, _ in found]
        not_trained = {ref: why for ref, _ in found if SNAPSHOT not in ref and (why := not_trained_because(self.registry, ref))}
        return Stat([v for _, v in found], missing=len(refs) - len(found), seeds=[spec.seed for spec in specs],
                    runs=[ref for ref, _ in found], not_trained=not_trained, test_images=test_images(specs[0].data) if specs else None)

    def curves(self, runs: list[str]) -> pd.DataFrame:
        """Test accuracy of each run's reported node after every epoch the test split was evaluated (RunSpec.test_every):
        one column per finished run."""
        columns = {}
        for run in runs:
            path = self.registry.run_dir(run) / "epochs.csv"
            if path.exists():
                frame = pd.read_csv(path, index_col="epoch")
                columns[run] = frame[f"test_acc[{self.registry.runs[run].eval_node}]"]
        return pd.DataFrame(columns).dropna(how="all")
