"""The report layer on its own: reading runs under a reporting protocol, summaries over seeds, verdicts,
the table writer, and declared tables, figures and claims on a registry of hand-made runs."""

import json
import math

import pandas as pd
import pytest

from kdrepro.experiments import Registry
from kdrepro.graph import LABELS, Data, Edge, Node, RunSpec
from kdrepro.report.claims import Claim, claims_target, compare, verdict
from kdrepro.report.figures import errorbar, figure_kind, figure_target
from kdrepro.report.results import Results, Stat
from kdrepro.report.tables import TableContent, table_target, write_table

CONFIG = {"setting": "unit", "description": "a unit test", "report": "paper", "seeds": [0, 1], "datasets": ["fashion_mnist"]}


def spec(name: str) -> RunSpec:
    return RunSpec(name, Data("fashion_mnist"), (Node("student", "plane2"),), (Edge(LABELS, "student", "ce"),), epochs=2, seed=0)


@pytest.fixture
def registry(tmp_path, monkeypatch):
    """Runs a and b of the paper "demo" (two seeds each), finished under results/unit of a fresh working directory."""
    monkeypatch.chdir(tmp_path)
    reg = Registry(CONFIG, experiments={"demo": {"paper": "Demo et al.", "report": "best_test"}})
    for run, best, final in (("a/s0", 70.0, 69.0), ("a/s1", 72.0, 71.0), ("b/s0", 60.0, 60.0), ("b/s1", 64.0, 63.0)):
        name = f"demo/{run}"
        reg.add_runs({name: spec(name)})
        reg.run_dir(name).mkdir(parents=True)
        metrics = {"best_test_acc": best, "final_test_acc": final, "snapshot_test_acc": {"1": best - 10}}
        (reg.run_dir(name) / "metrics.json").write_text(json.dumps(metrics))
        (reg.run_dir(name) / "epochs.csv").write_text(f"epoch,test_acc[student]\n1,{best - 10}\n2,{best}\n")
    return reg


class Demo:
    """A paper as the report layer sees it: templates "a" and "b", one run per seed."""

    def __init__(self, registry: Registry):
        self.results = Results(registry, "demo")
        self.config = registry.config
        self.registered: list[str] = []

    def runs(self, template: str, dataset: str) -> list[str]:
        return [f"demo/{template}/s{seed}" for seed in self.results.seeds]

    def register(self, template: str, dataset: str) -> list[str]:
        self.registered.append(template)
        return self.runs(template, dataset)

    def claims(self) -> list[Claim]:
        return [compare("a beats b", self.results.stat(self.runs("a", "")), self.results.stat(self.runs("b", "")))]

    def claims_inputs(self) -> list[str]:
        return ["results/unit/tables/demo_speed.csv"]


def test_stat_summarises_over_seeds():
    assert Stat([70.0, 72.0]).text() == "71.00 ± 1.41" and Stat([70.0]).text() == "70.00" and Stat([]).text() == "missing"
    assert math.isnan(Stat([70.0]).std) and math.isnan(Stat([]).mean)


def test_verdicts_weigh_the_gap_against_the_seed_spread():
    assert verdict(True, Stat([80.0, 81.0]), Stat([70.0, 71.0])) == "supported"
    assert verdict(True, Stat([72.0, 75.0]), Stat([70.0, 73.0])).startswith("weakly supported (gap 2.00")
    assert verdict(True, Stat([80.0]), Stat([70.0])) == "supported (one seed: no spread to judge against)"
    assert verdict(False, Stat([60.0]), Stat([70.0])) == "not supported"
    assert verdict(True, Stat([]), Stat([70.0])) == "inconclusive: missing runs"
    claim = compare("x beats y", Stat([60.0]), Stat([70.0]))
    assert claim.verdict == "not supported" and claim.evidence == "60.00 (n=1) vs 70.00 (n=1)"


def test_results_read_each_runs_accuracy_under_the_protocol(registry):
    results = Results(registry, "demo")  # the setting says `paper`: the paper's own best_test
    assert results.protocol_text == "best test accuracy over epochs" and results.seeds == [0, 1]
    assert results.stat(["demo/a/s0", "demo/a/s1", "demo/c/s0"]).values == [70.0, 72.0]
    assert results.stat(["demo/a/s0", "demo/c/s0"]).missing == 1
    assert results.accuracy("demo/a/s0@epoch1") == 60.0  # a snapshot's test accuracy
    assert list(results.curves(["demo/a/s0", "demo/a/s1"]).loc[2]) == [70.0, 72.0]
    final = Results(Registry({**CONFIG, "report": "final_test"}, registry.runs, experiments=registry.experiments), "demo")
    assert final.stat(["demo/a/s0"]).values == [69.0]
    at_best_val = Results(Registry({**CONFIG, "report": "test_at_best_val"}, experiments=registry.experiments), "demo")
    with pytest.raises(KeyError, match="validation split"):
        at_best_val.stat(["demo/a/s0"])


