"""TAKD: chains of KD runs shared by every table, the two protocols, the loss hyper-parameters of the
experiment file (a setting may override them), and the smoke run's tables, figures and claims."""

import shutil

import pandas as pd
import pytest
import yaml

from conftest import REPO, setting
from kdrepro.assemble import assemble, build_registry


def test_chains_share_runs():
    registry = build_registry(setting("smoke"))
    student = "takd/fashion_mnist/plane10-plane4-plane2/s0"
    assert registry.runs[student].dependencies == ["takd/fashion_mnist/plane10-plane4/s0"]
    assert registry.runs["takd/fashion_mnist/plane10-plane4/s0"].dependencies == ["takd/fashion_mnist/plane10/s0"]
    # every TAKD target reads runs that exist, and the teacher plane10 is one run shared by all of them
    assert sum(1 for name in registry.runs if name.startswith("takd/fashion_mnist/plane10/")) == len(registry.config["seeds"])
    for target in registry.targets.values():
        assert set(target.runs) <= set(registry.runs)


def test_chain_templates_take_the_assistant_of_the_datasets_size_class():
    _, papers = assemble(setting("smoke", datasets=["fashion_mnist", "cifar100"]))
    takd = papers["takd"]
    assert takd.runs("resnet110-{resnet_ta}-resnet8", "fashion_mnist") == ["takd/fashion_mnist/resnet110-resnet14-resnet8/s0"]
    assert takd.runs("resnet110-{resnet_ta}-resnet8", "cifar100") == ["takd/cifar100/resnet110-resnet20-resnet8/s0"]
    assert takd.runs(["plane10", "plane2"], "fashion_mnist") == takd.runs("plane10-plane2", "fashion_mnist")


def test_protocols_differ_where_the_paper_and_code_disagree():
    paper = build_registry(setting("smoke"))
    official = build_registry(setting("smoke", protocol="official"))
    run = "takd/fashion_mnist/resnet110-resnet8/s0"
    assert paper.runs[run].optimizer.lr == 0.1 and official.runs[run].optimizer.lr == 0.01
    assert paper.runs[run].edges[1].options["class_reduction"] == "sum"
    assert official.runs[run].edges[1].options["class_reduction"] == "mean"
    assert paper.runs["takd/fashion_mnist/plane2/s0"].optimizer.weight_decay == 0.0


def test_temperature_and_lambda_come_from_the_experiment_file_unless_the_setting_overrides_them():
    experiment = yaml.safe_load((REPO / "config/experiments/takd.yaml").read_text())
    run, cc = "takd/fashion_mnist/resnet110-resnet20/s0", "cckd/fashion_mnist/resnet110-resnet20/cc-rbf-g0.4-P2-b1/s0"

    def kd_edges(registry, name):
        return [(e.loss, e.weight, e.options.get("temperature")) for e in registry.runs[name].edges[:2]]

    shipped = build_registry(setting("smoke"))
    lam, tau = experiment["lambda"], experiment["temperature"]
    assert kd_edges(shipped, run) == [("ce", 1 - lam, None), ("kd", lam, tau)]
    overridden = build_registry(setting("smoke", takd={"lambda": 0.75, "temperature": 4}))
    assert kd_edges(overridden, run) == [("ce", 0.25, None), ("kd", 0.75, 4)]
    assert kd_edges(overridden, cc) == kd_edges(overridden, run)  # CCKD's runs extend TAKD's


def test_unknown_architecture_in_an_experiment_is_named(tmp_path):
    shutil.copytree(REPO / "config/experiments", tmp_path / "experiments")
    path = tmp_path / "experiments/takd.yaml"
    experiment = yaml.safe_load(path.read_text())
    experiment["tables"]["takd_table2"]["rows"][0]["cells"]["TA=8"] = "plane10-plane3-plane2"
    path.write_text(yaml.safe_dump(experiment))
    with pytest.raises(Exception, match="plane3"):
        build_registry(setting("smoke"), experiments_dir=tmp_path / "experiments")


