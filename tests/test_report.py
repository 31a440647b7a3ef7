"""The report layer on its own: reading runs under a reporting protocol, summaries over seeds, verdicts,
the table writer, and declared tables, figures and claims on a registry of hand-made runs."""

import json
import math

import pandas as pd
import pytest

from kdrepro.experiments import Registry
from kdrepro.graph import LABELS, Data, Edge, Node, RunSpec
from kdrepro.report.claims import (MIN_SEEDS, OWN_OUTCOMES, Claim, claims_figure_target, claims_target, compare, equivalence, paired,
                                   ranking)
from kdrepro.report.figures import errorbar, figure_kind, figure_target
from kdrepro.report.results import Results, Stat
from kdrepro.report.stats import bootstrap_share, mean_interval, t_quantile
from kdrepro.report.tables import TableContent, table_target, write_table

CONFIG = {"setting": "unit", "description": "a unit test", "report": "paper", "seeds": [0, 1], "datasets": ["fashion_mnist"]}


def spec(name: str) -> RunSpec:
    seed = int(name.rsplit("/s", 1)[1])
    return RunSpec(name, Data("fashion_mnist", test_subset=1000), (Node("student", "plane2"),), (Edge(LABELS, "student", "ce"),),
                   epochs=2, seed=seed)


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


def test_the_t_quantile_matches_its_closed_forms_and_the_normal_limit():
    # df = 1 (Cauchy): tan(pi (p - 1/2)); df = 2: (2p - 1) / sqrt(2 p (1 - p)); df -> infinity: the normal 1.95996
    for p in (0.9, 0.95, 0.975):
        assert t_quantile(p, 1) == pytest.approx(math.tan(math.pi * (p - 0.5)), rel=1e-9)
        assert t_quantile(p, 2) == pytest.approx((2 * p - 1) / math.sqrt(2 * p * (1 - p)), rel=1e-9)
    assert t_quantile(0.975, 100_000) == pytest.approx(1.959964, abs=1e-4)
    mean, low, high = mean_interval([1.0, 2.0, 3.0], 0.95)
    assert mean == 2.0 and high - mean == pytest.approx(t_quantile(0.975, 2) * 1 / math.sqrt(3))


def seeded(*values: float, seeds=None) -> Stat:
    return Stat(list(values), seeds=list(seeds) if seeds else list(range(len(values))), runs=[f"r{i}" for i in range(len(values))])


def test_a_difference_is_reproduced_when_its_interval_lies_on_the_papers_side():
    claim = compare("a beats b", seeded(71.0, 72.5, 70.2), seeded(69.0, 70.0, 68.5))
    assert claim.verdict == "reproduced" and claim.n == 3
    assert claim.effect.estimate == pytest.approx((2.0 + 2.5 + 1.7) / 3) and claim.effect.low > 0


def test_a_difference_is_contradicted_when_its_interval_lies_on_the_other_side():
    claim = compare("a beats b", seeded(65.0, 66.0, 64.5), seeded(69.0, 70.0, 68.5))
    assert claim.verdict.startswith("contradicted") and claim.effect.high < 0


def test_a_hypothesis_of_the_settings_own_holds_or_fails_instead_of_reproducing():
    # the method comparison's "X beats KD" is no paper's claim: nothing is reproduced or contradicted
    above = compare("x beats kd", seeded(71.0, 72.5, 70.2), seeded(69.0, 70.0, 68.5), outcomes=OWN_OUTCOMES)
    below = compare("x beats kd", seeded(65.0, 66.0, 64.5), seeded(69.0, 70.0, 68.5), outcomes=OWN_OUTCOMES)
    assert above.verdict == "holds" and below.verdict == "fails: the interval lies below zero"


def test_a_difference_is_inconclusive_when_its_interval_contains_zero():
    claim = compare("a beats b", seeded(71.0, 68.0, 70.5), seeded(69.0, 70.0, 68.5))
    assert claim.verdict == "inconclusive: the 95% interval contains zero" and claim.effect.low < 0 < claim.effect.high


