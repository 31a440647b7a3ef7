"""The Snakemake workflow: dry-runs, lint, format, bad-config rejection and a real smoke run."""

import subprocess
import sys

import pandas as pd
import pytest

from conftest import REPO, copy_workflow, snakemake

pytestmark = pytest.mark.workflow


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    return copy_workflow(tmp_path_factory.mktemp("wf"))


@pytest.mark.parametrize("configfile", ["config/config.yaml", "config/paper.yaml", "config/fmnist-full.yaml"])
def test_dry_run_builds_the_whole_dag(workdir, configfile):
    out = snakemake(workdir, "-n", "--configfile", configfile, "--workflow-profile", "none").stdout
    for rule in ("train", "takd_table1", "takd_table2", "takd_table3", "takd_fig2", "takd_fig3", "takd_paths", "claims"):
        assert rule in out


def test_lint_is_clean(workdir):
    proc = snakemake(workdir, "--lint", check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_snakefmt_is_clean():
    proc = subprocess.run([sys.executable, "-m", "snakefmt", "--check", "Snakefile", "workflow/"], cwd=REPO, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr


def test_target_rules_are_listed(workdir):
    out = snakemake(workdir, "--list-target-rules").stdout.split()
    assert {"all", "takd", "takd_table1", "takd_table2", "takd_table3", "takd_fig2", "takd_fig3", "takd_paths", "claims"} <= set(out)
    assert {"tfkd", "tfkd_table_rekd", "tfkd_table_dekd", "tfkd_table_self", "tfkd_table_reg", "tfkd_fig_dekd", "tfkd_fig_curves"} <= set(out)
    assert {"fitnets", "fitnets_table1", "fitnets_table5", "fitnets_table_aflw", "fitnets_fig3", "ktg", "ktg_table1", "ktg_table2",
            "ktg_fig_graphs", "ktg_fig_search", "cckd", "cckd_table1", "cckd_ablation_kernel", "cckd_ablation_order",
            "cckd_ablation_sampler"} <= set(out)


@pytest.mark.parametrize(
    "override,key",
    [("takd={'epochs': -1}", "takd.epochs"), ("setting=a/b", "setting"), ("datasets=['imagenet']", "datasets")],
)
def test_bad_config_is_rejected_before_any_job(workdir, override, key):
    proc = snakemake(workdir, "-n", "--config", override, check=False)
    assert proc.returncode != 0
    assert key in proc.stdout + proc.stderr
    assert "train" not in proc.stdout


def test_values_that_do_not_fit_the_dataset_are_rejected_before_any_job(workdir):
    # a valid number, but more images than Fashion-MNIST has: a dry run used to plan every job, which then failed
    (workdir / "too_many.yaml").write_text("data: {train_subset: 70000}\n")
    proc = snakemake(workdir, "-n", "--configfile", "config/smoke.yaml", "too_many.yaml", check=False)
    assert proc.returncode != 0 and "rule train" not in proc.stdout and "Job stats" not in proc.stdout
    assert "config key data.train_subset: 70000 images asked for, but fashion_mnist has 60000" in proc.stdout + proc.stderr


@pytest.mark.slow
def test_smoke_run_builds_every_table_figure_and_the_report(smoke_dag):
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
    for fig in ("takd_fig2", "takd_fig3", "takd_paths"):
        assert (wd / f"figures/smoke/{fig}.png").stat().st_size > 10_000
        assert (wd / f"figures/smoke/{fig}.pdf").exists()
    paths = pd.read_csv(tables / "takd_paths.csv")
    assert len(paths) == 8  # every path 10 -> subsets of {8, 6, 4} -> 2
    claims = (wd / "results/smoke/claims.md").read_text()
    assert "TAKD beats BLKD" in claims and "longer distillation paths" in claims
    # Tf-KD: every table with the paper's CIFAR-100 values beside ours, both figures, its claims
    rekd = pd.read_csv(tables / "tfkd_table_rekd.csv")
    assert rekd[rekd.dataset == "fashion_mnist"].ours_mean.between(0, 100).all()
    assert rekd[rekd.dataset == "cifar100"].paper.notna().all()
    dekd = pd.read_csv(tables / "tfkd_table_dekd.csv")
    teachers = dekd[(dekd.dataset == "fashion_mnist") & (dekd.column == "Pt-Teacher")]
    assert teachers.ours_mean.between(0, 100).all()  # the poorly trained teachers' measured accuracy
    assert "resnet50 → resnet18" in (tables / "tfkd_table_self.md").read_text()  # substitutions in the captions
    for fig in ("tfkd_fig_dekd", "tfkd_fig_curves"):
        assert (wd / f"figures/smoke/{fig}.png").stat().st_size > 10_000
    assert "Re-KD improves the teacher" in claims and "Tf-KD_reg beats LSR" in claims
    snakemake(wd, "--configfile", "config/smoke.yaml", "--report", "report.html")
    assert (wd / "report.html").stat().st_size > 100_000
    # a second invocation has nothing to do: outputs are complete and not retrained
    assert "Nothing to be done" in snakemake(wd, "--configfile", "config/smoke.yaml", "-n").stdout


def test_a_configfile_replaces_the_default_setting_instead_of_merging_into_it(workdir):
    # config/config.yaml subsets the data and narrows the networks; the paper setting must not inherit that
    out = snakemake(workdir, "-n", "-p", "takd_table1", "--configfile", "config/paper.yaml", "--workflow-profile", "none").stdout
    specs = [line for line in out.splitlines() if "kdrepro train --spec-json" in line]
    assert specs and all('"train_subset": null' in spec and '"width"' not in spec for spec in specs)


def test_the_settings_fast_paths_reach_every_training_job(workdir):
    # precision and compile are settings; the train rule hands them to `kdrepro train` (off by default)
    def train_commands(*config):
        run = "results/default/runs/takd/fashion_mnist/plane2/s0/metrics.json"
        out = snakemake(workdir, "-n", "-p", run, *config, "--workflow-profile", "none").stdout
        return [line for line in out.splitlines() if "kdrepro train --spec-json" in line]

    plain = train_commands()
    assert plain and all("--precision fp32 --threads" in line for line in plain)
    fast = train_commands("--config", "precision=bf16", "compile=reduce-overhead")
    assert fast and all("--precision bf16 --compile reduce-overhead --threads" in line for line in fast)
