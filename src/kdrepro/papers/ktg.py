"""KTG (Minami et al., ACCV 2020): collaborative training on gated knowledge-transfer graphs, DML, KD and
the ASHA graph search (kdrepro.search).

Run templates (config/experiments/ktg.yaml): "single:A", "dml:A,B", "kd:T>S", "fixed:N", "optimised:N",
"ours". The optimised graphs are only known once their search has finished: each search is registered with
the runs its best graph adds, read from results/<setting>/search/<study>/best.json when asked (the
workflow's `search_best` checkpoint writes it, and Snakemake re-evaluates the tables' inputs then; see
workflow/rules/search.smk).
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pandas as pd

from kdrepro.experiments import Registry, Search, Target
from kdrepro.graph import LABELS, Data, Edge, Node, Optimizer, RunSpec, Schedule, SpecError
from kdrepro.catalog import model_info
from kdrepro.papers.base import Paper
from kdrepro.report.claims import Claim, compare, ranking
from kdrepro.report.figures import figure_kind
from kdrepro.report.results import Stat
from kdrepro.search_space import Graph, GraphSpace, SearchDef, load_best

# Fig. 2's colours: purple Through, green Linear, orange Correct; Cutoff edges are not drawn
GATE_COLOURS = {"through": "tab:purple", "linear": "tab:green", "correct": "tab:orange"}


class KTG(Paper):
    name = "ktg"

    def __init__(self, registry: Registry, experiment: dict[str, Any], paper_values: dict[str, Any]):
        super().__init__(registry, experiment, paper_values)
        self.heldout = self.settings["search_split"] == "heldout"
        self.objective = "validation" if self.heldout else "test"  # the split a search trial is judged on
        self.epochs = self.settings["epochs"]
        self.search_epochs = self.settings.get("search_epochs") or self.epochs
        self.pretrain_epochs = self.settings.get("pretrain_epochs") or self.epochs
        self.sequential = self.settings["search_mode"] == "sequential"
        if self.sequential and self.settings["workers"] != 1:
            raise SpecError(f"ktg.workers: a sequential search runs on one worker, got {self.settings['workers']} "
                            "(set ktg.workers: 1, or ktg.search_mode: asynchronous for the paper's D workers)")

    def options(self, arch: str) -> dict[str, Any]:
        base = {"shortcut": "zeropad"} if model_info(arch)["family"] == "resnet" else {}  # option A, as the official code
        return base | super().options(arch)

    # -- specs -----------------------------------------------------------------------------------
    def data(self, dataset: str, **overrides: Any) -> Data:
        """KTG's own training subset; under search_split: heldout less the search's validation images (every KTG
        run leaves them out, so that no pre-trained node has seen them)."""
        training = self.experiment["training"]
        own = {"train_subset": self.settings.get("train_subset") or self.config["data"]["train_subset"],
               "validation": self.settings["validation"] if self.heldout else 0,
               "normalization": training["normalization"], **self.augmentation(training)}
        return super().data(dataset, **(own | overrides))

    def spec(self, name: str, dataset: str, seed: int, nodes: list[Node], edges: list[Edge], epochs: int, batch: int) -> RunSpec:
        training = self.experiment["training"]
        return RunSpec(name=name, data=self.data(dataset), nodes=tuple(nodes), edges=tuple(edges), epochs=epochs, seed=seed,
                       batch_size=batch, optimizer=Optimizer(**training["optimizer"]),
                       schedule=Schedule(**{**training["schedule"], "milestones": tuple(training["schedule"]["milestones"])}),
                       eval_node="node1")

    def single(self, arch: str, dataset: str, seed: int, pretrain: bool = False) -> RunSpec:
        """A network trained alone (1-node graph); `pretrain` = the pre-training recipe of frozen nodes
        (the same run when the setting gives both recipes the same batch and epochs)."""
        batch, epochs = self.settings["batch_size"], self.epochs
        kind = "single"
        if pretrain and (self.settings["pretrain_batch_size"], self.pretrain_epochs) != (batch, epochs):
            batch, epochs, kind = self.settings["pretrain_batch_size"], self.pretrain_epochs, "pretrain"
        a = self.trained(arch)
        return self.spec(f"ktg/{dataset}/{kind}/{a}/s{seed}", dataset, seed, [Node("node1", a, self.options(a))],
                         [Edge(LABELS, "node1", "ce")], epochs, batch)

    def graph_specs(self, name: str, dataset: str, graph: Graph, seed: int, epochs: int | None = None,
                    pretrain_seed: int | None = None, temperature: float | None = None) -> dict[str, RunSpec]:
        """A graph's run, after the pre-trained runs its all-cutoff (frozen) nodes load."""
        temperature = self.hyper("edge_temperature") if temperature is None else temperature
        specs: dict[str, RunSpec] = {}
        nodes, edges = [], []
        for i, arch in enumerate(graph.models, 1):
            a = self.trained(arch)
            frozen = None
            if graph.frozen(i):
                pretrained = self.single(arch, dataset, seed if pretrain_seed is None else pretrain_seed, pretrain=True)
                specs[pretrained.name], frozen = pretrained, pretrained.name
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
        specs[name] = self.spec(name, dataset, seed, nodes, edges, epochs or self.epochs, self.settings["batch_size"])
        return specs

    def dml(self, archs: list[str], dataset: str, seed: int) -> dict[str, RunSpec]:
        name = f"ktg/{dataset}/dml/{'-'.join(self.trained(a) for a in archs)}/s{seed}"
        return self.graph_specs(name, dataset, Graph.all_through(archs), seed)

    def kd(self, teacher: str, student: str, dataset: str, seed: int) -> dict[str, RunSpec]:
        gates = {"0->1": "through", "2->1": "through", "0->2": "cutoff", "1->2": "cutoff"}
        name = f"ktg/{dataset}/kd/{self.trained(teacher)}-{self.trained(student)}/s{seed}"
        return self.graph_specs(name, dataset, Graph((student, teacher), gates), seed, temperature=self.hyper("kd_temperature"))

    # -- templates -------------------------------------------------------------------------------
    def seed_run(self, template: str, dataset: str, seed: int) -> tuple[str, dict[str, RunSpec]] | None:
        """None for a graph whose search has not finished."""
        method, _, arg = template.partition(":")
        if method == "ours":
            method, arg = "optimised", str(self.compare_nodes())
        if method == "single":
            spec = self.single(arg, dataset, seed)
            specs = {spec.name: spec}
        elif method == "dml":
            specs = self.dml(arg.split(","), dataset, seed)
        elif method == "kd":
            teacher, student = arg.split(">")
            specs = self.kd(teacher, student, dataset, seed)
        elif method in ("fixed", "optimised"):
            nodes = int(arg)
            graph = self.best(dataset, nodes) if nodes in self.settings["node_counts"] else None
            if graph is None:
                return None
            if method == "fixed":
                specs = self.dml(list(graph.models), dataset, seed)
            else:
                specs = self.graph_specs(f"ktg/{dataset}/optimised/n{nodes}/{graph.identity}/s{seed}", dataset, graph, seed)
        else:
            raise SpecError(f"ktg: bad run template {template!r} (single:A, dml:A,B, kd:T>S, fixed:N, optimised:N, ours)")
        return next(reversed(specs)), specs

    def compare_nodes(self) -> int:
        counts = self.settings["node_counts"]
        wanted = self.experiment["compare_nodes"]
        return wanted if wanted in counts else max(counts)

    # -- searches --------------------------------------------------------------------------------
    def study(self, dataset: str, nodes: int) -> str:
        return f"ktg_{dataset}_n{nodes}"

    def search_dir(self, study: str) -> Path:
        return self.registry.search_dir(study)

    def search(self, dataset: str, nodes: int) -> Search:
        """The study of `nodes`-node graphs on `dataset`; its best graph is retrained (optimised:N) beside its
        all-Through form (fixed:N)."""
        name = self.study(dataset, nodes)

        def make_spec(graph: Graph, seed: int, run: str) -> RunSpec:
            return self.graph_specs(run, dataset, graph, seed, self.search_epochs, pretrain_seed=self.seeds[0])[run]

        space = GraphSpace(nodes, self.experiment["target"], tuple(self.experiment["candidates"]))
        study = SearchDef(name=name, directory=self.search_dir(name), space=space,
                          trials=self.settings["trials"], workers=1 if self.sequential else self.settings["workers"],
                          seed=self.settings["search_seed"], objective=self.objective, make_spec=make_spec)
        pretrained = sorted(self.pretrained(dataset))
        return Search(study, lambda: pretrained,
                      result_runs=lambda: self.lookup(f"optimised:{nodes}", dataset) + self.lookup(f"fixed:{nodes}", dataset),
                      readers=[*self.experiment["tables"], *self.experiment["figures"]])

    def pretrained(self, dataset: str) -> dict[str, RunSpec]:
        """The pre-trained runs a search trial may freeze: every candidate network, with the first seed."""
        specs = (self.single(arch, dataset, self.seeds[0], pretrain=True) for arch in self.experiment["candidates"])
        return {spec.name: spec for spec in specs}

    def best(self, dataset: str, nodes: int) -> Graph | None:
        return load_best(self.search_dir(self.study(dataset, nodes)) / "best.json", GraphSpace)

    def best_info(self, dataset: str, nodes: int) -> dict[str, Any] | None:
        path = self.search_dir(self.study(dataset, nodes)) / "best.json"
        return json.loads(path.read_text()) if path.exists() else None

    # -- targets ---------------------------------------------------------------------------------
    def note(self) -> str:
        text = self.substitution_note()
        mode = ("sequential ASHA (one worker, trials in order: the same best graph on every rerun with the same kernels)"
                if self.sequential else
                f"asynchronous ASHA on D = {self.settings['workers']} workers (the paper's; the best graph can depend on the workers' timing)")
        text += (" " if text else "") + (f"Graphs train {self.epochs} epochs (paper 200), searches T = {self.settings['trials']} trials of up to "
                 f"{self.search_epochs} epochs by {mode} (paper T = 1500, D = 30), {self.search_split_note()}")
        return text

    def search_split_note(self) -> str:
        if self.heldout:
            return (f"judged on node 1's accuracy on {self.settings['validation']} images held out of the training split "
                    "(ktg.search_split: heldout, not the paper's); every KTG run trains without them.")
        return ("judged on node 1's test accuracy, as the paper and the official code: the graphs are chosen on the "
                "split the tables report (ktg.search_split: test); every KTG run trains on the whole training split.")

    def build(self) -> None:
        super().build()
        for dataset in self.config["datasets"]:
            for nodes in self.settings["node_counts"]:
                self.registry.add_runs(self.pretrained(dataset))
                self.registry.add_search(self.search(dataset, nodes))

    def table(self, name: str, decl: dict[str, Any]) -> Target:
        counts = [1] + list(self.settings["node_counts"])
        rows = [r for r in decl["rows"] if r.get("nodes", 0) in counts or "nodes" not in r]
        return super().table(name, {**decl, "rows": rows, "caption": f"{decl.get('caption', '')} {self.note()}".strip()})

    def figure(self, name: str, decl: dict[str, Any]) -> Target:
        panels = [{"label": f"{n} nodes", "nodes": n} for n in self.settings["node_counts"]]
        return super().figure(name, {**decl, "panels": panels})

    # -- claims ----------------------------------------------------------------------------------
    def claims(self) -> list[Claim]:
        out: list[Claim] = []
        for dataset in self.config["datasets"]:
            stat = lambda template: self.stat(template, dataset)  # noqa: E731
            for n in self.settings["node_counts"]:
                out.append(compare(f"the optimised {n}-node graph beats the all-through graph of the same networks ({dataset})",
                                   stat(f"optimised:{n}"), stat(f"fixed:{n}"),
                                   self.published_gap("ktg_table1", (f"{n} nodes, Optimized", "Accuracy"),
                                                      (f"{n} nodes, Fixed (Through Gate)", "Accuracy"))))
            series = {"1": stat("single:" + self.experiment["target"])} | {str(n): stat(f"optimised:{n}") for n in self.settings["node_counts"]}
            out.append(ranking(f"more nodes help node 1: its accuracy rises with every node added (optimised graphs, {dataset})", series,
                               lambda means: all(b > a for a, b in zip(list(means.values()), list(means.values())[1:])),
                               "node 1 by node count: " + ", ".join(f"{k}: {s.text()}" for k, s in series.items())))
            ours = stat("ours")
            out.append(compare(f"the optimised graph beats KD ({dataset})", ours, stat("kd:resnet110>resnet32"),
                               self.published_gap("ktg_table2", ("Ours (optimised graph)", "Accuracy"),
                                                  ("KD (T = 2), auxiliary ResNet110*", "Accuracy"))))
            rivals = {"ours": ours, "DML with ResNet110": stat("dml:resnet32,resnet110"),
                      "DML with ResNet32, ResNet110": stat("dml:resnet32,resnet32,resnet110")}
            out.append(ranking(f"the optimised graph beats both DML node sets ({dataset})", rivals,
                               lambda means: means["ours"] > max(m for k, m in means.items() if k != "ours"),
                               "; ".join(f"{k} {s.text()} (n={s.n})" for k, s in rivals.items())))
        return out


# -- figures ---------------------------------------------------------------------------------------

def node_accuracy(stat, runs: list[str]) -> dict[str, Stat]:
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
    # imported here, its only user, not with the module: building the registry (every Snakemake parse) draws nothing
    from matplotlib.patches import FancyArrowPatch

    ktg = stat.templates  # the KTG paper that declared the figure
    n = panel["nodes"]
    graph = ktg.best(stat.dataset, n)
    ax.set_axis_off()
    if graph is None:
        ax.text(0.5, 0.5, "search not finished", ha="center", va="center", transform=ax.transAxes)
        return []
    runs = stat.resolve(f"optimised:{n}")
    accuracy = node_accuracy(stat, runs)
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
    ktg = stat.templates  # the KTG paper that declared the figure
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
