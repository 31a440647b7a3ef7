"""KTG (Minami et al., ACCV 2020): collaborative training on gated knowledge-transfer graphs, DML, KD and
the ASHA graph search (kdrepro.search).

Run templates (config/experiments/ktg.yaml): "single:A", "dml:A,B", "kd:T>S", "fixed:N", "optimised:N",
"ours". The optimised graphs are only known once their search has finished: their runs are registered
when results/<setting>/search/<study>/best.json exists (the workflow's `search_best` checkpoint writes
it, and Snakemake re-evaluates the tables' inputs then; see workflow/rules/search.smk).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from kdrepro.experiments import Registry, Results, Stat, check_substitutions, paper_seeds, substitution_note
from kdrepro.graph import LABELS, Data, Edge, Node, Optimizer, RunSpec, Schedule, SpecError
from kdrepro.models import model_info
from kdrepro.report.claims import Claim, compare, verdict
from kdrepro.report.figures import figure_kind, figure_target
from kdrepro.report.tables import table_target
from kdrepro.search import Graph, SearchDef, load_best

PAPER = "ktg"
# Fig. 2's colours: purple Through, green Linear, orange Correct; Cutoff edges are not drawn
GATE_COLOURS = {"through": "tab:purple", "linear": "tab:green", "correct": "tab:orange"}


class KTG:
    """Turns templates and graphs into run specs for one setting and registers them."""

    def __init__(self, registry: Registry, experiment: dict[str, Any]):
        self.registry, self.experiment = registry, experiment
        self.config = registry.config
        self.settings = self.config["ktg"]
        self.protocol = experiment["protocols"][self.config["protocol"]]
        self.seeds = paper_seeds(self.config, PAPER)
        check_substitutions(PAPER, self.settings["substitute"])
        self.objective = self.settings.get("objective") or self.protocol["objective"]
        self.epochs = self.settings["epochs"]
        self.search_epochs = self.settings.get("search_epochs") or self.epochs
        self.pretrain_epochs = self.settings.get("pretrain_epochs") or self.epochs
        self.sequential = self.settings["search_mode"] == "sequential"
        if self.sequential and self.settings["workers"] != 1:
            raise SpecError(f"ktg.workers: a sequential search runs on one worker, got {self.settings['workers']} "
                            "(set ktg.workers: 1, or ktg.search_mode: asynchronous for the paper's D workers)")

    # -- architectures ---------------------------------------------------------------------------
    def trained(self, arch: str) -> str:
        return self.settings["substitute"].get(arch, arch)

    def options(self, arch: str) -> dict[str, Any]:
        family = model_info(arch)["family"]
        base = {"shortcut": "zeropad"} if family == "resnet" else {}  # option A, as the official code
        return base | dict(self.settings["model_options"].get(family, {}))

    # -- specs -----------------------------------------------------------------------------------
    def data(self, dataset: str) -> Data:
        d, training = self.config["data"], self.experiment["training"]
        augmentation = training["augmentation"] if self.settings["augment"] else {}
        return Data(dataset=dataset, root=d["roots"].get(dataset), download=d["download"],
                    train_subset=self.settings.get("train_subset") or d["train_subset"], test_subset=d["test_subset"],
                    validation=self.settings["validation"] if self.objective == "validation" else 0,
                    normalization=training["normalization"], pad_to=d["pad_to"], **augmentation)

    def spec(self, name: str, dataset: str, seed: int, nodes: list[Node], edges: list[Edge], epochs: int, batch: int) -> RunSpec:
        training = self.experiment["training"]
        return RunSpec(name=name, data=self.data(dataset), nodes=tuple(nodes), edges=tuple(edges), epochs=epochs, seed=seed,
                       batch_size=batch, optimizer=Optimizer(**training["optimizer"]),
                       schedule=Schedule(**{**training["schedule"], "milestones": tuple(training["schedule"]["milestones"])}),
                       eval_node="node1")

    def single(self, arch: str, dataset: str, seed: int, pretrain: bool = False) -> str:
        """A network trained alone (1-node graph); `pretrain` = the pre-training recipe of frozen nodes
        (the same run when the setting gives both recipes the same batch and epochs)."""
        batch, epochs = self.settings["batch_size"], self.epochs
        kind = "single"
        if pretrain and (self.settings["pretrain_batch_size"], self.pretrain_epochs) != (batch, epochs):
            batch, epochs, kind = self.settings["pretrain_batch_size"], self.pretrain_epochs, "pretrain"
        a = self.trained(arch)
        name = f"ktg/{dataset}/{kind}/{a}/s{seed}"
        spec = self.spec(name, dataset, seed, [Node("node1", a, self.options(a))], [Edge(LABELS, "node1", "ce")], epochs, batch)
        self.registry.add_runs({name: spec})
        return name

    def graph_spec(self, name: str, dataset: str, graph: Graph, seed: int, epochs: int | None = None,
                   pretrain_seed: int | None = None, temperature: float | None = None) -> RunSpec:
        """A graph's run: all-cutoff nodes are frozen and load their pre-trained run (registered here)."""
        temperature = self.experiment["edge_temperature"] if temperature is None else temperature
        nodes, edges = [], []
        for i, arch in enumerate(graph.models, 1):
            a = self.trained(arch)
            frozen = self.single(arch, dataset, seed if pretrain_seed is None else pretrain_seed, pretrain=True) if graph.frozen(i) else None
            nodes.append(Node(f"node{i}", a, self.options(a), frozen_from=frozen))
        for t in range(1, graph.size + 1):
            if graph.frozen(t):
                continue
            for s in range(graph.size + 1):
                gate = graph.gate(s, t) if s != t else "cutoff"
                if gate == "cutoff":
                    continue
                if s == 0:
                    edges.append(Edge(LABELS, f"node{t}", "ce", gate=gate))
                else:
                    edges.append(Edge(f"node{s}", f"node{t}", "kd", gate=gate,
                                      options={"temperature": float(temperature), "class_reduction": "sum"}))
        return self.spec(name, dataset, seed, nodes, edges, epochs or self.epochs, self.settings["batch_size"])

    def add(self, spec: RunSpec) -> str:
        self.registry.add_runs({spec.name: spec})
        return spec.name

    def dml(self, archs: list[str], dataset: str, seed: int) -> str:
        graph = Graph.all_through(archs)
        return self.add(self.graph_spec(f"ktg/{dataset}/dml/{'-'.join(self.trained(a) for a in archs)}/s{seed}", dataset, graph, seed))

    def kd(self, teacher: str, student: str, dataset: str, seed: int) -> str:
        gates = {"0->1": "through", "2->1": "through", "0->2": "cutoff", "1->2": "cutoff"}
        name = f"ktg/{dataset}/kd/{self.trained(teacher)}-{self.trained(student)}/s{seed}"
        return self.add(self.graph_spec(name, dataset, Graph((student, teacher), gates), seed,
                                        temperature=self.experiment["kd_temperature"]))

    # -- searches --------------------------------------------------------------------------------
    def study(self, dataset: str, nodes: int) -> str:
        return f"ktg_{dataset}_n{nodes}"

    def search_dir(self, study: str) -> Path:
        return self.registry.results_dir / "search" / study

    def searches(self) -> dict[str, SearchDef]:
        out = {}
        for dataset in self.config["datasets"]:
            for n in self.settings["node_counts"]:
                name = self.study(dataset, n)

                def make_spec(graph: Graph, seed: int, run: str, dataset=dataset) -> RunSpec:
                    return self.graph_spec(run, dataset, graph, seed, self.search_epochs, pretrain_seed=self.seeds[0])

                out[name] = SearchDef(name=name, directory=self.search_dir(name), node_count=n,
                                      target_model=self.experiment["target"], aux_models=tuple(self.experiment["candidates"]),
                                      trials=self.settings["trials"], workers=1 if self.sequential else self.settings["workers"],
                                      seed=self.settings["search_seed"], objective=self.objective, make_spec=make_spec)
        return out

    def search_dependencies(self, search: SearchDef) -> list[str]:
        """The pre-trained runs a trial may freeze (every candidate model)."""
        dataset = search.name[len("ktg_"):].rsplit("_n", 1)[0]
        return sorted({self.single(a, dataset, self.seeds[0], pretrain=True) for a in search.aux_models})

    def best(self, dataset: str, nodes: int) -> Graph | None:
        return load_best(self.search_dir(self.study(dataset, nodes)) / "best.json")

    def best_info(self, dataset: str, nodes: int) -> dict[str, Any] | None:
        path = self.search_dir(self.study(dataset, nodes)) / "best.json"
        return json.loads(path.read_text()) if path.exists() else None

    def compare_nodes(self) -> int:
        counts = self.settings["node_counts"]
        wanted = self.experiment["compare_nodes"]
        return wanted if wanted in counts else max(counts)

    # -- templates -------------------------------------------------------------------------------
    def runs(self, template: str, dataset: str) -> list[str]:
        """The runs (one per seed) behind a template; [] for a graph whose search has not finished."""
        method, _, arg = template.partition(":")
        if method == "ours":
            method, arg = "optimised", str(self.compare_nodes())
        names = []
        for seed in self.seeds:
            if method == "single":
                names.append(self.single(arg, dataset, seed))
            elif method == "dml":
                names.append(self.dml(arg.split(","), dataset, seed))
            elif method == "kd":
                teacher, student = arg.split(">")
                names.append(self.kd(teacher, student, dataset, seed))
            elif method in ("fixed", "optimised"):
                nodes = int(arg)
                graph = self.best(dataset, nodes) if nodes in self.settings["node_counts"] else None
                if graph is None:
                    return []
                if method == "fixed":
                    name = self.dml(list(graph.models), dataset, seed)
                else:
                    name = self.add(self.graph_spec(f"ktg/{dataset}/optimised/n{nodes}/{graph.identity}/s{seed}", dataset, graph, seed))
                self.registry.searched.add(name)
                names.append(name)
            else:
                raise SpecError(f"ktg: bad run template {template!r} (single:A, dml:A,B, kd:T>S, fixed:N, optimised:N, ours)")
        return names

    def retrain_runs(self, study: str) -> list[str]:
        """Every run built from a finished search's best graph (optimised and fixed, every seed)."""
        search = self.searches()[study]
        dataset = study[len("ktg_"):].rsplit("_n", 1)[0]
        return self.runs(f"optimised:{search.node_count}", dataset) + self.runs(f"fixed:{search.node_count}", dataset)

    def note(self) -> str:
        text = substitution_note(self.settings["substitute"])
        mode = ("sequential ASHA (one worker, trials in order: the same best graph on every rerun with the same kernels)"
                if self.sequential else
                f"asynchronous ASHA on D = {self.settings['workers']} workers (the paper's; the best graph can depend on the workers' timing)")
        text += (" " if text else "") + (f"Graphs train {self.epochs} epochs (paper 200), searches T = {self.settings['trials']} trials of up to "
                 f"{self.search_epochs} epochs by {mode} (paper T = 1500, D = 30), objective: node 1's {self.objective} accuracy.")
        return text