def test_write_table_gives_every_number_as_csv_and_the_shown_or_wide_table(tmp_path):
    frame = pd.DataFrame([{"model": "m", "dataset": "d", "column": "KD", "ours": "71.00", "paper": 72.5, "paper_tag": "EXACT"},
                          {"model": "m", "dataset": "d", "column": "CE", "ours": "70.00", "paper": None, "paper_tag": ""}])
    write_table(TableContent(frame, "Caption with 50% & more."), tmp_path / "wide")
    assert pd.read_csv(tmp_path / "wide.csv").shape == (2, 6)
    md = (tmp_path / "wide.md").read_text()
    assert md.startswith("## wide\n\nCaption with 50% & more.\n") and "| KD (paper)" in md and "72.50 [EXACT]" in md and "| –" in md
    assert r"Caption with 50\% \& more." in (tmp_path / "wide.tex").read_text()
    write_table(TableContent(frame, "Shown.", ["model", "paper"]), tmp_path / "shown")
    lines = (tmp_path / "shown.md").read_text().splitlines()
    cells = [[cell.strip() for cell in line.strip("|").split("|")] for line in lines[4:]]
    assert cells[0] == ["model", "paper"] and cells[2:] == [["m", "72.5"], ["m", "–"]]  # only the shown columns, "–" for none
    assert pd.read_csv(tmp_path / "shown.csv").shape == (2, 6)


def test_a_declared_table_registers_its_runs_once_and_renders_ours_beside_the_papers(registry):
    demo = Demo(registry)
    decl = {"title": "Demo table", "caption": "A caption.", "columns": ["A", "B"], "rows": [{"model": "m", "cells": {"A": "a", "B": "b"}}]}
    values = {"source": "the demo paper", "demo_table": {"m/cifar10": {"A": [90.0, "EXACT"]}}}
    target = table_target(registry, "demo_table", decl, values, demo)
    assert demo.registered == ["a", "b"]  # resolved while the registry is built, not again when rendering
    assert target.runs == ["demo/a/s0", "demo/a/s1", "demo/b/s0", "demo/b/s1"] and target.paper == "demo"
    target.render()
    frame = pd.read_csv("results/unit/tables/demo_table.csv")
    assert demo.registered == ["a", "b"]
    ours = frame[frame.dataset == "fashion_mnist"].set_index("column")
    assert ours.loc["A", "ours"] == "71.00 ± 1.41" and ours.loc["B", "ours_mean"] == 62.0
    cifar = frame[frame.dataset == "cifar10"].set_index("column")  # the paper's dataset, not run in this setting
    assert cifar.loc["A", "paper"] == 90.0 and cifar.loc["A", "ours"] == "not run: cifar10 is not in setting unit"
    md = open("results/unit/tables/demo_table.md").read()
    assert "Demo table. A caption. Setting `unit`: a unit test. Ours: best test accuracy over epochs, mean ± std over 2 seed(s)" in md


def test_a_row_shows_its_label_and_keeps_the_papers_values_of_its_model(registry):
    """A row relabelled for the network a setting trains in its place still sits beside the paper's value."""
    decl = {"title": "Demo table", "columns": ["A"], "rows": [{"model": "m", "label": "n (paper: m)", "cells": {"A": "a"}}]}
    values = {"demo_table": {"m/fashion_mnist": {"A": [90.0, "EXACT"]}}}
    table_target(registry, "demo_table", decl, values, Demo(registry)).render()
    frame = pd.read_csv("results/unit/tables/demo_table.csv")
    assert frame[["model", "paper", "ours"]].values.tolist() == [["n (paper: m)", 90.0, "71.00 ± 1.41"]]


def test_a_figure_draws_its_kind_per_dataset_and_panel_and_writes_the_numbers(registry):
    @figure_kind("demo_bars", lambda panel: panel["templates"])
    def bars(ax, panel, stat):
        stats = [stat(t) for t in panel["templates"]]
        errorbar(ax, panel["templates"], stats)
        return [{"template": t, "mean": s.mean, "runs": " ".join(stat.resolve(t))} for t, s in zip(panel["templates"], stats)]

    demo = Demo(registry)
    target = figure_target(registry, "demo_fig", {"kind": "demo_bars", "title": "Demo", "panels": [{"label": "p", "templates": ["a", "b"]}]}, demo)
    assert target.kind == "figure" and target.runs == ["demo/a/s0", "demo/a/s1", "demo/b/s0", "demo/b/s1"]
    target.render()
    assert all(open(path, "rb").read(4) for path in target.outputs)
    frame = pd.read_csv("results/unit/tables/demo_fig.csv")
    assert list(frame["mean"]) == [71.0, 62.0] and set(frame.panel) == {"p"} and set(frame.dataset) == {"fashion_mnist"}


def test_the_claims_report_judges_every_paper_and_declares_what_it_reads(registry):
    target = claims_target(registry, {"demo": Demo(registry)})
    assert target.inputs == ["results/unit/tables/demo_speed.csv"] and target.runs == sorted(registry.runs)
    target.render()
    text = open(target.outputs[0]).read()
    assert "## Demo et al." in text and "| a beats b | supported | 71.00 ± 1.41 (n=2) vs 62.00 ± 2.83 (n=2) |" in text