def test_fewer_than_three_seeds_are_inconclusive_however_large_the_gap():
    for n in range(1, MIN_SEEDS):
        claim = compare("a beats b", seeded(*[90.0 + i for i in range(n)]), seeded(*[10.0 + i for i in range(n)]))
        assert claim.verdict == f"inconclusive: {n} paired seed(s), fewer than 3" and claim.effect.estimate == 80.0
    assert compare("a beats b", Stat([]), seeded(70.0)).verdict == "inconclusive: missing runs"


def test_runs_are_paired_by_seed_not_by_position():
    # the same differences (+2 on every seed) listed in another order: an exact pairing gives zero spread
    claim = compare("a beats b", seeded(72.0, 80.0, 62.0, seeds=[0, 1, 2]), seeded(78.0, 60.0, 70.0, seeds=[1, 2, 0]))
    assert claim.effect.estimate == 2.0 and claim.effect.low == claim.effect.high == 2.0 and claim.verdict == "reproduced"
    columns, notes = paired({"a": seeded(1.0, 2.0, seeds=[0, 1]), "b": seeded(3.0, seeds=[1])})
    assert columns == {"a": [2.0], "b": [3.0]} and notes == ["seed(s) 0 lack a finished run of some compared cell"]


def test_a_run_that_did_not_train_is_left_out_and_named_with_its_reason():
    better = Stat([71.0, 72.0, 10.0, 73.0], seeds=[0, 1, 2, 3], runs=["a/s0", "a/s1", "a/s2", "a/s3"],
                  not_trained={"a/s2": "its best test accuracy is chance level"})
    other = seeded(69.0, 70.0, 68.0, 71.0)
    claim = compare("a beats b", better, other)
    assert claim.n == 3 and claim.effect.estimate == 2.0  # seed 2 left out of both sides
    assert claim.verdict == "reproduced; left out: run a/s2 did not train (its best test accuracy is chance level)"
    assert better.text().endswith("†") and not other.text().endswith("†")


def test_comparable_is_an_equivalence_test_judged_both_ways():
    kd = seeded(70.0, 71.0, 72.0, 70.5)
    equivalent = equivalence("reg is comparable to KD", seeded(70.1, 71.0, 71.9, 70.6), kd, margin=0.5)
    assert equivalent.verdict == "equivalent: the interval lies inside ±0.50" and equivalent.effect.kind == "equivalence"
    apart = equivalence("reg is comparable to KD", seeded(60.0, 61.5, 61.0, 60.0), kd, margin=0.5)
    assert apart.verdict == "not equivalent: the interval lies outside ±0.50"
    # a failed KD run is no evidence of comparability (it used to count as "within the margin")
    failed = Stat([70.2, 71.0, 71.9, 70.4], seeds=[0, 1, 2, 3], runs=list("wxyz"), not_trained={"w": "chance", "x": "chance"})
    assert equivalence("reg is comparable to KD", failed, kd, margin=0.5).verdict.startswith("inconclusive: 2 paired seed(s)")
    wide = equivalence("reg is comparable to KD", seeded(69.0, 72.0, 71.0, 70.0), kd, margin=0.5)
    assert wide.verdict == "inconclusive: the interval crosses ±0.50"


