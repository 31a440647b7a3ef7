"""Cluster sizing (src/kdrepro/cluster.py): runtime estimates, limits, memory, job-group bundles."""

import pytest

from conftest import setting
from kdrepro import cluster
from kdrepro.assemble import build_registry
from kdrepro.graph import LABELS, Data, Edge, Node, RunSpec


def spec(name, arch, teacher=None, epochs=150, dataset="cifar10", subset=None, **data):
    nodes = [Node("student", arch)]
    edges = [Edge(LABELS, "student", "ce")]
    if teacher:
        nodes.insert(0, Node("teacher", teacher[1], frozen_from=teacher[0]))
        edges.append(Edge("teacher", "student", "kd", options={"temperature": 4.0}))
    return RunSpec(name=name, data=Data(dataset, train_subset=subset, **data), nodes=tuple(nodes), edges=tuple(edges),
                   epochs=epochs, seed=0)


def test_estimate_grows_with_depth_epochs_and_data():
    est = lambda s, d="cuda": cluster.estimate_minutes(s, d)  # noqa: E731
    assert est(spec("a", "resnet8")) < est(spec("b", "resnet56")) < est(spec("c", "resnet110"))
    assert est(spec("a", "plane2", epochs=10)) < est(spec("a", "plane2", epochs=150))
    assert est(spec("a", "plane10", subset=5000), "cpu") < est(spec("a", "plane10"), "cpu")
    # calibration point (docs/benchmarks.md): resnet56 -> resnet20 with augmentation, 6.59 s per H100 epoch
    bench = spec("b", "resnet20", teacher=("t", "resnet56"), epochs=1, crop_padding=4, flip=True)
    assert (est(bench) - cluster.STARTUP_MINUTES) * 60 == pytest.approx(6.59, rel=0.15)
    # without augmentation a frozen teacher costs one pass per run, not one per step
    assert est(spec("b", "resnet20", teacher=("t", "resnet56"))) < est(spec("b", "resnet20", teacher=("t", "resnet56"), flip=True))


def test_limits_and_memory():
    assert cluster.runtime_limit(10.0) == 30 and cluster.runtime_limit(10.0, attempt=2) == 60
    s = spec("a", "plane2")
    assert cluster.mem_mb(s, "cuda") > cluster.mem_mb(s, "cpu") >= 2000
    assert cluster.mem_mb(s, "cuda", attempt=2) == 2 * cluster.mem_mb(s, "cuda")
    assert cluster.uses_gpu("auto") and cluster.uses_gpu("cuda:1") and not cluster.uses_gpu("cpu")


def test_bundles_are_levels_of_at_least_the_target():
    minutes = {"t": 4.0, "s1": 3.0, "s2": 3.0, "s3": 3.0, "s4": 3.0, "s5": 3.0, "long": 30.0, "x": 2.0}
    run_levels = {"t": 0, "s1": 1, "s2": 1, "s3": 1, "s4": 1, "s5": 1, "long": 0, "x": 0}
    groups = cluster.bundles(minutes, run_levels, target=10.0)
    assert groups["long"] is None  # long runs are a cluster job of their own
    assert groups["t"] == groups["x"] == "train_l0_b0"  # the level's only bundle may stay short
    # 3 + 3 + 3 + 3 reaches 10 minutes: four runs in the first bundle, the fifth starts the next
    assert [groups[s] for s in ("s1", "s2", "s3", "s4", "s5")] == ["train_l1_b0"] * 4 + ["train_l1_b1"]


@pytest.fixture(scope="module")
def paper_plan():
    registry = build_registry(setting("paper"))
    return registry, cluster.plan(registry.runs, registry.config["device"])


def test_paper_setting_cluster_jobs_carry_ten_minutes(paper_plan):
    registry, plan = paper_plan
    bundles = {}
    for run, p in plan.items():
        if p["group"]:
            bundles.setdefault(p["group"], []).append(run)
        else:
            assert p["minutes"] >= cluster.BUNDLE_MINUTES
    for group, runs in bundles.items():
        level = {plan[r]["level"] for r in runs}
        assert len(level) == 1  # one level: no run of a bundle depends on another one of it
        assert not any(dep in runs for r in runs for dep in registry.runs[r].dependencies)
        assert len(runs) <= cluster.BUNDLE_MINUTES / cluster.STARTUP_MINUTES
    # apart from the last bundle of each level, every bundle carries at least the target
    short = [g for g, runs in bundles.items() if sum(plan[r]["minutes"] for r in runs) < cluster.BUNDLE_MINUTES]
    assert len(short) <= len({p["level"] for p in plan.values()})
    # the short runs (TAKD's plain CNNs and small ResNets on a GPU) need under half as many cluster jobs
    assert len(bundles) < sum(len(runs) for runs in bundles.values()) / 2


def test_levels_follow_dependencies(paper_plan):
    registry, plan = paper_plan
    for run, spec_ in registry.runs.items():
        for dep in spec_.dependencies:
            assert plan[run]["level"] > plan[dep]["level"]
