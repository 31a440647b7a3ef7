"""The run registry: every run and every target (table, figure, claims) of a setting.

Each paper module turns its experiment file (config/experiments/<paper>.yaml) and the setting
into run specs and targets. Snakemake builds its DAG from this registry alone: a target's
inputs are the metrics of the runs it reads, a run's inputs are the checkpoints of the runs
its frozen nodes name.
"""

from __future__ import annotations

import json
import math
import statistics
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from kdrepro.config import conform, read_yaml
from kdrepro.graph import RunSpec, SpecError, check_graph

EXPERIMENTS_DIR = Path("config/experiments")
EXPERIMENTS_SCHEMA = Path("workflow/schemas/experiments.schema.yaml")
PAPER_VALUES_DIR = Path("config/paper_values")

NUM_CLASSES = {"fashion_mnist": 10, "mnist": 10, "cifar10": 10, "cifar100": 100, "svhn": 10}

# Accuracy each reporting protocol reads from metrics.json.
SNAPSHOT = "@epoch"  # "run@epoch3": the snapshot a run saved after epoch 3 (tables read its accuracy)


def run_of(ref: str) -> str:
    """The run behind a reference that may name one of its snapshots."""
    return ref.partition(SNAPSHOT)[0]


REPORT_KEYS = {
    "best_test": ("best_test_acc", "best test accuracy over epochs"),
    "final_test": ("final_test_acc", "test accuracy after the last epoch"),
    "test_at_best_val": ("test_acc_at_best_val", "test accuracy at the epoch of best validation accuracy"),
}


@dataclass
class Target:
    name: str
    paper: str
    kind: str  # table | figure | claims
    runs: list[str]
    outputs: list[str]
    render: Callable[[], None]


@dataclass
class Registry:
    config: dict[str, Any]
    runs: dict[str, RunSpec] = field(default_factory=dict)
    targets: dict[str, Target] = field(default_factory=dict)
    experiments: dict[str, dict[str, Any]] = field(default_factory=dict)  # paper -> its experiment file
    # runs built from a finished search's result (best.json): the workflow takes them from the search's
    # checkpoint, never from the parse, so a search that chooses again changes what is trained
    searched: set[str] = field(default_factory=set)

    @property
    def setting(self) -> str:
        return self.config["setting"]

    @property
    def results_dir(self) -> Path:
        return Path("results") / self.setting

    @property
    def figures_dir(self) -> Path:
        return Path("figures") / self.setting

    def run_dir(self, run: str) -> Path:
        return self.results_dir / "runs" / run

    def add_runs(self, specs: dict[str, RunSpec]) -> None:
        for name, spec in specs.items():
            if name in self.runs and self.runs[name] != spec:
                raise SpecError(f"run {name} is defined twice with different specs")
            self.runs[name] = spec

    def papers(self) -> dict[str, list[str]]:
        out: dict[str, list[str]] = {}
        for target in self.targets.values():
            out.setdefault(target.paper, []).append(target.name)
        return out


def paper_seeds(config: dict[str, Any], paper: str) -> list[int]:
    """A paper block's own `seeds` (a CPU setting may afford fewer for some papers), else the setting's."""
    return list(config.get(paper, {}).get("seeds") or config["seeds"])


def check_substitutions(paper: str, substitute: dict[str, str]) -> None:
    """A paper block's `substitute`: both sides are known networks and nothing trained in place of
    another is itself replaced."""
    from kdrepro.models import list_models

    known = list_models()
    for paper_arch, arch in substitute.items():
        unknown = [a for a in (paper_arch, arch) if a not in known]
        if unknown:
            raise SpecError(f"{paper}.substitute: {paper_arch} -> {arch}: unknown model {unknown[0]!r}; known: {', '.join(known)}")
        if arch in substitute:
            raise SpecError(f"{paper}.substitute: {paper_arch} -> {arch}, but {arch} is itself replaced by {substitute[arch]}")


def substitution_note(substitute: dict[str, str]) -> str:
    """The caption sentence naming what a setting trains in place of the paper's networks."""
    parts = [f"{a} → {b}" for a, b in substitute.items()]
    return f"Substitutions in this setting (paper network → network trained): {', '.join(parts)}." if parts else ""


def num_classes(dataset: str, config: dict[str, Any]) -> int:
    if dataset == "image_folder":
        return len([p for p in (Path(config["data"]["roots"]["image_folder"]) / "train").iterdir() if p.is_dir()])
    return NUM_CLASSES[dataset]


def book(dataset: str, config: dict[str, Any]) -> str:
    """CIFAR-10 rules for datasets of at most 10 classes, CIFAR-100 rules above."""
    return "cifar10" if num_classes(dataset, config) <= 10 else "cifar100"


class Results:
    """Reads finished runs' metrics and summarises them over seeds under the reporting protocol."""

    def __init__(self, registry: Registry, paper: str):
        self.registry = registry
        report = registry.config["report"]
        self.report = registry.experiments[paper]["report"] if report == "paper" else report
        self.key, self.protocol_text = REPORT_KEYS[self.report]
        self.seeds = paper_seeds(registry.config, paper)

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

    def stat(self, runs: list[str]) -> "Stat":
        values = [v for v in (self.accuracy(r) for r in runs) if v is not None]
        return Stat(values, missing=len(runs) - len(values))

    def curves(self, runs: list[str]) -> "pd.DataFrame":
        """Test accuracy of each run's reported node after every epoch: one column per finished run."""
        import pandas as pd

        columns = {}
        for run in runs:
            path = self.registry.run_dir(run) / "epochs.csv"
            if path.exists():
                frame = pd.read_csv(path, index_col="epoch")
                columns[run] = frame[f"test_acc[{self.registry.runs[run].eval_node}]"]
        return pd.DataFrame(columns)


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


def load_yaml(path: Path) -> dict[str, Any]:
    if not path.exists():
        raise FileNotFoundError(f"{path} does not exist (run kdrepro from the repository root)")
    return read_yaml(path) or {}


def load_experiment(paper: str, experiments_dir: Path = EXPERIMENTS_DIR) -> dict[str, Any]:
    """A paper's experiment file, checked against its schema (the file and the dotted key are named)."""
    path = experiments_dir / f"{paper}.yaml"
    return conform(load_yaml(path), EXPERIMENTS_SCHEMA, where=str(path), definition=paper)


def build_registry(config: dict[str, Any], experiments_dir: Path = EXPERIMENTS_DIR) -> Registry:
    """All runs and targets of every paper for this (validated) setting."""
    from kdrepro.papers import PAPERS

    registry = Registry(config)
    for paper, module in PAPERS.items():
        registry.experiments[paper] = load_experiment(paper, experiments_dir)
        module.build(registry, registry.experiments[paper], load_yaml(PAPER_VALUES_DIR / f"{paper}.yaml"))
    from kdrepro.report.claims import claims_target

    registry.targets["claims"] = claims_target(registry)
    check_graph(registry.runs)
    return registry