def test_a_ranking_is_bootstrapped_over_seeds():
    holds = lambda means: max(means, key=means.get) != "largest"  # noqa: E731
    clear = {"largest": seeded(60.0, 61.0, 60.5), "middle": seeded(65.0, 66.0, 64.0)}
    claim = ranking("the largest is not the best", clear, holds, "")
    assert claim.verdict == "reproduced" and claim.effect.estimate == 1.0 and claim.n == 3
    reversed_order = {"largest": seeded(70.0, 71.0, 70.5), "middle": seeded(65.0, 66.0, 64.0)}
    assert ranking("the largest is not the best", reversed_order, holds, "").verdict.startswith("contradicted")
    mixed = {"largest": seeded(60.0, 70.0, 65.0, 66.0), "middle": seeded(65.0, 64.0, 64.5, 66.5)}
    share = bootstrap_share({"largest": [60.0, 70.0, 65.0, 66.0], "middle": [65.0, 64.0, 64.5, 66.5]}, holds)
    assert 0.05 < share < 0.95 and share == bootstrap_share({"largest": [60.0, 70.0, 65.0, 66.0], "middle": [65.0, 64.0, 64.5, 66.5]}, holds)
    assert ranking("the largest is not the best", mixed, holds, "").verdict == f"inconclusive: the ordering holds in {100 * share:.0f}% of resamples"
    assert ranking("the largest is not the best", {k: seeded(*v.values[:2]) for k, v in clear.items()}, holds, "").verdict.startswith("inconclusive: 2")


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
    # differences 10 and 8 on seeds 0 and 1: mean 9, 95% t interval 9 ± 12.71 x 1.41 / sqrt 2
    assert "## Demo et al." in text and ("| a beats b | inconclusive: 2 paired seed(s), fewer than 3 | +9.00 [-3.71, +21.71] (95%) | – "
                                         "| 2 | 1000 | 71.00 ± 1.41 (n=2) vs 62.00 ± 2.83 (n=2) |") in text
    assert "| Demo et al. | a beats b | inconclusive | +9.00 [-3.71, +21.71] (95%) | – | 2 |" in text  # the summary
    assert "claims_fig" not in text  # no figure declared here


def test_the_claims_figure_is_a_forest_plot_target_with_its_numbers(registry):
    target = claims_figure_target(registry, {"demo": Demo(registry)})
    assert target.name == "claims_fig" and target.kind == "figure" and target.runs == sorted(registry.runs)
    assert target.outputs[:2] == ["figures/unit/claims_fig.png", "figures/unit/claims_fig.pdf"]
    target.render()
    assert all(open(path, "rb").read(4) for path in target.outputs)
    frame = pd.read_csv("results/unit/tables/claims_fig.csv")
    assert list(frame.claim) == ["a beats b"] and frame.estimate[0] == 9.0 and frame.verdict[0] == "inconclusive"


def test_a_run_that_did_not_train_is_marked_in_tables_and_figures_and_named_in_the_caption(registry):
    path = registry.run_dir("demo/b/s1") / "metrics.json"
    path.write_text(json.dumps({**json.loads(path.read_text()), "trained": False, "not_trained_because": "it diverged"}))
    demo = Demo(registry)
    decl = {"title": "Demo table", "columns": ["A", "B"], "rows": [{"model": "m", "cells": {"A": "a", "B": "b"}}]}
    table_target(registry, "demo_table", decl, {}, demo).render()
    frame = pd.read_csv("results/unit/tables/demo_table.csv").set_index("column")
    assert frame.loc["A", "ours"] == "71.00 ± 1.41" and frame.loc["B", "ours"] == "62.00 ± 2.83†"
    md = open("results/unit/tables/demo_table.md").read()
    assert "† includes a run that did not train (excluded from every claim): demo/b/s1 (it diverged)." in md
    claim = demo.claims()[0]
    assert claim.n == 1 and "left out: run demo/b/s1 did not train (it diverged)" in claim.verdict

    @figure_kind("demo_points", lambda panel: panel["templates"])
    def points(ax, panel, stat):
        errorbar(ax, panel["templates"], [stat(t) for t in panel["templates"]])
        return []

    figure_target(registry, "demo_fig", {"kind": "demo_points", "title": "Demo", "panels": [{"templates": ["a", "b"]}]}, demo).render()
    assert "demo/b/s1 (it diverged)" in open("results/unit/tables/demo_fig.md").read()


def test_a_snapshot_is_never_marked_as_not_trained(registry):
    path = registry.run_dir("demo/a/s0") / "metrics.json"
    path.write_text(json.dumps({**json.loads(path.read_text()), "trained": False, "not_trained_because": "chance"}))
    results = Results(registry, "demo")
    assert not results.stat(["demo/a/s0@epoch1"]).not_trained and results.stat(["demo/a/s0"]).not_trained