def build(registry: Registry, experiment: dict[str, Any], paper_values: dict[str, Any]) -> None:
    ktg = KTG(registry, experiment)
    context = {"paper": PAPER, "paper_title": experiment["paper"], "report": experiment["report"]}
    counts = [1] + list(ktg.settings["node_counts"])
    for name, table in experiment["tables"].items():
        rows = [r for r in table["rows"] if r.get("nodes", 0) in counts or "nodes" not in r]
        table = {**table, "rows": rows, "caption": f"{table.get('caption', '')} {ktg.note()}".strip()}
        registry.targets[name] = table_target(registry, name, table, paper_values, ktg.runs, context)
    for name, figure in experiment["figures"].items():
        panels = [{"label": f"{n} nodes", "nodes": n} for n in ktg.settings["node_counts"]]
        registry.targets[name] = figure_target(registry, name, {**figure, "panels": panels}, ktg.runs, context)
    for search in ktg.searches().values():  # the pre-trained nodes every search may freeze
        ktg.search_dependencies(search)


# -- what the workflow asks (workflow/rules/search.smk) ---------------------------------------------

def searches(registry: Registry) -> dict[str, SearchDef]:
    return KTG(registry, registry.experiments[PAPER]).searches()


def search_dependencies(registry: Registry, study: str) -> list[str]:
    ktg = KTG(registry, registry.experiments[PAPER])
    return ktg.search_dependencies(ktg.searches()[study])


