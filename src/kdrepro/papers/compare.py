"""Any distillation methods on any teacher/student pairs: the setting's `compare` block names the pairs and
the methods, config/experiments/compare.yaml defines the methods (the setting's `compare.define` adds its own,
with losses from the setting's `plugins`).

Every run is TAKD's run of the pair with the method's edges (TAKD's recipe for the student's family), so the
teacher, the scratch student, plain KD and TAKD's chains are TAKD's runs, shared by name with every table that
reads them. A run template is "method:teacher>student", "teacher:teacher>student" or "scratch:teacher>student".

A pair's teacher may be one of the setting's external teachers (kdrepro.teachers), trained elsewhere: then no
run trains it, every method's teacher node (and the first link of TAKD's chains: the assistant) loads its file,
and its teacher row is an evaluation run, its test accuracy measured on the comparison's data.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pandas as pd

from kdrepro.config import conform
from kdrepro.experiments import Registry, Runs, Target
from kdrepro.graph import Edge, Node, RunSpec, SpecError
from kdrepro.papers.base import Paper
from kdrepro.papers.takd import TAKD, run_name as takd_run_name
from kdrepro.paths import EXPERIMENTS_SCHEMA
from kdrepro.report.claims import OWN_OUTCOMES, Claim, compare
from kdrepro.report.figures import figure_kind, hatch_not_trained
from kdrepro.report.tables import TableContent, caption, frame_table
from kdrepro.teachers import ExternalTeacher, setting_teachers

REFERENCES = ("teacher", "scratch")  # the rows every pair has besides its methods
BASELINE = "kd"  # what every method is judged against


def template(method: str, pair: tuple[str, str]) -> str:
    return f"{method}:{pair[0]}>{pair[1]}"


def evaluation_name(teacher: str, dataset: str) -> str:
    """The run that measures an external teacher (one for every seed: one file)."""
    return f"external/{dataset}/{teacher}"


def pair_label(pair: tuple[str, str]) -> str:
    return f"{pair[0]} → {pair[1]}"


def edges_of(declared: list[dict[str, Any]]) -> tuple[Edge, ...]:
    """A method's edges as the schema gives them (the student learns unless an edge names its target)."""
    return tuple(Edge(e["source"], e.get("target", "student"), e["loss"], weight=e.get("weight", 1.0), gate=e.get("gate", "through"),
                      options=e.get("options", {}), gate_options=e.get("gate_options", {})) for e in declared)


