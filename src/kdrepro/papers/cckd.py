"""CCKD (Peng et al., ICCV 2019): correlation congruence on the embeddings, its kernels and samplers.

Every run is the setting's TAKD run of a (teacher -> student) pair plus one edge (see
config/experiments/cckd.yaml): the student alone and KD cells *are* TAKD's runs, shared by name;
CC, hint and RepDistiller-form runs are that KD spec with a changed edge list and batch sampler.
A run template is a cell: {method, pair, kernel, order, sampler, k}.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from kdrepro.data.sampling import sampler_tag
from kdrepro.experiments import Registry, Target, num_classes
from kdrepro.graph import LABELS, Edge, RunSpec
from kdrepro.papers.base import Paper
from kdrepro.papers.takd import TAKD, run_name as takd_run_name
from kdrepro.report.claims import Claim, compare, ranking

METHODS = ("scratch", "kd", "hint", "cc", "cc_repdistiller")


def pair_label(pair: list[str]) -> str:
    return f"{pair[0]}->{pair[1]}"


class CCKD(Paper):
    name = "cckd"

    def __init__(self, registry: Registry, experiment: dict[str, Any], paper_values: dict[str, Any]):
        super().__init__(registry, experiment, paper_values)
        self.takd = TAKD(registry, registry.experiments["takd"], {})  # whose runs CCKD's extend

    def seed_run(self, cell: dict[str, Any], dataset: str, seed: int) -> tuple[str, dict[str, RunSpec]]:
        specs = self.specs(cell, dataset, seed)
        return next(reversed(specs)), specs

    def sampler(self, name: str, k: int | None, dataset: str) -> dict[str, Any] | None:
        if name == "random":
            return None
        if name == "cur":
            return {"name": "cur", self.settings["cur"]["reading"]: k}
        sur = self.settings["sur"]
        superclasses = min(sur["superclasses"], num_classes(dataset, self.config))  # at most one per class
        return {"name": "sur", "superclasses": superclasses, sur["reading"]: sur["k"], "node": "teacher"}

    def specs(self, cell: dict[str, Any], dataset: str, seed: int) -> dict[str, RunSpec]:
        """The cell's run last, after the TAKD runs it needs (teacher; KD base)."""
        method = cell["method"]
        if method not in METHODS:
            raise ValueError(f"cckd: unknown method {method!r} (one of {METHODS})")
        teacher, student = cell["pair"]
        if method == "scratch":
            return self.takd.chain_specs([student], dataset, seed)
        specs = self.takd.chain_specs([teacher, student], dataset, seed)
        if method == "kd":
            return specs
        base = specs[takd_run_name(dataset, [teacher, student], seed)]
        hyper = self.hyper
        if method == "hint":  # RepDistiller's FitNet: CE + weight x hint at one layer of both networks, no KD
            layer = self.experiment["hint_layer"]
            tag = f"hint-{layer}-b{hyper('hint_weight'):g}"
            edges = (Edge(LABELS, "student", "ce"), Edge("teacher", "student", "hint", weight=hyper("hint_weight"),
                                                         options={"source_layer": layer, "target_layer": layer}))
        elif method == "cc_repdistiller":
            tag = f"ccrep-d{hyper('repdistiller_feat_dim')}-b{hyper('repdistiller_beta'):g}"
            edges = (Edge(LABELS, "student", "ce"), Edge("teacher", "student", "cc_repdistiller", weight=hyper("repdistiller_beta"),
                                                         options={"feat_dim": hyper("repdistiller_feat_dim")}))
        else:
            kernel, order = cell.get("kernel", "rbf"), cell.get("order", hyper("order"))
            options: dict[str, Any] = {"kernel": kernel}
            tag = f"cc-{kernel}"
            if kernel in ("rbf", "rbf_exact"):
                options["gamma"] = hyper("gamma")
                tag += f"-g{hyper('gamma'):g}"
            if kernel == "rbf":
                options["order"] = order
                tag += f"-P{order}"
            tag += f"-b{hyper('beta'):g}"
            edges = (*base.edges, Edge("teacher", "student", "cc", weight=hyper("beta"), options=options))
        sampler = self.sampler(cell.get("sampler", "random"), cell.get("k"), dataset)
        if sampler:
            tag += "-" + sampler_tag(sampler)
        name = f"cckd/{dataset}/{teacher}-{student}/{tag}/s{seed}"
        specs[name] = replace(base, name=name, edges=edges, sampler=sampler)
        return specs

    def columns(self, decl: dict[str, Any]) -> dict[str, dict[str, Any]]:
        """column -> cell, generated from the setting where the table says so."""
        settings = self.settings
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

    def table(self, name: str, decl: dict[str, Any]) -> Target:
        """The declaration in the generic table form: a row per teacher/student pair of the setting
        (Table 1; the ablations: the first pair only), each cell a run template."""
        cells = self.columns(decl)
        pairs = self.settings["pairs"] if name == "cckd_table1" else self.settings["pairs"][:1]
        rows = [{"model": pair_label(p), "cells": {col: {**cell, "pair": list(p)} for col, cell in cells.items()}} for p in pairs]
        return super().table(name, {**decl, "columns": list(cells), "rows": rows})

    def claims(self) -> list[Claim]:
        """CCKD's qualitative claims (source document: CCKD beats the compared methods; RBF is the best
        kernel; more Taylor terms help; the samplers are the paper's design for intra-class pairs)."""
        pairs = self.settings["pairs"]
        out: list[Claim] = []
        for dataset in self.config["datasets"]:
            stat = lambda cell, pair: self.stat({**cell, "pair": list(pair)}, dataset)  # noqa: E731
            for pair in pairs:
                where = f"{pair_label(pair)}, {dataset}"
                out.append(compare(f"CC+KD beats KD alone ({where})", stat({"method": "cc"}, pair), stat({"method": "kd"}, pair)))
            pair, where = pairs[0], f"{pair_label(pairs[0])}, {dataset}"
            kernels = {col: stat(cell, pair) for col, cell in self.experiment["tables"]["cckd_ablation_kernel"]["cells"].items()}
            out.append(ranking(
                f"the Gaussian RBF kernel beats bilinear and MMD ({where})", kernels,
                lambda means: means["Gaussian RBF"] > max(m for k, m in means.items() if k != "Gaussian RBF"),
                "; ".join(f"{k} {v.text()} (n={v.n})" for k, v in kernels.items()),
            ))
            orders = {col: stat(cell, pair) for col, cell in self.columns({"orders_from_setting": True}).items()}
            if len(orders) > 1:
                low, high = next(iter(orders)), next(reversed(orders))
                out.append(compare(f"a higher Taylor order P helps ({high} vs {low}, {where})", orders[high], orders[low],
                                   evidence=", ".join(f"{k}: {v.text()}" for k, v in orders.items())))
            samplers = {col: stat(cell, pair) for col, cell in self.columns({"samplers_from_setting": True}).items()}
            random = samplers.pop("Random")
            for col, s in samplers.items():
                out.append(compare(f"{col.split(' (')[0]} batches beat random batches ({col}, {where})", s, random))
        return out
