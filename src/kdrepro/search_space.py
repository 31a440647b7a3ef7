"""What a graph search searches and what it leaves: the graphs of its space (KTG's knowledge-transfer graphs),
a study's definition as a paper registers it, and the best graph a finished search exported. Plain data,
read by the registry and the Snakefile without the engine; kdrepro.search runs the studies.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from kdrepro.graph import RunSpec

GATES = ("through", "cutoff", "correct", "linear")
LABEL_NODE = 0
STORAGE = "journal.log"


class SearchError(RuntimeError):
    """A search cannot go on (a storage of another configuration that cannot be set aside, say)."""


# -- graphs ----------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Graph:
    """M nodes (node 1 = the target) and a gate on every edge "s->t" (s = 0 is the label node)."""

    models: tuple[str, ...]
    gates: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        expected = set(edge_names(len(self.models)))
        if set(self.gates) != expected:
            raise ValueError(f"graph of {len(self.models)} nodes needs gates on {sorted(expected)}, got {sorted(self.gates)}")
        bad = [g for g in self.gates.values() if g not in GATES]
        if bad:
            raise ValueError(f"unknown gate {bad[0]!r}; gates: {', '.join(GATES)}")

    @property
    def size(self) -> int:
        return len(self.models)

    def gate(self, source: int, target: int) -> str:
        return self.gates[f"{source}->{target}"]

    def frozen(self, node: int) -> bool:
        """Every incoming edge cut off: the node is a pre-trained network that only teaches."""
        return all(self.gate(s, node) == "cutoff" for s in range(self.size + 1) if s != node)

    @classmethod
    def all_through(cls, models: list[str] | tuple[str, ...]) -> "Graph":
        return cls(tuple(models), {e: "through" for e in edge_names(len(models))})

    def to_dict(self) -> dict[str, Any]:
        return {"models": list(self.models), "gates": dict(sorted(self.gates.items()))}

    @property
    def identity(self) -> str:
        """A short name of the graph's content: runs that retrain a searched graph carry it, so a search
        that chooses another graph names other runs instead of replacing finished ones."""
        return hashlib.sha256(json.dumps(self.to_dict(), sort_keys=True).encode()).hexdigest()[:8]

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> "Graph":
        return cls(tuple(raw["models"]), dict(raw["gates"]))


def edge_names(size: int) -> list[str]:
    return [f"{s}->{t}" for t in range(1, size + 1) for s in range(size + 1) if s != t]


# -- the search definition -------------------------------------------------------------------------

@dataclass
class SearchDef:
    """One study: what a paper module hands to the search (kdrepro.papers.ktg builds these)."""

    name: str
    directory: Path
    node_count: int
    target_model: str
    aux_models: tuple[str, ...]
    trials: int  # T
    workers: int  # D
    seed: int
    objective: str  # "validation" or "test"
    make_spec: Callable[[Graph, int, str], RunSpec]  # (graph, seed, run name) -> the trial's run spec
    eval_node: str = "node1"

    @property
    def storage_path(self) -> Path:
        return self.directory / STORAGE

    @property
    def best_path(self) -> Path:
        return self.directory / "best.json"

    @property
    def trials_csv(self) -> Path:
        return self.directory / "trials.csv"

    def done_flag(self, worker: int) -> Path:
        return self.directory / f"worker{worker}.done"

    def trial_dir(self, origin: int) -> Path:
        return self.directory / "trials" / f"trial{origin:04d}"

    def trial_seed(self, origin: int) -> int:
        return self.seed * 100_000 + origin

    @property
    def objective_key(self) -> str:
        if self.objective not in ("validation", "test"):
            raise SearchError(f"search {self.name}: objective must be 'validation' or 'test', got {self.objective!r}")
        return f"{'val' if self.objective == 'validation' else 'test'}_acc[{self.eval_node}]"

    @property
    def config_hash(self) -> str:
        """Everything that decides the trials' results: the space, the budget and the training recipe
        (the spec of a probe graph stands for the recipe). Not the number of workers."""
        probe = self.make_spec(Graph.all_through([self.target_model] * self.node_count), 0, f"{self.name}/probe")
        identity = {"name": self.name, "nodes": self.node_count, "target": self.target_model, "aux": list(self.aux_models),
                    "trials": self.trials, "seed": self.seed, "objective": self.objective, "recipe": probe.config_hash}
        return hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()[:16]


def load_best(path: Path) -> Graph | None:
    if not path.exists():
        return None
    return Graph.from_dict(json.loads(path.read_text())["graph"])
