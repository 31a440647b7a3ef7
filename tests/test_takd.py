"""TAKD: chains of KD runs shared by every table, the two protocols, the loss hyper-parameters of the
experiment file (a setting may override them) or searched per KD link (takd.hyper_search), and the smoke
run's tables, figures and claims."""

import json
import shutil
from dataclasses import replace

import pandas as pd
import pytest
import yaml

from conftest import REPO, needs_fashion_mnist, setting
from kdrepro.assemble import assemble, build_registry
from kdrepro.config import ConfigError
from kdrepro.graph import SpecError
from kdrepro.search_space import Hyper, SearchError

SEARCH = {"trials": 2, "validation": 100}  # the takd.hyper_search of these tests


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


# -- takd.hyper_search ----------------------------------------------------------------------------------

def kd_links(registry, run: str) -> list[tuple[float, float]]:
    """(tau, lambda) of each KD link of a run's chain, the first teacher's first."""
    spec = registry.spec(run)
    if len(spec.nodes) == 1:
        return []
    kd = spec.edges[1]
    return kd_links(registry, spec.node("teacher").frozen_from) + [(kd.options["temperature"], kd.weight)]


def caption_line(path) -> str:
    return path.read_text().split("\n")[2]


def render_captions(registry, names) -> dict[str, str]:
    for name in names:
        registry.targets[name].render()
    return {name: caption_line(registry.results_dir / "tables" / f"{name}.md") for name in names}