class Compare(Paper):
    name = "compare"

    def __init__(self, registry: Registry, experiment: dict[str, Any], paper_values: dict[str, Any]):
        super().__init__(registry, experiment, paper_values)
        self.takd = TAKD(registry, registry.experiments["takd"], {})  # whose recipe and runs every method shares
        own = {name: conform(method, EXPERIMENTS_SCHEMA, where=f"compare.define.{name}", definition="compare_method")
               for name, method in self.settings["define"].items()}
        self.methods: dict[str, dict[str, Any]] = {**experiment["methods"], **own}
        unknown = [m for m in self.settings["methods"] if m not in self.methods]
        if unknown:
            raise SpecError(f"compare.methods: unknown method {unknown[0]!r}; known: {', '.join(self.methods)} "
                            "(or define it under compare.define)")
        self.pairs: list[tuple[str, str]] = [tuple(pair) for pair in self.settings["pairs"]]
        self.shown = [BASELINE, *(m for m in self.settings["methods"] if m != BASELINE)]
        teachers = setting_teachers(self.config)
        self.external = {name: t for name, t in teachers.items() if name in {p[0] for p in self.pairs}}  # those pairs name
        self.check_external_pairs(teachers)

    def check_external_pairs(self, teachers: dict[str, ExternalTeacher]) -> None:
        """An external teacher teaches on the dataset it was trained on, and is never a pair's student (trained here)."""
        for i, (teacher, student) in enumerate(self.pairs):
            if student in teachers:
                raise SpecError(f"compare.pairs.{i}.1: {student} is an external teacher (teachers.{student}); a pair's "
                                "student is trained here, so it must be an architecture")
            other = [ds for ds in self.config["datasets"] if teacher in self.external and ds != self.external[teacher].dataset]
            if other:
                raise SpecError(f"compare.pairs.{i}.0: the external teacher {teacher} was trained on {self.external[teacher].dataset} "
                                f"(teachers.{teacher}.dataset), but the comparison runs on {', '.join(other)} too (the setting's "
                                "datasets)")

    # -- runs ---------------------------------------------------------------------------------------
    def seed_run(self, text: str, dataset: str, seed: int) -> tuple[str, dict[str, RunSpec]]:
        method, _, pair_text = text.partition(":")
        teacher, student = pair_text.split(">")
        if method == "teacher" and teacher in self.external:
            return self.evaluation_run(teacher, dataset)
        if method in REFERENCES:
            chain = [teacher] if method == "teacher" else [student]
        elif "assistants" in self.methods[method]:
            chain = [teacher, *self.methods[method]["assistants"], student]
        else:
            return self.edge_run(method, teacher, student, dataset, seed)
        specs = self.chain_specs(chain, dataset, seed)
        return takd_run_name(dataset, chain, seed), specs

    def lookup(self, template: Any, dataset: str) -> Runs:
        """An external teacher's row is one evaluation run whatever the seed (one file): counted once."""
        found = super().lookup(template, dataset)
        return Runs(list(dict.fromkeys(found.refs)), found.specs)

    def evaluation_run(self, teacher: str, dataset: str) -> tuple[str, dict[str, RunSpec]]:
        """The external teacher's frozen node alone, measured on the data its students see (TAKD's)."""
        name = evaluation_name(teacher, dataset)
        spec = RunSpec(name=name, data=self.takd.data(dataset, normalization=self.takd.protocol["normalization"]),
                       nodes=(self.registry.external_node(teacher),), edges=(), epochs=0, seed=0,
                       batch_size=self.takd.settings["batch_size"], eval_node="teacher")
        return name, {name: spec}

    def chain_specs(self, chain: list[str], dataset: str, seed: int) -> dict[str, RunSpec]:
        """TAKD's runs of `chain`. From an external teacher, nothing trains the teacher: the chain's first link (an
        assistant, or the student) is TAKD's link whose teacher node loads the file, and each later link distils
        from the one before, as in TAKD."""
        if chain[0] not in self.external:
            return self.takd.chain_specs(chain, dataset, seed)
        specs: dict[str, RunSpec] = {}
        for end in range(2, len(chain) + 1):
            name = takd_run_name(dataset, chain[:end], seed)
            if specs:
                specs[name] = self.takd.link_spec(name, chain[:end], dataset, seed, next(reversed(specs)), None)
                continue
            # TAKD's link from the teacher as evaluated here, its teacher node then loading the file itself: the
            # file's content, not a run, is in the link's config hash
            link = self.takd.link_spec(name, [self.external[chain[0]].arch, chain[1]], dataset, seed,
                                       evaluation_name(chain[0], dataset), None)
            external = self.registry.external_node(chain[0])
            specs[name] = replace(link, nodes=tuple(external if n.name == "teacher" else n for n in link.nodes))
        return specs

    def edge_run(self, method: str, teacher: str, student: str, dataset: str, seed: int) -> tuple[str, dict[str, RunSpec]]:
        """The student trained with the method's edges, from the pair's teacher, its own scratch run, a peer
        trained with it, or none."""
        definition = self.methods[method]
        kind = definition.get("teacher", "pair")
        learners = {edge.get("target", "student") for edge in definition["edges"]}
        if "teacher" in learners and kind != "peer":
            raise SpecError(f"compare method {method}: only a peer teacher (teacher: peer) can be an edge's target")
        source = {"pair": [teacher], "self": [student], "none": [], "peer": []}[kind]
        external = self.registry.external_node(teacher) if kind == "pair" and teacher in self.external else None
        specs = self.takd.chain_specs(source, dataset, seed) if source and external is None else {}
        base = self.takd.chain_specs([student], dataset, seed)[takd_run_name(dataset, [student], seed)]
        nodes = base.nodes
        if external is not None:
            nodes = (external, *nodes)
        elif source:
            nodes = (Node("teacher", source[0], self.takd.options(source[0]), frozen_from=takd_run_name(dataset, source, seed)), *nodes)
        elif kind == "peer":
            nodes = (Node("teacher", student, self.takd.options(student)), *nodes)
        name = f"compare/{dataset}/{teacher}-{student}/{method}/s{seed}"
        if "init_stage" in definition:  # FitNets' two stages: the hint run's layers start the method's student
            stage = definition["init_stage"]
            first = f"compare/{dataset}/{teacher}-{student}/{method}-stage1/s{seed}"
            specs[first] = replace(base, name=first, nodes=nodes, edges=edges_of(stage["edges"]))
            nodes = tuple(replace(n, init_from=first, init_layers=tuple(stage["layers"])) if n.name == "student" else n
                          for n in nodes)
        specs[name] = replace(base, name=name, nodes=nodes, edges=edges_of(definition["edges"]))
        return name, specs

    # -- targets ------------------------------------------------------------------------------------
    def build(self) -> None:
        if not self.pairs:
            return
        self.registry.targets["compare_table"] = self.table("compare_table", {})
        self.registry.targets["compare_fig"] = self.figure("compare_fig", {
            "kind": "compare", "title": "Method comparison: student accuracy per method",
            "panels": [{"label": pair_label(pair), "pair": list(pair), "methods": [*REFERENCES, *self.shown]} for pair in self.pairs]})

    def recipe_note(self) -> str:
        takd = self.config["takd"]
        return (f"Every run: TAKD's recipe for the student's family, {takd['epochs']} epochs at batch {takd['batch_size']} "
                "(config/experiments/takd.yaml); teacher, scratch and kd are TAKD's runs. " + self.external_note()
                + " ".join(f"{m}: {self.methods[m]['description']}." for m in self.shown))

    def external_note(self) -> str:
        """The caption sentence naming the external teachers (by their file's content, not its path), if any."""
        if not self.external:
            return ""
        named = [f"{name} ({', '.join([t.arch, *(f'{k} {v}' for k, v in t.options.items())])}; file sha256 "
                 f"{self.registry.external_node(name).weights_sha256[:12]}; teachers.{name})" for name, t in self.external.items()]
        return (f"External teacher{'s' if len(named) > 1 else ''}, trained elsewhere and not here: {'; '.join(named)}; "
                "the teacher row is the test accuracy of the file's weights measured here, and every method of the pair "
                "distils from them (TAKD's assistant too). ")

    def table(self, name: str, decl: dict[str, Any]) -> Target:
        rows = [(method, pair, ds) for ds in self.config["datasets"] for pair in self.pairs for method in [*REFERENCES, *self.shown]]
        runs = {key: self.register(template(key[0], key[1]), key[2]) for key in rows}
        read = [r for rs in runs.values() for r in rs]

        def content() -> TableContent:
            records = []
            for method, pair, ds in rows:
                stat = self.results.stat(runs[method, pair, ds])
                walls = [w for w in (self.results.metrics(r) or {} for r in runs[method, pair, ds]) if w]
                records.append({
                    "method": method, "pair": pair_label(pair), "dataset": ds,
                    "accuracy": stat.text(), "ours_mean": stat.mean, "ours_std": stat.std, "n_seeds": stat.n,
                    "train seconds": f"{sum(m['wall_seconds'] for m in walls) / len(walls):.0f}" if walls else "–",
                    "runs": " ".join(runs[method, pair, ds]),
                })
            text = caption(self.registry, "Method comparison: student accuracy per method and teacher/student pair",
                           self.recipe_note(), self.results, read)
            return TableContent(pd.DataFrame.from_records(records), text, ["method", "pair", "dataset", "accuracy", "n_seeds", "train seconds"])

        return frame_table(self.registry, name, self.name, read, content)

    def claims(self) -> list[Claim]:
        return [compare(f"{method} beats {BASELINE} ({pair_label(pair)}, {ds})",
                        self.stat(template(method, pair), ds), self.stat(template(BASELINE, pair), ds), outcomes=OWN_OUTCOMES)
                for ds in self.config["datasets"] for pair in self.pairs for method in self.shown if method != BASELINE]