def deferred_studies(registry: Registry, target: str) -> list[str]:
    """The searches whose best graphs a target reads (their retraining runs exist only afterwards)."""
    ktg = KTG(registry, registry.experiments[PAPER])
    if target in registry.experiments[PAPER]["tables"] or target in registry.experiments[PAPER]["figures"] or target == "claims":
        return sorted(ktg.searches())
    return []


def deferred_runs(registry: Registry, study: str) -> list[str]:
    """The retraining runs of a finished search, registered in `registry`."""
    return KTG(registry, registry.experiments[PAPER]).retrain_runs(study)


# -- figures ---------------------------------------------------------------------------------------

def _node_accuracy(stat, runs: list[str]) -> dict[str, Stat]:
    per_node: dict[str, list[float]] = {}
    for run in runs:
        metrics = stat.results.metrics(run)
        for node, acc in (metrics or {}).get("node_test_acc", {}).items():
            per_node.setdefault(node, []).append(acc)
    return {node: Stat(values) for node, values in per_node.items()}


@figure_kind("ktg_graph", lambda p: [f"optimised:{p['nodes']}"])
def graph_drawing(ax, panel, stat) -> list[dict[str, Any]]:
    """One optimised graph: the label node and nodes 1..M on a circle, node 1 red, pre-trained nodes
    blue, each edge coloured by its gate (cutoff not drawn), each node's model and test accuracy."""
    import math

    from matplotlib.patches import FancyArrowPatch

    registry = stat.results.registry
    ktg = KTG(registry, registry.experiments[PAPER])
    n = panel["nodes"]
    graph = ktg.best(stat.dataset, n)
    ax.set_axis_off()
    if graph is None:
        ax.text(0.5, 0.5, "search not finished", ha="center", va="center", transform=ax.transAxes)
        return []
    runs = stat.resolve(f"optimised:{n}")
    accuracy = _node_accuracy(stat, runs)
    angles = {i: math.pi / 2 - 2 * math.pi * i / (n + 1) for i in range(n + 1)}
    pos = {i: (math.cos(a), math.sin(a)) for i, a in angles.items()}
    rows = []
    for (s, t), gate in ((tuple(map(int, e.split("->"))), g) for e, g in sorted(graph.gates.items())):
        rows.append({"source": "label" if s == 0 else f"node{s}", "target": f"node{t}", "gate": gate})
        if gate == "cutoff":
            continue
        ax.add_patch(FancyArrowPatch(pos[s], pos[t], connectionstyle="arc3,rad=0.18", arrowstyle="-|>", mutation_scale=14,
                                     color=GATE_COLOURS[gate], linewidth=1.8, shrinkA=26, shrinkB=26))
    for i in range(n + 1):
        x, y = pos[i]
        if i == 0:
            colour, text = "lightgrey", "Label"
        else:
            colour = "tab:red" if i == 1 else ("tab:blue" if graph.frozen(i) else "white")
            acc = accuracy.get(f"node{i}")
            text = f"{i}: {ktg.trained(graph.models[i - 1])}" + (f"\n{acc.text()}" if acc and acc.values else "")
            rows.append({"source": f"node{i}", "target": "", "gate": "", "model": graph.models[i - 1],
                         "trained": ktg.trained(graph.models[i - 1]), "pretrained": graph.frozen(i),
                         "test_acc_mean": acc.mean if acc else None, "n": acc.n if acc else 0})
        ax.scatter([x], [y], s=2300, color=colour, edgecolors="black", zorder=3)
        ax.annotate(text, (x, y), ha="center", va="center", fontsize=6, zorder=4,
                    color="white" if colour in ("tab:red", "tab:blue") else "black")
    for gate, colour in GATE_COLOURS.items():
        ax.plot([], [], color=colour, label=gate)
    ax.set_xlim(-1.45, 1.45)
    ax.set_ylim(-1.45, 1.45)
    ax.set_aspect("equal")
    info = ktg.best_info(stat.dataset, n) or {}
    ax.text(0.0, -0.02, f"best trial {info.get('best_trial')}: search objective {info.get('best_value', float('nan')):.2f}",
            transform=ax.transAxes, fontsize=7)
    return rows


