"""The workflow through a real single-node SLURM cluster (profiles/slurm, the official plugin).

The session fixture starts munged, slurmctld and slurmd with workflow/scripts/slurm_cluster.sh
(installing Debian's packages first if needed) and stops, by process id, the daemons it started.
The test is skipped only where those packages cannot be installed (offline, not root, no apt),
and says why. Deselect it with `-m "not slurm"`.
"""

import math
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from conftest import REPO, copy_workflow, needs_fashion_mnist

pytestmark = [pytest.mark.slurm, pytest.mark.workflow, pytest.mark.slow]

SCRIPT = REPO / "workflow/scripts/slurm_cluster.sh"
# one teacher -> assistant -> student chain (plane10 -> plane8 -> plane2 and two more assistants)
# and the table that reads it: 7 training runs on 3 levels of the DAG, bundled into a few cluster jobs
TARGET = "takd_table2"
CHAIN = ["plane10", "plane10-plane8", "plane10-plane8-plane2"]
TIMEOUT_S = 420  # every snakemake call is bounded (SIGINT: SIGTERM does not stop a waiting Snakemake)


def snakemake(cwd, *args, timeout=TIMEOUT_S):
    # the jobs call `kdrepro`: the environment running the tests comes first on their PATH
    # (sbatch --export=ALL hands it to the cluster jobs)
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    return subprocess.Popen(
        ["timeout", "-s", "INT", "-k", "30", str(timeout), sys.executable, "-m", "snakemake", *args],
        cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env,
    )


def finish(proc, what):
    out, _ = proc.communicate(timeout=TIMEOUT_S + 60)
    if proc.returncode != 0:
        raise AssertionError(f"{what} failed (rc {proc.returncode}):\n{out[-4000:]}")
    return out


def cluster_script(command, timeout):
    return subprocess.run(["bash", str(SCRIPT), command], capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="session")
def slurm_cluster():
    was_running = cluster_script("running", 30).returncode == 0
    up = cluster_script("up", 900)
    if up.returncode == 2:
        reason = f"SLURM packages cannot be installed here: {up.stderr.strip().splitlines()[-1:]}"
        print(reason)
        pytest.skip(reason)
    assert up.returncode == 0, f"slurm_cluster.sh up failed:\n{up.stdout}\n{up.stderr[-4000:]}"
    yield
    if not was_running:  # stop only what this session started
        down = cluster_script("down", 120)
        assert down.returncode == 0, down.stderr


def accuracies(wd):
    runs = wd / "results/smoke/runs"
    return {
        str(p.parent.relative_to(runs)): {k: v for k, v in yaml.safe_load(p.read_text()).items() if k.endswith("_acc")}
        for p in sorted(runs.rglob("metrics.json"))
    }


@needs_fashion_mnist
def test_smoke_chain_and_table_through_slurm_equal_a_local_run(slurm_cluster, smoke_dag, tmp_path):
    slurm_wd = copy_workflow(tmp_path / "slurm")
    local_wd = smoke_dag  # the local run of the whole smoke DAG
    # (targets before --configfile, which takes several values)
    cluster = snakemake(
        slurm_wd, TARGET, "--workflow-profile", "profiles/slurm", "--configfile", "config/smoke.yaml",
        # poll every 2 s instead of 40 + 10 s (slurm.conf keeps finished jobs 300 s for squeue)
        "--slurm-init-seconds-before-status-checks", "2", "--seconds-between-status-checks", "2",
    )
    out = finish(cluster, "snakemake through SLURM")

    # the training jobs went through SLURM: Snakemake logged their job ids, SLURM knows them as
    # completed, and the job logs sit under the group names of the bundles
    job_ids = re.findall(r"submitted with SLURM jobid (\d+)", out)
    # bundled: at least one cluster job per level of the chain (3), fewer than one per run (7);
    # where a level's runs fall across bundle boundaries depends on the other papers' runs
    assert 3 <= len(job_ids) < 7, out[-3000:]
    states = subprocess.run(["squeue", "-h", "--states=all", "-o", "%i %T", "-j", ",".join(job_ids)],
                            capture_output=True, text=True, timeout=30).stdout
    assert all(f"{i} COMPLETED" in states for i in job_ids), states
    logs = sorted((slurm_wd / ".snakemake/slurm_logs").rglob("*.log"))
    assert sorted(p.stem for p in logs) == sorted(job_ids)
    assert all(p.parent.name.startswith("group_train_l") for p in logs)
    main_log = max((slurm_wd / ".snakemake/log").glob("*.snakemake.log"), key=os.path.getmtime).read_text()
    assert all(f"SLURM jobid {i}" in main_log for i in job_ids)

    # same deterministic CPU code, same numbers
    ours, theirs = accuracies(slurm_wd), accuracies(local_wd)
    assert len(ours) == 7 and all(f"takd/fashion_mnist/{run}/s0" in ours for run in CHAIN)
    assert ours == {run: theirs[run] for run in ours}
    for name in ("takd_table2.csv", "takd_table2.md"):
        assert (slurm_wd / "results/smoke/tables" / name).read_text() == (local_wd / "results/smoke/tables" / name).read_text()


def test_paper_dry_run_through_the_slurm_profile_shows_resources_and_bundles(tmp_path):
    wd = copy_workflow(tmp_path)
    proc = snakemake(wd, "-n", "--workflow-profile", "profiles/slurm", "--configfile", "config/paper.yaml", timeout=120)
    out = finish(proc, "dry-run")
    train = [line for line in out.splitlines() if "train_slot=1" in line]
    assert train, out[-3000:]
    for line in train:  # every training job: one GPU, its CPUs, memory, a time limit, the partition
        for key in ("gpu=1", "cpus_per_gpu=", "mem_mb=", "runtime=", "slurm_partition=", "slurm_account="):
            assert key in line, line
    assert re.search(r"Group job train_l\d+_b\d+", out)


def test_the_profile_keeps_every_bundle_in_one_cluster_job():
    profile = yaml.safe_load((REPO / "profiles/slurm/profile.yaml").read_text())
    assert profile["executor"] == "slurm" and profile["slurm-status-command"] == "squeue"
    assert {"slurm_partition", "slurm_account", "gpu_model"} <= set(profile["default-resources"])
    n = dict(item.split("=") for item in profile["group-components"])["train"]
    from kdrepro import cluster

    # a bundle closes once its estimates reach BUNDLE_MINUTES, and no estimate is under STARTUP_MINUTES
    assert int(n) >= math.ceil(cluster.BUNDLE_MINUTES / cluster.STARTUP_MINUTES)
    assert profile["set-resource-scopes"] == ["train_slot=local"] and profile["resources"] == ["train_slot=1"]