@figure_kind("compare", lambda panel: [template(m, panel["pair"]) for m in panel["methods"]])
def draw_compare(ax, panel: dict[str, Any], data) -> list[dict[str, Any]]:
    """One horizontal bar per method (mean over seeds, std as error bar); teacher and scratch as lines."""
    # imported here, its only user, not with the module: building the registry (every Snakemake parse) draws nothing
    import matplotlib.ticker as ticker

    methods = [m for m in panel["methods"] if m not in REFERENCES]
    stats = [data(template(method, panel["pair"])) for method in methods]
    bars = ax.barh(range(len(methods)), [s.mean for s in stats], xerr=[0 if s.n < 2 else s.std for s in stats],
                   color="tab:blue", alpha=0.8, capsize=3)
    hatch_not_trained(ax, bars, stats)
    rows = [{"method": method, "mean": s.mean, "std": s.std, "n": s.n} for method, s in zip(methods, stats)]
    for method, style in zip(REFERENCES, ("--", ":")):
        stat = data(template(method, panel["pair"]))
        ax.axvline(stat.mean, color="black", linestyle=style, label=f"{method} {stat.text()}")
        rows.append({"method": method, "mean": stat.mean, "std": stat.std, "n": stat.n})
    ax.set_yticks(range(len(methods)), methods)
    ax.set_xlabel("student test accuracy (%)")
    ax.xaxis.set_major_locator(ticker.MaxNLocator(6))
    return rows
