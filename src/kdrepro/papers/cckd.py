"""CCKD (Peng et al., ICCV 2019): correlation congruence on the embeddings, its kernels and samplers.

Every run is the setting's TAKD run of a (teacher -> student) pair plus one edge (see
config/experiments/cckd.yaml): the student alone and KD cells *are* TAKD's runs, shared by name;
CC, hint and RepDistiller-form runs are that KD spec with a changed edge list and batch sampler.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from kdrepro.data.samplers import sampler_tag
from kdrepro.experiments import EXPERIMENTS_DIR, Registry, Results, load_yaml, num_classes, paper_seeds
from kdrepro.graph import LABELS, Edge, RunSpec
from kdrepro.papers import takd
from kdrepro.report.claims import Claim, compare, verdict
from kdrepro.report.tables import table_target

PAPER = "cckd"
METHODS = ("scratch", "kd", "hint", "cc", "cc_repdistiller")


def pair_label(pair: list[str]) -> str:
    return f"{pair[0]}->{pair[1]}"


class Cells:
    """Resolves a cell ({method, kernel, order, sampler...} of a pair) to its run per seed and registers them."""

    def __init__(self, registry: Registry):
        self.registry = registry
        self.settings = registry.config["cckd"]
        self.seeds = paper_seeds(registry.config, PAPER)
        self.takd_experiment = registry.experiments.get("takd") or load_yaml(EXPERIMENTS_DIR / "takd.yaml")

    def runs(self, cell: dict[str, Any], dataset: str) -> list[str]:
        names = []
        for seed in self.seeds:
            specs = self.specs(cell, dataset, seed)
            self.registry.add_runs(specs)
            names.append(next(reversed(specs)))
        return names

    def sampler(self, name: str, k: int | None, dataset: str) -> dict[str, Any] | None:
        if name == "random":
            return None
        if name == "cur":
            return {"name": "cur", self.settings["cur"]["reading"]: k}
        sur = self.settings["sur"]
        superclasses = min(sur["superclasses"], num_classes(dataset, self.registry.config))  # at most one per class
        return {"name": "sur", "superclasses": superclasses, sur["reading"]: sur["k"], "node": "teacher"}

    def specs(self, cell: dict[str, Any], dataset: str, seed: int) -> dict[str, RunSpec]:
        """The cell's run last, after the TAKD runs it needs (teacher; KD base)."""
        method = cell["method"]
        if method not in METHODS:
            raise ValueError(f"cckd: unknown method {method!r} (one of {METHODS})")
        teacher, student = cell["pair"]
        config = self.registry.config
        if method == "scratch":
            return takd.chain_specs([student], dataset, seed, config, self.takd_experiment)
        specs = takd.chain_specs([teacher, student], dataset, seed, config, self.takd_experiment)
        if method == "kd":
            return specs
        base = specs[takd.run_name(dataset, [teacher, student], seed)]
        s = self.settings
        if method == "hint":
            tag, edges = f"hint-b{s['hint_weight']:g}", (*base.edges, Edge("teacher", "student", "hint", weight=s["hint_weight"]))
        elif method == "cc_repdistiller":
            tag = f"ccrep-d{s['repdistiller_feat_dim']}-b{s['repdistiller_beta']:g}"
            edges = (Edge(LABELS, "student", "ce"), Edge("teacher", "student", "cc_repdistiller", weight=s["repdistiller_beta"],
                                                         options={"feat_dim": s["repdistiller_feat_dim"]}))
        else:
            kernel, order = cell.get("kernel", "rbf"), cell.get("order", s["order"])
            options: dict[str, Any] = {"kernel": kernel}
            tag = f"cc-{kernel}"
            if kernel in ("rbf", "rbf_exact"):
                options["gamma"] = s["gamma"]
                tag += f"-g{s['gamma']:g}"
            if kernel == "rbf":
                options["order"] = order
                tag += f"-P{order}"
            tag += f"-b{s['beta']:g}"
            edges = (*base.edges, Edge("teacher", "student", "cc", weight=s["beta"], options=options))
        sampler = self.sampler(cell.get("sampler", "random"), cell.get("k"), dataset)
        if sampler:
            tag += "-" + sampler_tag(sampler)
        name = f"cckd/{dataset}/{teacher}-{student}/{tag}/s{seed}"
        specs[name] = replace(base, name=name, edges=edges, sampler=sampler)
        return specs


