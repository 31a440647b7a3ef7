"""Run specifications: every run is a knowledge-transfer graph.

Nodes are networks (trained, or frozen and loaded from another run's checkpoint or from a file trained
elsewhere); edges carry a loss from a source node (or the label node) to a target node, weighted by a
gate. A run whose nodes are all frozen trains nothing: it measures its eval_node (an external teacher's
accuracy). A run spec is plain data: it round-trips through JSON and its hash names its configuration.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import re
import types
import typing
from dataclasses import asdict, dataclass, field
from typing import Any

# a spec is checked against the facts of the registries (datasets, samplers, models, losses), none of
# which loads torch: a spec stays plain data that reads and writes JSON without it
from kdrepro.catalog import ModelError, check_edge_options, check_model_options, edge_facts
from kdrepro.data import split_problems
from kdrepro.data.folders import data_meta
from kdrepro.data.sampling import SamplerError, make_plan
from kdrepro.typecheck import expected, fits

LABELS = "labels"  # the virtual source node that holds the ground truth
SHA256 = re.compile(r"[0-9a-f]{64}")  # an external teacher's file, by the sha256 of its bytes


class SpecError(ValueError):
    """A run spec is inconsistent; the message names the run and the offending key."""


@dataclass(frozen=True)
class Node:
    name: str
    arch: str
    options: dict[str, Any] = field(default_factory=dict)
    frozen_from: str | None = None  # run whose checkpoint this frozen node loads
    frozen_epoch: int | None = None  # load that run's snapshot of this epoch instead of its final weights
    init_from: str | None = None  # run whose checkpoint initialises this trainable node
    # With init_from: only the parameters (and buffers) under these module paths are taken from that
    # checkpoint, the rest keep this run's fresh initialisation (FitNets: the layers up to the guided
    # one, Algorithm 1 line 5); None = the whole network. Their learning rate is multiplied by
    # init_lr_scale (the official FitNets code's -lrs). Left out of to_dict/the hash at the defaults.
    init_layers: tuple[str, ...] | None = None
    init_lr_scale: float = 1.0
    # An external teacher (kdrepro.teachers): a frozen node that loads a file trained elsewhere instead of a run's
    # checkpoint, named by the sha256 of the file's bytes, which is in the config hash; weights_file, the path, is
    # not (a moved or linked copy is the same teacher): absent, the job finds the file of that content among the
    # setting's teachers. Both left out of to_dict/the hash while None.
    weights_sha256: str | None = None
    weights_file: str | None = None

    @property
    def trainable(self) -> bool:
        return self.frozen_from is None and self.weights_sha256 is None


@dataclass(frozen=True)
class Edge:
    source: str
    target: str
    loss: str
    weight: float = 1.0
    gate: str = "through"
    options: dict[str, Any] = field(default_factory=dict)
    gate_options: dict[str, Any] = field(default_factory=dict)  # the gate's own options (linear_decay's start, end)

    @property
    def label(self) -> str:
        return f"{self.loss}:{self.source}->{self.target}"


@dataclass(frozen=True)
class Optimizer:
    lr: float = 0.1
    momentum: float = 0.9
    nesterov: bool = False
    weight_decay: float = 0.0
    kind: str = "sgd"  # sgd | rmsprop (torch.optim.RMSprop's rule: alpha = the decay of the mean square, eps)
    alpha: float = 0.99
    eps: float = 1e-8


OPTIMIZERS = ("sgd", "rmsprop")
# Fields added after specs were first hashed: left out of to_dict (so of to_json and the config hash)
# while they hold their defaults, so that every spec written before them keeps its hash.
LATER_DEFAULTS = {
    "nodes": {"init_layers": None, "init_lr_scale": 1.0, "weights_sha256": None, "weights_file": None},
    "edges": {"gate_options": {}},
    "optimizer": {"kind": "sgd", "alpha": 0.99, "eps": 1e-8},
    "schedule": {"final_momentum": None, "momentum_epochs": ()},
    "data": {"channels": None, "fingerprint": None},
}

# RunSpec's own keys added later, left out of the config hash while at these defaults
TOP_LATER_DEFAULTS = {"sampler": None, "test_every": 1}


@dataclass(frozen=True)
class Schedule:
    kind: str = "constant"  # constant | step | multistep | linear
    milestones: tuple[int, ...] = ()  # multistep: epochs of the reference schedule; linear: (start, saturate)
    step_size: int = 0  # step: every step_size epochs of the reference schedule
    gamma: float = 0.1  # step, multistep: the factor per milestone; linear: the final factor (pylearn2's decay_factor)
    reference_epochs: int | None = None  # milestones are given for this many epochs and scale to the run's
    warmup_epochs: int = 0  # the rate rises linearly per step over these reference epochs first (Tf-KD's WarmUpLR)
    # SGD's momentum ramps linearly from the optimizer's to final_momentum over momentum_epochs = (start,
    # saturate) of the reference schedule (pylearn2's MomentumAdjustor); None: constant
    final_momentum: float | None = None
    momentum_epochs: tuple[int, ...] = ()

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> "Schedule":
        """From JSON or YAML, where the epoch tuples are lists."""
        return cls(**{**raw, "milestones": tuple(raw.get("milestones", ())), "momentum_epochs": tuple(raw.get("momentum_epochs", ()))})


SCHEDULES = ("constant", "step", "multistep", "linear")


@dataclass(frozen=True)
class Data:
    dataset: str
    root: str | None = None
    download: bool = False
    train_subset: int | None = None
    test_subset: int | None = None
    validation: int = 0
    normalization: str = "dataset"
    pad_to: int | None = None
    crop_padding: int = 0
    flip: bool = False
    rotation: float = 0.0  # random rotation within +-rotation degrees (Tf-KD's RandomRotation)
    # An image folder of the setting (kdrepro.data.folders): its content's fingerprint, which names the data in
    # the config hash in place of a root (the job finds the root in the environment), and the channels it is
    # read as (None: as the images are). Both None for the other datasets, and then left out of to_dict.
    channels: int | None = None
    fingerprint: str | None = None


@dataclass(frozen=True)
class RunSpec:
    name: str
    data: Data
    nodes: tuple[Node, ...]
    edges: tuple[Edge, ...]
    epochs: int
    seed: int
    batch_size: int = 128
    optimizer: Optimizer = Optimizer()
    schedule: Schedule = Schedule()
    eval_node: str = "student"  # the node whose accuracy the run reports and whose weights later runs load
    save_epochs: tuple[int, ...] = ()  # extra snapshots (defective teachers are early snapshots; 0 = the initialisation)
    # batch sampler, {"name": "cur", "samples_per_class": 16} (kdrepro.data.samplers); None = random
    # order. Left out of the config hash while None, so specs written before it keep their hash.
    sampler: dict[str, Any] | None = None
    # the test split is evaluated after every test_every-th epoch, after the last and after those with a snapshot
    # (on a large test split and a small network, evaluating it is a good part of an epoch); 1 = after each
    test_every: int = 1

    def __post_init__(self) -> None:
        self.validate()

    # -- structure ---------------------------------------------------------------------------
    def node(self, name: str) -> Node:
        for node in self.nodes:
            if node.name == name:
                return node
        raise SpecError(f"run {self.name}: no node named {name!r}")

    @property
    def evaluation(self) -> bool:
        """Every node frozen: the run trains nothing and measures its eval_node (an external teacher's accuracy)."""
        return not any(n.trainable for n in self.nodes)

    @property
    def dependencies(self) -> list[str]:
        """Runs whose checkpoints this run reads (frozen nodes and initialisations)."""
        runs = [n.frozen_from or n.init_from for n in self.nodes]
        return sorted({r for r in runs if r})

    def validate(self) -> None:

        where = f"run {self.name}"
        if self.epochs < 0 or (self.epochs == 0 and not self.evaluation):
            raise SpecError(f"{where}: epochs must be at least 1, got {self.epochs} (0 only for a run whose nodes are all frozen)")
        if self.batch_size < 1:
            raise SpecError(f"{where}: batch_size must be at least 1, got {self.batch_size}")
        if self.test_every < 1:
            raise SpecError(f"{where}: test_every must be at least 1, got {self.test_every}")
        if self.test_every > 1 and self.data.validation:
            raise SpecError(f"{where}: test_every {self.test_every} with a validation split: the test accuracy at the "
                            "epoch of best validation accuracy needs the test split after every epoch (test_every 1)")
        d = self.data
        meta = data_meta(d)  # an image folder's: where this process knows its root (the job's environment)
        if meta is not None:
            for key, problem in split_problems(meta, train_subset=d.train_subset, test_subset=d.test_subset,
                                               validation=d.validation, pad_to=d.pad_to).items():
                raise SpecError(f"{where}: data.{key}: {problem}")
        names = [n.name for n in self.nodes]
        if len(set(names)) != len(names) or LABELS in names:
            raise SpecError(f"{where}: node names must be unique and not {LABELS!r}: {names}")
        if self.eval_node not in names:
            raise SpecError(f"{where}: eval_node {self.eval_node!r} is not a node ({names})")
        for node in self.nodes:
            try:
                check_model_options(node.arch, node.options)
            except ModelError as err:
                raise SpecError(f"{where}: node {node.name!r}: {err}") from None
        if self.evaluation and (self.edges or self.epochs or self.save_epochs or self.sampler is not None):
            raise SpecError(f"{where}: no trainable node (a run whose nodes are all frozen only evaluates its eval_node: "
                            "no edges, epochs 0)")
        for edge in self.edges:
            for end in (edge.source, edge.target):
                if end not in names and end != LABELS:
                    raise SpecError(f"{where}: edge {edge.label} names unknown node {end!r}")
            if not self.node(edge.target).trainable:
                raise SpecError(f"{where}: edge {edge.label} targets frozen node {edge.target!r}")
            try:
                check_edge_options("loss", edge.loss, edge.options)
                check_edge_options("gate", edge.gate, edge.gate_options)
            except ValueError as err:
                raise SpecError(f"{where}: edge {edge.label}: {err}") from None
            info = edge_facts("loss", edge.loss)
            if info.batch and edge.gate != "through":
                raise SpecError(f"{where}: edge {edge.label}: {edge.loss!r} is a batch-level loss (one value for the "
                                f"whole batch), so no per-sample gate applies; its gate must be 'through', not {edge.gate!r}")
            if info.inputs != "logits" and edge.source == LABELS:
                raise SpecError(f"{where}: edge {edge.label}: {edge.loss!r} reads the nodes' {info.inputs}, "
                                f"which the label node does not have")
        if self.sampler is not None:
            try:
                sampler = make_plan(self.sampler)
                sampler.check(self.batch_size)
            except SamplerError as err:
                raise SpecError(f"{where}: sampler: {err}") from None
            node = sampler.needs_embeddings
            if node is not None and (node not in names or self.node(node).trainable):
                raise SpecError(f"{where}: sampler {self.sampler.get('name')!r} needs the embeddings of a frozen node, "
                                f"but {node!r} is not a frozen node of this run")
        for node in self.nodes:
            if (node.init_layers is not None or node.init_lr_scale != 1.0) and not node.init_from:
                raise SpecError(f"{where}: node {node.name!r}: init_layers and init_lr_scale need init_from")
            if node.weights_file is not None and node.weights_sha256 is None:
                raise SpecError(f"{where}: node {node.name!r}: weights_file needs weights_sha256, the sha256 of the file's "
                                "bytes (`kdrepro train --spec-json` fills it in from the file)")
            if node.weights_sha256 is None:
                continue
            if not SHA256.fullmatch(node.weights_sha256):
                raise SpecError(f"{where}: node {node.name!r}: weights_sha256 must be 64 lowercase hex digits, got "
                                f"{node.weights_sha256!r}")
            if node.frozen_from or node.frozen_epoch is not None or node.init_from:
                raise SpecError(f"{where}: node {node.name!r}: a node that loads an external file (weights_sha256) "
                                "takes no frozen_from, frozen_epoch or init_from")
        if self.optimizer.kind not in OPTIMIZERS:
            raise SpecError(f"{where}: optimizer.kind must be one of {OPTIMIZERS}, got {self.optimizer.kind!r}")
        if self.optimizer.kind == "rmsprop" and (self.optimizer.momentum or self.optimizer.nesterov):
            raise SpecError(f"{where}: optimizer rmsprop takes no momentum (set momentum 0, nesterov false)")
        schedule = self.schedule
        if schedule.kind not in SCHEDULES:
            raise SpecError(f"{where}: schedule.kind must be one of {SCHEDULES}, got {schedule.kind!r}")
        if schedule.kind == "linear" and not (len(schedule.milestones) == 2 and schedule.milestones[0] < schedule.milestones[1]):
            raise SpecError(f"{where}: schedule.milestones of a linear schedule must be (start, saturate), start < saturate; "
                            f"got {schedule.milestones}")
        if schedule.final_momentum is not None and (self.optimizer.kind != "sgd" or len(schedule.momentum_epochs) != 2
                                                    or schedule.momentum_epochs[0] > schedule.momentum_epochs[1]):
            raise SpecError(f"{where}: schedule.final_momentum needs optimizer.kind sgd and schedule.momentum_epochs "
                            f"(start, saturate), start <= saturate; got {self.optimizer.kind!r}, {schedule.momentum_epochs}")
        bad = [e for e in self.save_epochs if not 0 <= e <= self.epochs]
        if bad:
            raise SpecError(f"{where}: save_epochs {bad} outside 0..{self.epochs}")

    # -- serialisation -----------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        raw = asdict(self)
        for part, defaults in LATER_DEFAULTS.items():
            for item in raw[part] if isinstance(raw[part], (list, tuple)) else [raw[part]]:
                for key, default in defaults.items():
                    if item[key] == default:
                        del item[key]
        return raw

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> "RunSpec":
        """A spec from its dict form (JSON), every key and type checked against the dataclasses' fields:
        a misspelt or mistyped key is a SpecError naming it, before the spec is validated as a whole."""
        name = raw.get("name") if isinstance(raw, dict) else None
        return from_fields(cls, raw, f"run spec {name}" if isinstance(name, str) else "run spec", "")

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @property
    def config_hash(self) -> str:
        """Hash of everything that determines the result (the data root and download flag excluded; an image
        folder's content is in it, by its fingerprint; an external teacher's file by its sha256, not its path)."""
        identity = self.to_dict()
        identity["data"] = {k: v for k, v in identity["data"].items() if k not in ("root", "download")}
        for node in identity["nodes"]:  # an external file by its content (weights_sha256), not by where it is
            node.pop("weights_file", None)
        for key, default in TOP_LATER_DEFAULTS.items():  # at their defaults, hashes stay those of older specs
            if identity.get(key) == default:
                identity.pop(key, None)
        return hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()[:16]

    def tests_after(self, epoch: int) -> bool:
        """Is the test split evaluated after `epoch`?"""
        return epoch % self.test_every == 0 or epoch == self.epochs or epoch in self.save_epochs

    def scaled_milestones(self) -> list[int]:
        """Milestones in this run's epochs (the reference schedule stretched to `epochs`)."""
        ref = self.schedule.reference_epochs or self.epochs
        if self.schedule.kind == "step":
            marks = range(self.schedule.step_size, ref, self.schedule.step_size) if self.schedule.step_size else []
        else:
            marks = self.schedule.milestones
        return sorted({max(1, round(m * self.epochs / ref)) for m in marks})


def from_fields(cls: type, raw: Any, where: str, key: str) -> Any:
    """The dataclass `cls` built from the mapping `raw` found at `key`; lists become the tuples the
    annotations name, nested mappings the nested dataclasses."""
    if not isinstance(raw, dict):
        raise SpecError(f"{where}: {key or 'the spec'} must be a mapping, got {raw!r}")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(raw) - set(fields))
    if unknown:
        raise SpecError(f"{where}: unknown key {dotted(key, unknown[0])} (the keys of {key or 'a spec'}: {', '.join(fields)})")
    required = [n for n, f in fields.items() if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING]
    missing = [n for n in required if n not in raw]
    if missing:
        raise SpecError(f"{where}: key {dotted(key, missing[0])} is missing")
    hints = typing.get_type_hints(cls)
    return cls(**{name: field_value(value, hints[name], where, dotted(key, name)) for name, value in raw.items()})


