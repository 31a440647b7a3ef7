"""What a search searches and what it leaves, as plain data read by the registry and the Snakefile without the
engine or Optuna: KTG's graphs and TAKD's KD hyper-parameters, the spaces they are drawn from (which sampler
and pruner kdrepro.search gives a study, by name), a study's definition as a paper registers it, and the
choice a finished search exported. kdrepro.search runs the studies.
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


# -- the spaces ------------------------------------------------------------------------------------

@dataclass(frozen=True)
class GraphSpace:
    """KTG's graphs of `nodes` nodes: node 1 is `target`, the others are drawn from `aux`."""

    nodes: int
    target: str
    aux: tuple[str, ...]

    key = "graph"  # the choice's entry in best.json and in a trial's user attributes
    objective_epoch = "last"

    def identity(self) -> dict[str, Any]:
        return {"nodes": self.nodes, "target": self.target, "aux": list(self.aux)}

    def describe(self) -> str:
        return f"{self.nodes}-node graphs"

    def probe(self) -> Graph:
        return Graph.all_through([self.target] * self.nodes)

    def sample(self, trial) -> Graph:
        models = [self.target] + [trial.suggest_categorical(f"model_{i}", list(self.aux)) for i in range(2, self.nodes + 1)]
        gates = {e: trial.suggest_categorical(f"gate_{e}", list(GATES)) for e in edge_names(self.nodes)}
        return Graph(tuple(models), gates)

    def rejection(self, graph: Graph) -> str | None:
        if graph.frozen(1):
            return "every edge into node 1 is cut off (it would be a frozen pre-trained node)"
        return None

    @staticmethod
    def decode(raw: dict[str, Any]) -> Graph:
        return Graph.from_dict(raw)

    sampler = "trial_seeded_random"  # how kdrepro.search's study draws (SAMPLERS) and stops (PRUNERS) trials
    pruner = "asha"


@dataclass(frozen=True)
class Hyper:
    """The two hyper-parameters of a KD edge: temperature tau and the weight lambda of the KD term."""

    temperature: float
    weight: float

    @property
    def tag(self) -> str:
        """Its part of a run name: runs trained with searched values are named after them."""
        return f"tau{self.temperature:g}_lam{self.weight:g}"

    def to_dict(self) -> dict[str, float]:
        return {"temperature": self.temperature, "lambda": self.weight}

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> "Hyper":
        return cls(float(raw["temperature"]), float(raw["lambda"]))


@dataclass(frozen=True)
class HyperSpace:
    """tau from `temperatures`, lambda from [low, high] on a grid of `step` (None: continuous)."""

    temperatures: tuple[float, ...]
    weight_range: tuple[float, float]
    step: float | None

    key = "hyper"
    objective_epoch = "best"

    def identity(self) -> dict[str, Any]:
        return {"tau": list(self.temperatures), "lambda": list(self.weight_range), "lambda_step": self.step, "sampler": "tpe"}

    def describe(self) -> str:
        low, high = self.weight_range
        return f"tau in {{{', '.join(f'{t:g}' for t in self.temperatures)}}}, lambda in [{low:g}, {high:g}]"

    def probe(self) -> Hyper:
        return Hyper(self.temperatures[0], self.weight_range[0])

    def sample(self, trial) -> Hyper:
        low, high = self.weight_range
        weight = trial.suggest_float("lambda", low, high, step=self.step)
        # a grid value as written (0.15, not 0.15000000000000002): it names the runs trained with it
        return Hyper(float(trial.suggest_categorical("tau", list(self.temperatures))), round(weight, 6))

    def rejection(self, hyper: Hyper) -> str | None:
        return None

    @staticmethod
    def decode(raw: dict[str, Any]) -> Hyper:
        return Hyper.from_dict(raw)

    sampler = "tpe"
    pruner = "none"


# -- the search definition -------------------------------------------------------------------------

@dataclass
class SearchDef:
    """One study: what a paper module hands to the search (kdrepro.papers.ktg and .takd build these)."""

    name: str
    directory: Path
    space: GraphSpace | HyperSpace
    trials: int  # T
    workers: int  # D
    seed: int
    objective: str  # "validation" or "test"
    make_spec: Callable[[Any, int, str], RunSpec]  # (choice, seed, run name) -> the trial's run spec
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

    def probe_spec(self) -> RunSpec:
        """The spec of a trial of the space's probe choice: it stands for the training recipe."""
        return self.make_spec(self.space.probe(), 0, f"{self.name}/probe")

    @property
    def config_hash(self) -> str:
        """Everything that decides the trials' results: the space, the budget and the training recipe
        (the probe's spec stands for the recipe). Not the number of workers."""
        identity = {"name": self.name, **self.space.identity(), "trials": self.trials, "seed": self.seed,
                    "objective": self.objective, "recipe": self.probe_spec().config_hash}
        return hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()[:16]


def load_best(path: Path, space: type[GraphSpace] | type[HyperSpace]) -> Any:
    """The choice a finished search exported (a Graph, a Hyper), or None before it has."""
    if not path.exists():
        return None
    return space.decode(json.loads(path.read_text())[space.key])