@figure_kind("ktg_search", lambda p: [])
def search_curves(ax, panel, stat) -> list[dict[str, Any]]:
    """Every trial's objective at each epoch it reached; pruned trials end early (grey), finished ones
    are coloured, the best is marked."""
    import pandas as pd

    registry = stat.results.registry
    ktg = KTG(registry, registry.experiments[PAPER])
    study = ktg.study(stat.dataset, panel["nodes"])
    path = ktg.search_dir(study) / "trials.csv"
    if not path.exists():
        ax.text(0.5, 0.5, "search not finished", ha="center", va="center", transform=ax.transAxes)
        return []
    frame = pd.read_csv(path)
    info = ktg.best_info(stat.dataset, panel["nodes"]) or {}
    for trial, group in frame[frame.epoch > 0].groupby("trial"):
        state = group.state.iloc[0]
        best = trial == info.get("best_trial")
        style = {"color": "black", "linewidth": 2.2, "zorder": 3} if best else (
            {"color": "tab:blue", "alpha": 0.8} if state == "complete" else {"color": "grey", "alpha": 0.5, "linestyle": "--"})
        ax.plot(group.epoch, group.objective, marker="o", markersize=3, **style)
    ax.plot([], [], color="tab:blue", label="finished")
    ax.plot([], [], color="grey", linestyle="--", label="pruned")
    ax.plot([], [], color="black", linewidth=2.2, label="best")
    counts = frame.drop_duplicates("trial").state.value_counts().to_dict()
    ax.set_xscale("log", base=2)
    ax.set_xlabel("epoch (ASHA rungs at 1, 2, 4, ...)")
    ax.set_ylabel(f"node 1 {ktg.objective} accuracy (%)")
    ax.text(0.02, 0.02, ", ".join(f"{k}: {v}" for k, v in sorted(counts.items())), transform=ax.transAxes, fontsize=7)
    return [{"trial": int(r.trial), "state": r.state, "epoch": int(r.epoch), "objective": r.objective} for r in frame.itertuples()]


