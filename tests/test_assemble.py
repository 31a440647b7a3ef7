"""The assembly of a setting's registry from the papers: the same from any working directory, lookups that
register nothing, searches registered generically with the runs their results add, claims that declare
what they read."""

import json

import pytest

from conftest import setting
from kdrepro.assemble import PAPERS, assemble, build_registry
from kdrepro.config import ConfigError
from kdrepro.experiments import Registry
from kdrepro.graph import LABELS, Edge, Node, RunSpec
from kdrepro.papers.base import Paper
from kdrepro.report.claims import claims_target, compare
from kdrepro.search_space import Graph


def test_the_registry_does_not_depend_on_the_working_directory(tmp_path, monkeypatch):
    here = build_registry(setting("smoke"))
    monkeypatch.chdir(tmp_path)
    there = build_registry(setting("smoke"))
    assert list(there.runs.items()) == list(here.runs.items()) and list(there.targets) == list(here.targets)


def test_every_paper_builds_its_targets_and_the_setting_wide_ones_come_last():
    registry, papers = assemble(setting("smoke"))
    assert list(papers) == [paper.name for paper in PAPERS] == ["takd", "tfkd", "cckd", "ktg", "fitnets", "compare"]
    # the smoke setting compares no methods: the comparison has no targets there
    assert list(registry.papers()) == [*list(papers)[:-1], "all"]
    assert list(registry.targets)[-3:] == ["claims_fig", "claims", "runs"]
    assert registry.targets["claims_fig"].outputs[:2] == ["figures/smoke/claims_fig.png", "figures/smoke/claims_fig.pdf"]
    assert set(registry.targets["runs"].runs) == set(registry.runs)


