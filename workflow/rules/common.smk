# The run registry and the paths every rule shares. All logic lives in src/kdrepro.
import gc
import json
import os

from kdrepro.cluster import (
    estimate_minutes,
    mem_mb as run_mem_mb,
    plan as cluster_plan,
    runtime_limit,
    uses_gpu,
)
from kdrepro.assemble import build_registry
from kdrepro.data.folders import without_roots
from kdrepro.teachers import without_paths as without_teacher_paths

# Snakemake, pandas and the package have made some 10^5 objects by now, which live as long as the process; Python's
# cycle collector would walk all of them again on each full collection that building the registry and the DAG sets
# off, and once more as the process exits (together 0.4-0.6 s of CPU in a dry-run of the default setting, 0.7-1.1 s
# in the paper setting's: docs/benchmarks.md, issue 18). Frozen, they are left out of every later collection.
gc.freeze()
REGISTRY = build_registry(config)
SETTING = REGISTRY.setting
RESULTS = str(REGISTRY.results_dir)
# How runs compute, not what they are (outside the config hash): bf16 autocast, torch.compile, the
# CPU instruction set the kernels are pinned to (kdrepro.kernels); and the setting's plugins, the
# modules whose losses the specs may name
SPEED_FLAGS = (
    f"--precision {config['precision']}"
    + (f" --compile {config['compile']}" if config["compile"] else "")
    + (f" --cpu-isa {config['cpu_isa']}" if config["cpu_isa"] else "")
    + "".join(f" --plugin {module}" for module in config["plugins"])
    + (" --server" if config["train_server"] else "")
)


wildcard_constraints:
    run=r"[A-Za-z0-9_.=+-]+(/[A-Za-z0-9_.=+-]+)*",


def run_file(run, name):
    return f"{RESULTS}/runs/{run}/{name}"


def dependency_checkpoints(wildcards):
    """The checkpoints of the runs whose networks this run loads (teachers, initialisations)."""
    return [
        run_file(dep, "checkpoint.pt")
        for dep in REGISTRY.spec(wildcards.run).dependencies
    ]


def run_spec_json(wildcards):
    return REGISTRY.spec(wildcards.run).to_json()


# -- cluster resources and job groups of training jobs; the sizing lives in src/kdrepro/cluster.py
TRAIN_PLAN = cluster_plan(REGISTRY.runs, config["device"])
# Each bundle of short runs is one job group; Snakemake looks --group-components up by a
# group's parent name (as it does for wildcard groups), so all bundles are registered under
# "train" and `group-components: [train=10]` in profiles/slurm makes each bundle one cluster job.
workflow.parent_groupids.update(
    {plan["group"]: "train" for plan in TRAIN_PLAN.values() if plan["group"]}
)


def train_device_resources():
    """GPU setting: one GPU, threads_per_job CPUs with it. CPU setting: no GPU, and an empty
    gpu_model so that the GPU type set in profiles/slurm is not requested."""
    if uses_gpu(config["device"]):
        return {"gpu": 1, "cpus_per_gpu": config["threads_per_job"]}
    return {"gpu": 0, "gpu_model": ""}


def train_plan(run):
    """The run's estimate and bundle; a run that a search's result added after the plan was made is
    a cluster job of its own."""
    if run in TRAIN_PLAN:
        return TRAIN_PLAN[run]
    minutes = estimate_minutes(REGISTRY.spec(run), config["device"])
    return {"minutes": minutes, "level": 0, "group": None}


def train_runtime(wildcards, attempt):
    """SLURM time limit (minutes) from the run's estimate; doubles on each retry."""
    return runtime_limit(train_plan(wildcards.run)["minutes"], attempt)


def train_mem_mb(wildcards, attempt):
    return run_mem_mb(REGISTRY.spec(wildcards.run), config["device"], attempt)


def train_group(wildcards):
    """The bundle of short runs this run belongs to (None: a cluster job of its own)."""
    return train_plan(wildcards.run)["group"]


def static_runs(target):
    """The runs a target lists as inputs from the start, that is all but those built from a
    search's best.json, which come from the search's checkpoint (deferred_metrics in
    search_common.smk)."""
    return [run for run in target.runs if run not in REGISTRY.searched]


def all_outputs():
    return [path for target in REGISTRY.targets.values() for path in target.outputs]


def in_report(target, path):
    """`snakemake --report` shows each table as HTML, each figure as PNG and the claims report; only
    what is built, so that a report of the targets built so far works (Snakemake refuses missing files).
    """
    shown = path.endswith((".html", ".png")) or target.kind == "claims"
    return shown and os.path.exists(path)