# -- claims ----------------------------------------------------------------------------------------

def claims(results: Results) -> list[Claim]:
    registry = results.registry
    ktg = KTG(registry, registry.experiments[PAPER])
    out: list[Claim] = []
    for dataset in registry.config["datasets"]:
        stat = lambda template: results.stat(ktg.runs(template, dataset))  # noqa: E731
        for n in ktg.settings["node_counts"]:
            out.append(compare(f"the optimised {n}-node graph beats the all-through graph of the same networks ({dataset})",
                               stat(f"optimised:{n}"), stat(f"fixed:{n}")))
        series = [("1", stat("single:" + ktg.experiment["target"]))] + [(str(n), stat(f"optimised:{n}")) for n in ktg.settings["node_counts"]]
        first, last = series[0][1], series[-1][1]
        increasing = all(b.mean > a.mean for (_, a), (_, b) in zip(series, series[1:]))
        out.append(Claim(f"more nodes help node 1 (optimised graphs, {dataset})",
                         verdict(increasing, last, first) if increasing else verdict(False, last, first),
                         "node 1 by node count: " + ", ".join(f"{k}: {s.text()}" for k, s in series)))
        ours = stat("ours")
        out.append(compare(f"the optimised graph beats KD ({dataset})", ours, stat("kd:resnet110>resnet32")))
        dml = [stat("dml:resnet32,resnet110"), stat("dml:resnet32,resnet32,resnet110")]
        best_dml = max(dml, key=lambda s: s.mean if s.values else float("-inf"))
        out.append(compare(f"the optimised graph beats DML (the better of its two node sets, {dataset})", ours, best_dml))
    return out
