"""The Snakemake workflow: dry-runs, lint, format, bad-config rejection and a real smoke run."""

import re
import shutil
import subprocess
import sys

import pytest

from conftest import REPO, copy_workflow, setting, snakemake
from kdrepro.assemble import build_registry

pytestmark = pytest.mark.workflow


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    return copy_workflow(tmp_path_factory.mktemp("wf"))


@pytest.mark.parametrize("configfile", ["config/config.yaml", "config/paper.yaml", "config/fmnist-full.yaml", "config/cpu.yaml"])
def test_dry_run_builds_the_whole_dag(workdir, configfile):
    out = snakemake(workdir, "-n", "--configfile", configfile, "--workflow-profile", "none").stdout
    for rule in ("train", "takd_table1", "takd_table2", "takd_table3", "takd_fig2", "takd_fig3", "takd_fig4", "takd_paths", "claims"):
        assert rule in out
    if configfile == "config/cpu.yaml":
        assert "convergence_table" in out


def test_a_dry_run_with_takd_hyper_search_plans_a_search_per_kd_link(workdir):
    """Every KD link's search is in the DAG at once, those whose teacher another search chooses included
    (they wait on its checkpoint); the runs trained with the chosen values come after the checkpoints."""
    search = {"trials": 2, "validation": 100}
    (workdir / "takd_search.yaml").write_text(f"takd:\n  hyper_search: {search}\n")
    out = snakemake(workdir, "-n", "--configfile", "config/smoke.yaml", "takd_search.yaml").stdout
    planned = set(re.findall(r"search/(takd_\w+)/worker0\.done", out))
    registry = build_registry(setting("smoke", takd={"hyper_search": search}))
    assert planned == {name for name in registry.searches if name.startswith("takd_")}
    assert "takd_fashion_mnist_plane10_plane8_plane6_plane4_plane2" in planned


def test_lint_is_clean(workdir):
    proc = snakemake(workdir, "--lint", check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_snakefmt_is_clean():
    proc = subprocess.run([sys.executable, "-m", "snakefmt", "--check", "Snakefile", "workflow/"], cwd=REPO, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr


def test_target_rules_are_listed(workdir):
    out = snakemake(workdir, "--list-target-rules").stdout.split()
    assert {"all", "takd", "takd_table1", "takd_table2", "takd_table3", "takd_fig2", "takd_fig3", "takd_fig4", "takd_paths",
            "claims", "claims_fig"} <= set(out)
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


def test_a_report_of_the_targets_built_so_far_shows_tables_as_html(tmp_path):
    # the committed default results, less one table: `snakemake --report` used to refuse any missing target
    wd = copy_workflow(tmp_path / "wf")
    shutil.copytree(REPO / "results/default/tables", wd / "results/default/tables")
    shutil.copytree(REPO / "figures/default", wd / "figures/default")
    for path in (wd / "results/default/tables").glob("takd_table1.*"):
        path.unlink()
    snakemake(wd, "--report", "report.html")
    report = (wd / "report.html").read_text()
    assert "takd_table2.html" in report and "takd_fig2.png" in report
    assert "takd_table1.html" not in report and "takd_table2.csv" not in report


@pytest.mark.slow
def test_smoke_run_builds_the_report_and_leaves_nothing_to_do(smoke_dag):
    # each paper's test checks its own tables, figures and claims of this run (test_takd.py, test_tfkd.py, ...)
    wd = smoke_dag
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
    # precision, compile, the CPU instruction set and the warm trainer are settings; the train rule hands them to
    # `kdrepro train` (fp32, no compile; the default setting pins avx2 and uses the warm trainer)
    def train_commands(*config):
        run = "results/default/runs/takd/fashion_mnist/plane2/s0/metrics.json"
        out = snakemake(workdir, "-n", "-p", run, *config, "--workflow-profile", "none").stdout
        return [line for line in out.splitlines() if "kdrepro train --spec-json" in line]

    plain = train_commands()
    assert plain and all("--precision fp32 --cpu-isa avx2 --server --threads" in line for line in plain)
    fast = train_commands("--config", "precision=bf16", "compile=reduce-overhead")
    assert fast and all("--precision bf16 --compile reduce-overhead --cpu-isa avx2 --server --threads" in line for line in fast)
    own_process = train_commands("--config", "train_server=False")
    assert own_process and all("--cpu-isa avx2 --threads" in line for line in own_process)