def field_value(value: Any, hint: Any, where: str, key: str) -> Any:
    if dataclasses.is_dataclass(hint):
        return from_fields(hint, value, where, key)
    if not fits(value, hint):
        raise SpecError(f"{where}: key {key} must be {expected(hint)}, got {value!r}")
    tuples = [a for a in (typing.get_args(hint) if typing.get_origin(hint) in (typing.Union, types.UnionType) else (hint,))
              if typing.get_origin(a) is tuple]
    if not tuples or not isinstance(value, (list, tuple)):
        return value
    item = typing.get_args(tuples[0])[0]
    return tuple(field_value(v, item, where, f"{key}.{i}") for i, v in enumerate(value))


def dotted(key: str, name: str) -> str:
    return f"{key}.{name}" if key else name


def check_graph(specs: dict[str, RunSpec]) -> None:
    """Every dependency is a defined run and the dependency graph has no cycle."""
    for spec in specs.values():
        for dep in spec.dependencies:
            if dep not in specs:
                raise SpecError(f"run {spec.name}: depends on undefined run {dep!r}")
    state: dict[str, int] = {}

    def visit(name: str, path: list[str]) -> None:
        if state.get(name) == 2:
            return
        if state.get(name) == 1:
            raise SpecError("cycle between runs: " + " -> ".join(path + [name]))
        state[name] = 1
        for dep in specs[name].dependencies:
            visit(dep, path + [name])
        state[name] = 2

    for name in specs:
        visit(name, [])