def test_without_hyper_search_every_kd_run_has_the_fixed_values_and_the_captions_say_so(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # the rendered captions go to tmp_path/results
    config = setting("smoke", setting="takdunit")
    assert config["takd"]["hyper_search"] is None  # off by default
    registry, papers = assemble(config)
    assert not [s for s in registry.searches if s.startswith("takd")] and not registry.searched
    runs = [r for r in registry.runs if r.startswith("takd/")]
    assert all(len(r.split("/")) == 4 for r in runs)  # takd/<dataset>/<chain>/s<seed>: nothing chosen in the name
    assert {link for r in runs for link in kd_links(registry, r)} == {(5, 0.5)}
    for name, line in render_captions(registry, ["takd_table1", "takd_table3", "takd_fig3"]).items():
        assert "KD runs: tau 5, lambda 0.5 fixed" in line, name


def test_a_family_may_have_more_seeds_and_each_caption_and_claim_says_how_many(tmp_path, monkeypatch):
    """takd.seeds_by_family: the plain CNN's chains on seeds 0-2 while the ResNets keep the setting's one seed."""
    monkeypatch.chdir(tmp_path)
    registry, papers = assemble(setting("smoke", setting="takdunit", experiments=["takd"], takd={"seeds_by_family": {"plane": [0, 1, 2]}}))
    seeds = lambda prefix: sorted(registry.runs[r].seed for r in registry.runs if r.rsplit("/", 1)[0] == prefix)
    assert seeds("takd/fashion_mnist/plane10-plane4-plane2") == [0, 1, 2]
    assert seeds("takd/fashion_mnist/plane10") == [0, 1, 2]  # a chain's teacher runs on its student's seeds
    assert seeds("takd/fashion_mnist/resnet110-resnet8") == [0]
    captions = render_captions(registry, ["takd_table2", "takd_table1"])
    assert "mean ± std over 3 seed(s) (0, 1, 2)" in captions["takd_table2"]  # CNN cells only
    assert "mean ± std over 1 or 3 seeds per cell (0 / 0, 1, 2)" in captions["takd_table1"]  # both families
    for run in registry.runs:  # every run at 70%: each CNN claim pairs three seeds, each ResNet claim one
        registry.run_dir(run).mkdir(parents=True)
        (registry.run_dir(run) / "metrics.json").write_text(json.dumps({"best_test_acc": 70.0 + registry.runs[run].seed}))
    claims = {c.statement: c for c in papers["takd"].claims()}
    assert claims["the largest teacher is not the best teacher (plain CNN, S=plane2, fashion_mnist)"].n == 3
    assert claims["the largest teacher is not the best teacher (ResNet, S=resnet8, fashion_mnist)"].n == 1
    # a run no target reads (as KTG's candidates, pre-trained on the first seed only) does not count
    unread = "takd/fashion_mnist/plane2-candidate/s5"
    registry.runs[unread] = replace(registry.runs["takd/fashion_mnist/plane2/s0"], name=unread, seed=5)
    registry.targets["claims"].render()
    assert "; 1 or 3 seeds per cell (0 / 0, 1, 2)." in (registry.results_dir / "claims.md").read_text()
    with pytest.raises(SpecError, match="takd.seeds_by_family.vgg: no such family; known: plane, resnet"):
        assemble(setting("smoke", takd={"seeds_by_family": {"vgg": [0]}}))


def test_hyper_search_registers_a_search_per_kd_link_and_the_captions_say_so(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    fixed = build_registry(setting("smoke", setting="takdunit"))
    registry, papers = assemble(setting("smoke", setting="takdunit", takd={"hyper_search": SEARCH}))
    searches = {name: s for name, s in registry.searches.items() if name.startswith("takd")}
    # a search for every chain of two or more networks the targets read, and for each of its prefixes
    chains = {"-".join(r.split("/")[2].split("-")[:k]) for r in fixed.runs if r.startswith("takd/")
              for k in range(2, len(r.split("/")[2].split("-")) + 1)}
    assert set(searches) == {"takd_fashion_mnist_" + c.replace("-", "_") for c in chains}
    longest = searches["takd_fashion_mnist_plane10_plane8_plane6_plane4_plane2"]
    assert longest.after == ["takd_fashion_mnist_plane10_plane8", "takd_fashion_mnist_plane10_plane8_plane6",
                             "takd_fashion_mnist_plane10_plane8_plane6_plane4"]
    assert longest.readers == ["takd_paths"]  # and every setting-wide target (claims, runs)
    assert searches["takd_fashion_mnist_plane10_plane4_plane2"].readers == ["takd_fig4", "takd_paths", "takd_table1", "takd_table2"]
    # nothing is searched yet: the targets read the scratch runs only, which are today's
    takd_runs = {r for t in registry.targets.values() if t.paper == "takd" for r in t.runs}
    assert takd_runs and all(len(registry.runs[r].nodes) == 1 for r in takd_runs) and takd_runs <= set(fixed.runs)
    # the search of a first link distils from the scratch teacher; judged on held-out training images, never test
    first = searches["takd_fashion_mnist_plane10_plane2"]
    assert first.pretrained() == ["takd/fashion_mnist/plane10/s0"]
    trial = first.study.make_spec(Hyper(2.0, 0.3), 7, "trial")
    assert trial.data.validation == 100 and first.study.objective_key == "val_acc[student]"
    assert (trial.edges[1].options["temperature"], trial.edges[1].weight, trial.edges[0].weight) == (2.0, 0.3, 0.7)
    cckd_kd = "takd/fashion_mnist/resnet110-resnet20/s0"  # CCKD's KD cell is a TAKD run: it keeps the fixed values
    assert registry.runs[cckd_kd] == fixed.runs[cckd_kd] and kd_links(registry, cckd_kd) == [(5, 0.5)]
    note = "KD runs: tau/lambda searched per run (2 Optuna trials on a 100-image held-out split"
    for name, line in render_captions(registry, ["takd_table1", "takd_table3", "takd_fig3"]).items():
        assert note in line, name


def plant_best(registry, study: str, hyper: Hyper) -> None:
    path = registry.search_dir(study) / "best.json"
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps({"hyper": hyper.to_dict()}))


def test_runs_train_with_the_chosen_values_and_are_named_after_them(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    config = setting("smoke", setting="takdunit", seeds=[0, 1], takd={"hyper_search": SEARCH})
    registry = build_registry(config)
    search = registry.searches["takd_fashion_mnist_plane10_plane4_plane2"]
    with pytest.raises(SearchError, match="the run search takd_fashion_mnist_plane10_plane4 chooses, and that search has not finished"):
        search.pretrained()
    plant_best(registry, "takd_fashion_mnist_plane10_plane4", Hyper(2, 0.25))
    assert search.result_runs().refs == []  # its own link is still unknown
    plant_best(registry, "takd_fashion_mnist_plane10_plane4_plane2", Hyper(10, 0.9))
    refs = search.result_runs().refs
    assert refs == [f"takd/fashion_mnist/plane10-plane4-plane2/tau2_lam0.25+tau10_lam0.9/s{seed}" for seed in (0, 1)]
    assert kd_links(registry, refs[1]) == [(2, 0.25), (10, 0.9)]
    final = registry.spec(refs[1])
    assert final.data.validation == 0 and final.dependencies == ["takd/fashion_mnist/plane10-plane4/tau2_lam0.25/s1"]
    # the search's trials distil from the first seed's TA, chosen by the TA's search
    assert search.pretrained() == ["takd/fashion_mnist/plane10-plane4/tau2_lam0.25/s0"]
    # a registry built now lists them, marked as a search's result (the workflow takes them from its checkpoint)
    again = build_registry(config)
    assert set(refs) <= again.searched and set(refs) <= set(again.targets["takd_table2"].runs)


@pytest.mark.parametrize("search,key", [({"validation": 512}, "takd.hyper_search.validation"),
                                        ({"lambda": [0.5, 0.1]}, "takd.hyper_search.lambda"),
                                        ({"lambda_step": 0.07}, "takd.hyper_search.lambda_step"),
                                        ({"tau": []}, "takd.hyper_search.tau")])
def test_a_bad_hyper_search_is_rejected_naming_its_key(search, key):
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        setting("smoke", takd={"hyper_search": {**SEARCH, **search}})


@needs_fashion_mnist
def test_a_real_search_judges_its_trials_on_the_validation_split(tmp_path, monkeypatch):
    """Two TPE trials of two epochs on the smoke data: each trial's objective is its best validation
    accuracy over the epochs, the export names the best trial's values, and those name the final run."""
    import optuna
    import torch

    from kdrepro.engine import train_run
    from kdrepro.search import export, read_rows, run_worker, storage

    monkeypatch.chdir(tmp_path)
    torch.set_num_threads(1)
    config = setting("smoke", setting="takdunit", takd={"epochs": 2, "hyper_search": SEARCH})
    registry = build_registry(config)
    search = registry.searches["takd_fashion_mnist_plane10_plane2"]
    runs = registry.results_dir / "runs"
    for run in search.pretrained():
        train_run(registry.runs[run], runs / run, runs, progress=False)
    assert run_worker(search.study, 0, runs) == {"complete": 2}
    trials = optuna.load_study(study_name=search.study.name, storage=storage(search.study)).get_trials()
    for trial in trials:
        rows = read_rows(search.study.trial_dir(trial.number) / "epochs.csv")
        assert len(rows) == 2 and trial.value == max(row["val_acc[student]"] for row in rows)
        assert trial.user_attrs["hyper"]["temperature"] in config["takd"]["hyper_search"]["tau"]
    best = export(search.study)
    chosen = Hyper.from_dict(best["hyper"])
    assert best["best_value"] == max(t.value for t in trials)
    assert search.result_runs().refs == [f"takd/fashion_mnist/plane10-plane2/{chosen.tag}/s0"]


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

    from kdrepro.catalog import model_info

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


def test_the_ranking_claims_resample_seeds_and_read_the_ta_the_student_learns_from(tmp_path, monkeypatch):
    """Fabricated runs on three seeds: the largest teacher's student is the worst (its claim reproduces); the TA
    nearest the teacher/student accuracy midpoint is TA=4 when a TA's accuracy is that of the distilled TA
    (plane10-plane4), which also teaches the best student, while the size midpoint picks TA=6. A scratch plane4 far
    from the midpoint would point at another TA: the claim must not read it."""
    monkeypatch.chdir(tmp_path)
    registry, papers = assemble(setting("smoke", seeds=[0, 1, 2]))
    accuracy = {"plane10": 80.0, "plane2": 60.0, "plane10-plane8": 78.0, "plane10-plane6": 76.0, "plane10-plane4": 71.0,
                "plane4": 50.0, "plane10-plane4-plane2": 66.0, "plane10-plane2": 55.0}
    for run in registry.runs:
        if run.startswith("takd/fashion_mnist/plane"):
            chain, seed = run.split("/")[2], int(run.rsplit("/s", 1)[1])
            registry.run_dir(run).mkdir(parents=True)
            (registry.run_dir(run) / "metrics.json").write_text(json.dumps({"best_test_acc": accuracy.get(chain, 62.0) + 0.3 * seed}))
    claims = {c.statement: c for c in papers["takd"].claims()}
    largest = claims["the largest teacher is not the best teacher (plain CNN, S=plane2, fashion_mnist)"]
    assert largest.verdict == "reproduced" and largest.effect.kind == "ranking" and largest.effect.estimate == 1.0 and largest.n == 3
    midpoint = claims["the best TA sits near the accuracy midpoint, not the size midpoint (CNN, fashion_mnist)"]
    assert midpoint.verdict == "reproduced" and "the TA nearest the accuracy midpoint is TA=4" in midpoint.evidence
    resnet = claims["the largest teacher is not the best teacher (ResNet, S=resnet8, fashion_mnist)"]
    assert resnet.verdict == "inconclusive: missing runs"  # no ResNet run was fabricated


def test_the_paths_figure_renders_before_any_run_has_finished(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # no runs here
    registry = build_registry(setting("smoke"))
    registry.targets["takd_paths"].render()
    assert (tmp_path / "figures/smoke/takd_paths.png").stat().st_size > 0