def columns(registry: Registry, decl: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """column -> cell, generated from the setting where the table says so."""
    settings = registry.config["cckd"]
    if decl.get("orders_from_setting"):
        return {f"P={p}": {"method": "cc", "kernel": "rbf", "order": p} for p in settings["orders"]}
    if decl.get("samplers_from_setting"):
        out = {"Random": {"method": "cc"}}
        cur, sur = settings["cur"], settings["sur"]
        out |= {f"CUR k={k}" if cur["reading"] == "samples_per_class" else f"CUR {k} classes/batch": {"method": "cc", "sampler": "cur", "k": k}
                for k in cur["k"]}
        k = f"k={sur['k']}" if sur["reading"] == "samples_per_superclass" else f"{sur['k']}/batch"
        out[f"SUR ({sur['superclasses']} superclasses, {k})"] = {"method": "cc", "sampler": "sur"}
        return out
    return {col: cell for col, cell in decl["cells"].items() if settings["repdistiller"] or cell["method"] != "cc_repdistiller"}


def layout(registry: Registry, decl: dict[str, Any]) -> dict[str, Any]:
    """The declaration in the generic table form: a row per teacher/student pair of the setting
    (ablations: the first pair only), each cell a run template resolved by Cells."""
    cells = columns(registry, decl)
    pairs = registry.config["cckd"]["pairs"]
    pairs = pairs if decl.get("all_pairs", False) else pairs[:1]
    rows = [{"model": pair_label(p), "cells": {col: {**cell, "pair": list(p)} for col, cell in cells.items()}} for p in pairs]
    return {**decl, "columns": list(cells), "rows": rows}


def build(registry: Registry, experiment: dict[str, Any], paper_values: dict[str, Any]) -> None:
    cells = Cells(registry)
    context = {"paper": PAPER, "paper_title": experiment["paper"], "report": experiment["report"]}
    for name, table in experiment["tables"].items():
        decl = layout(registry, {**table, "all_pairs": name == "cckd_table1"})
        registry.targets[name] = table_target(registry, name, decl, paper_values, cells.runs, context)


def claims(results: Results) -> list[Claim]:
    """CCKD's qualitative claims (source document: CCKD beats the compared methods; RBF is the best
    kernel; more Taylor terms help; the samplers are the paper's design for intra-class pairs)."""
    registry = results.registry
    experiment = registry.experiments[PAPER]
    cells = Cells(registry)
    pairs = registry.config["cckd"]["pairs"]
    out: list[Claim] = []
    for dataset in registry.config["datasets"]:
        stat = lambda cell, pair: results.stat(cells.runs({**cell, "pair": list(pair)}, dataset))  # noqa: E731
        for pair in pairs:
            where = f"{pair_label(pair)}, {dataset}"
            out.append(compare(f"CC+KD beats KD alone ({where})", stat({"method": "cc"}, pair), stat({"method": "kd"}, pair)))
        pair, where = pairs[0], f"{pair_label(pairs[0])}, {dataset}"
        kernels = {col: stat(cell, pair) for col, cell in experiment["tables"]["cckd_ablation_kernel"]["cells"].items()}
        rbf = kernels.pop("Gaussian RBF")
        rival = max(kernels, key=lambda k: kernels[k].mean)
        out.append(Claim(
            f"the Gaussian RBF kernel beats bilinear and MMD ({where})",
            verdict(rbf.mean > kernels[rival].mean, rbf, kernels[rival]),
            f"RBF {rbf.text()} (n={rbf.n}); " + "; ".join(f"{k} {v.text()}" for k, v in kernels.items()),
        ))
        orders = {col: stat(cell, pair) for col, cell in columns(registry, {"orders_from_setting": True}).items()}
        if len(orders) > 1:
            low, high = next(iter(orders)), next(reversed(orders))
            out.append(Claim(
                f"a higher Taylor order P helps ({high} vs {low}, {where})",
                verdict(orders[high].mean > orders[low].mean, orders[high], orders[low]),
                ", ".join(f"{k}: {v.text()}" for k, v in orders.items()),
            ))
        samplers = {col: stat(cell, pair) for col, cell in columns(registry, {"samplers_from_setting": True}).items()}
        random = samplers.pop("Random")
        for col, s in samplers.items():
            out.append(compare(f"{col.split(' (')[0]} batches beat random batches ({col}, {where})", s, random))
    return out