def test_looking_runs_up_registers_nothing_and_only_building_does(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # no runs here: every claim is judged on missing runs
    registry, papers = assemble(setting("smoke"))
    takd, before = papers["takd"], dict(registry.runs)
    assert takd.runs("plane8-plane6", "fashion_mnist") == ["takd/fashion_mnist/plane8-plane6/s0"]
    assert takd.lookup("plane8-plane6", "fashion_mnist").specs.keys() == {"takd/fashion_mnist/plane8/s0", "takd/fashion_mnist/plane8-plane6/s0"}
    registry.targets["claims"].render()
    assert registry.runs == before
    takd.register("plane8-plane6", "fashion_mnist")
    assert set(registry.runs) - set(before) == {"takd/fashion_mnist/plane8-plane6/s0"}  # plane8 was registered already


def test_the_claims_declare_table_5_which_they_read(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    registry = build_registry(setting("smoke"))
    claims = registry.targets["claims"]
    assert claims.inputs == ["results/smoke/tables/fitnets_table5.csv"]
    assert set(claims.inputs) <= set(registry.targets["fitnets_table5"].outputs)
    claims.render()
    assert "| inconclusive: render fitnets_table5 first |" in (tmp_path / "results/smoke/claims.md").read_text()


def test_a_search_adds_the_runs_of_its_result_once_it_has_finished(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    # the setting's word on every run (test_every) holds for the runs a search adds too
    config = setting("smoke", test_every=None, ktg={"epochs": 2, "search_split": "test"})
    registry = build_registry(config)
    search = registry.searches["ktg_fashion_mnist_n2"]
    assert set(search.pretrained()) <= set(registry.runs) and {"ktg_table1", "ktg_fig_graphs"} <= set(search.readers)
    assert search.result_runs().refs == [] and not registry.searched
    # the search finishes after the registry was built (the workflow's checkpoint): its runs are found, not registered
    graph = Graph(("resnet32", "wrn28_2"), {"0->1": "through", "2->1": "linear", "0->2": "cutoff", "1->2": "cutoff"})
    best = tmp_path / "results/smoke/search/ktg_fashion_mnist_n2/best.json"
    best.parent.mkdir(parents=True)
    best.write_text(json.dumps({"graph": graph.to_dict(), "best_trial": 3, "best_value": 50.0}))
    optimised, fixed = f"ktg/fashion_mnist/optimised/n2/{graph.identity}/s0", "ktg/fashion_mnist/dml/resnet8-wrn16_2/s0"
    assert search.result_runs().refs == [optimised, fixed]
    assert registry.spec(optimised).node("node2").frozen_from == "ktg/fashion_mnist/single/wrn16_2/s0"
    assert optimised not in registry.runs and registry.spec(optimised).test_every == registry.spec(fixed).test_every == 2
    # a registry built now finds the result when it is built, and marks its runs as the search's
    rebuilt = build_registry(config)
    assert rebuilt.searched == {optimised, fixed}
    assert rebuilt.runs[optimised] == registry.spec(optimised) and rebuilt.runs[fixed] == registry.spec(fixed)


class Toy(Paper):
    """The least a new paper writes (the README's example): its run-template grammar and its claims."""

    name = "toy"

    def seed_run(self, template: str, dataset: str, seed: int) -> tuple[str, dict[str, RunSpec]]:
        method, _, pair = template.partition(":")  # "scratch:A" or "kd:T>S"
        *teacher, student = pair.split(">")
        name = f"toy/{dataset}/{method}/{pair.replace('>', '-')}/s{seed}"
        nodes, edges, specs = [Node("student", student, self.options(student))], [Edge(LABELS, "student", "ce")], {}
        if method == "kd":
            teacher_run, specs = self.seed_run(f"scratch:{teacher[0]}", dataset, seed)
            nodes.insert(0, Node("teacher", teacher[0], self.options(teacher[0]), frozen_from=teacher_run))
            edges.append(Edge("teacher", "student", "kd", options={"temperature": self.hyper("temperature")}))
        spec = RunSpec(name, self.data(dataset), tuple(nodes), tuple(edges), epochs=self.settings["epochs"], seed=seed)
        return name, specs | {name: spec}

    def claims(self):
        return [compare(f"KD beats training from scratch ({dataset})", self.stat("kd:plane4>plane2", dataset),
                        self.stat("scratch:plane2", dataset)) for dataset in self.config["datasets"]]


def test_a_new_paper_is_a_template_grammar_and_claims_over_an_experiment_file(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    experiment = {"paper": "Toy et al.", "report": "final_test", "temperature": 4, "tables": {"toy_table": {
        "title": "Scratch and KD", "columns": ["Scratch", "KD"],
        "rows": [{"model": "plane2", "cells": {"Scratch": "scratch:plane2", "KD": "kd:plane4>plane2"}}]}}}
    registry = Registry(setting("smoke") | {"toy": {"epochs": 1, "model_options": {"plane": {"width": 0.5}}}})
    registry.experiments["toy"] = experiment
    toy = Toy(registry, experiment, {})
    toy.build()
    assert list(registry.runs) == ["toy/fashion_mnist/scratch/plane2/s0", "toy/fashion_mnist/scratch/plane4/s0",
                                   "toy/fashion_mnist/kd/plane4-plane2/s0"]
    kd = registry.runs["toy/fashion_mnist/kd/plane4-plane2/s0"]
    assert kd.dependencies == ["toy/fashion_mnist/scratch/plane4/s0"] and kd.edges[1].options == {"temperature": 4}
    assert kd.node("student").options == {"width": 0.5} and kd.data.train_subset == 512  # the setting's data block
    registry.targets["toy_table"].render()
    claims = claims_target(registry, {"toy": toy})
    claims.render()
    assert "| KD beats training from scratch (fashion_mnist) | inconclusive: missing runs |" in open(claims.outputs[0]).read()


def test_the_paper_setting_runs_fitnets_on_svhn_and_mnist_and_the_other_papers_on_cifar_only():
    """FitNets Tables 3-4 are built in the paper setting; the setting-wide dataset list does not drag the
    other papers onto SVHN and MNIST (each paper block's `datasets`)."""
    registry = build_registry(setting("paper"))
    datasets_of = {}
    for run in registry.runs:
        paper, dataset = run.split("/")[:2]
        datasets_of.setdefault(paper, set()).add(dataset)
    assert datasets_of.pop("fitnets") == {"cifar10", "cifar100", "svhn", "mnist"}
    assert datasets_of == {paper: {"cifar10", "cifar100"} for paper in ("takd", "tfkd", "cckd", "ktg")}
    for table, dataset in (("fitnets_table3", "svhn"), ("fitnets_table4", "mnist")):
        runs = registry.targets[table].runs
        assert runs and all(run.split("/")[1] == dataset for run in runs)
    assert not [s for s in registry.searches if "svhn" in s or "mnist" in s]  # no KTG search on them either


def test_a_paper_block_may_only_name_datasets_of_the_setting():
    with pytest.raises(ConfigError, match="config key takd.datasets.0: mnist is not one of the setting's datasets"):
        setting("config", takd={"datasets": ["mnist"]})


def test_a_setting_with_a_convergence_block_checks_every_scratch_recipe_its_papers_train():
    plain = build_registry(setting("smoke"))
    registry = build_registry(setting("smoke", convergence={"factor": 3, "threshold": 0.5}))
    assert "convergence_table" not in plain.targets
    added = sorted(set(registry.runs) - set(plain.runs))
    table = registry.targets["convergence_table"]
    assert added and all(name.startswith("convergence/") and "/x3/" in name for name in added)
    assert set(added) <= set(table.runs) and set(registry.targets["runs"].runs) == set(registry.runs)
    for name in added:
        base = registry.runs[name.replace("convergence/", "", 1).replace("/x3/", "/")]
        assert registry.runs[name].epochs == 3 * base.epochs and len(base.nodes) == 1


def test_a_setting_may_evaluate_the_test_split_after_the_last_epoch_only():
    registry = build_registry(setting("smoke", test_every=None, ktg={"epochs": 2}))
    validated = {name for name, spec in registry.runs.items() if spec.data.validation}
    assert validated and all(registry.runs[name].test_every == 1 for name in validated)
    assert all(spec.test_every == spec.epochs for name, spec in registry.runs.items() if name not in validated)
    assert {spec.test_every for spec in build_registry(setting("smoke")).runs.values()} == {1}