def test_figure_4_reads_only_runs_the_tables_already_train(tmp_path):
    shutil.copytree(REPO / "config/experiments", tmp_path / "experiments")
    path = tmp_path / "experiments/takd.yaml"
    experiment = yaml.safe_load(path.read_text())
    del experiment["figures"]["takd_fig4"]
    path.write_text(yaml.safe_dump(experiment))
    with_figure = build_registry(setting("config"))
    without = build_registry(setting("config"), experiments_dir=tmp_path / "experiments")
    assert "takd_fig4" in with_figure.targets and "takd_fig4" not in without.targets
    assert with_figure.runs == without.runs
    assert "takd/fashion_mnist/resnet110-resnet14/s0" in with_figure.targets["takd_fig4"].runs  # each TA, distilled


def test_figure_4_plots_each_tas_accuracy_against_its_depth_with_the_accuracy_midpoint(tmp_path, monkeypatch):
    """Written accuracies: teacher 80, student 60, the TA distilled from the teacher 50 + its depth, the student
    through it 70 + the TA's depth / 100."""
    import json

    from kdrepro.models import model_info

    monkeypatch.chdir(tmp_path)
    registry = build_registry(setting("config"))
    figure = registry.targets["takd_fig4"]
    for run in figure.runs:
        chain = run.split("/")[2].split("-")
        depth = model_info(chain[1])["depth"] if len(chain) > 1 else 0
        accuracy = {1: 80.0 if chain[0] in ("plane10", "resnet110") else 60.0, 2: 50.0 + depth, 3: 70.0 + depth / 100}[len(chain)]
        registry.run_dir(run).mkdir(parents=True)
        (registry.run_dir(run) / "metrics.json").write_text(json.dumps({"best_test_acc": accuracy}))
    figure.render()
    frame = pd.read_csv(tmp_path / "results/default/tables/takd_fig4.csv")
    assert list(frame.assistant) == ["plane8", "plane6", "plane4", "resnet56", "resnet44", "resnet32", "resnet26", "resnet20", "resnet14"]
    assert (frame.ta_mean == 50.0 + frame.depth).all() and (frame.student_through_ta_mean == 70.0 + frame.depth / 100).all()
    assert (frame.accuracy_midpoint == 70.0).all()
    assert frame.size_midpoint.tolist() == [6.0] * 3 + [59.0] * 6  # (10 + 2) / 2 and (110 + 8) / 2 layers
    assert (tmp_path / "figures/default/takd_fig4.png").stat().st_size > 0


@pytest.mark.workflow
@pytest.mark.slow
def test_smoke_run_of_the_takd_targets(smoke_dag):
    wd = smoke_dag
    tables = wd / "results/smoke/tables"
    table2 = pd.read_csv(tables / "takd_table2.csv")
    ours = table2[table2.dataset == "fashion_mnist"]
    assert len(ours) == 3 and ours.ours_mean.between(0, 100).all() and (ours.n_seeds == 1).all()
    # the paper's CIFAR rows are shown beside ours, marked as not run in this setting
    cifar = table2[table2.dataset == "cifar10"]
    assert cifar.paper.tolist() == [72.75, 73.15, 73.51] and cifar.ours.str.startswith("not run").all()
    table1 = (tables / "takd_table1.md").read_text()
    assert "imagenet" in table1 and "best test accuracy" in table1
    for fig in ("takd_fig2", "takd_fig3", "takd_fig4", "takd_paths"):
        assert (wd / f"figures/smoke/{fig}.png").stat().st_size > 10_000
        assert (wd / f"figures/smoke/{fig}.pdf").exists()
    paths = pd.read_csv(tables / "takd_paths.csv")
    assert len(paths) == 8  # every path 10 -> subsets of {8, 6, 4} -> 2
    assert pd.read_csv(tables / "takd_fig4.csv").ta_mean.between(0, 100).all()  # every TA of Tables 2 and 3 trained
    claims = (wd / "results/smoke/claims.md").read_text()
    assert "TAKD beats BLKD" in claims and "longer distillation paths" in claims
