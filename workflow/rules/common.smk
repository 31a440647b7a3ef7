# The run registry and the paths every rule shares. All logic lives in src/kdrepro.
import json

from kdrepro.experiments import build_registry

REGISTRY = build_registry(config)
SETTING = REGISTRY.setting
RESULTS = str(REGISTRY.results_dir)


wildcard_constraints:
    run=r"[A-Za-z0-9_.=+-]+(/[A-Za-z0-9_.=+-]+)*",


def run_file(run, name):
    return f"{RESULTS}/runs/{run}/{name}"


def dependency_checkpoints(wildcards):
    """The checkpoints of the runs whose networks this run loads (teachers, initialisations)."""
    return [
        run_file(dep, "checkpoint.pt")
        for dep in REGISTRY.runs[wildcards.run].dependencies
    ]


def run_spec_json(wildcards):
    return REGISTRY.runs[wildcards.run].to_json()


def train_resources(wildcards):
    """One GPU per run on a GPU setting; nothing on CPU."""
    return 0 if config["device"] == "cpu" else 1


def all_outputs():
    return [path for target in REGISTRY.targets.values() for path in target.outputs]
