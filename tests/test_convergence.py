"""The convergence check: each distinct scratch run against the same run trained longer."""

import json

import pandas as pd

from kdrepro.experiments import Registry
from kdrepro.graph import LABELS, Data, Edge, Node, RunSpec
from kdrepro.report.convergence import checked_runs, convergence_target

CONFIG = {"setting": "unit", "description": "a unit test", "report": "paper", "seeds": [0, 1], "datasets": ["fashion_mnist"]}
OPTIONS = {"factor": 2, "threshold": 1.0}


def run(name: str, arch: str, *, epochs: int = 2, edges=None, teacher: str | None = None) -> RunSpec:
    nodes = (Node("student", arch),)
    if teacher:
        nodes = (Node("teacher", "plane4", frozen_from=teacher), *nodes)
    return RunSpec(name, Data("fashion_mnist", test_subset=1000), nodes, edges or (Edge(LABELS, "student", "ce"),),
                   epochs=epochs, seed=int(name.rsplit("/s", 1)[1]))


def finish(registry: Registry, name: str, best: float, **extra) -> None:
    registry.run_dir(name).mkdir(parents=True, exist_ok=True)
    (registry.run_dir(name) / "metrics.json").write_text(json.dumps({"best_test_acc": best, "final_test_acc": best, **extra}))


def demo_registry() -> Registry:
    reg = Registry(CONFIG, experiments={"demo": {"paper": "Demo et al.", "report": "best_test"}})
    for seed in (1, 0):
        reg.add_runs({f"demo/plane2/s{seed}": run(f"demo/plane2/s{seed}", "plane2"),
                      f"demo/plane4/s{seed}": run(f"demo/plane4/s{seed}", "plane4"),
                      f"demo/plane6/s{seed}": run(f"demo/plane6/s{seed}", "plane6"),
                      f"demo/plane2-long/s{seed}": run(f"demo/plane2-long/s{seed}", "plane2", epochs=5),
                      f"demo/kd/s{seed}": run(f"demo/kd/s{seed}", "plane2", teacher=f"demo/plane4/s{seed}",
                                              edges=(Edge("teacher", "student", "kd"),)),
                      f"demo/lsr/s{seed}": run(f"demo/lsr/s{seed}", "plane2", edges=(Edge(LABELS, "student", "label_smoothing"),))})
    return reg


def test_each_recipe_of_plain_cross_entropy_is_checked_once_on_its_first_seed():
    assert checked_runs(demo_registry()) == ["demo/plane2-long/s0", "demo/plane2/s0", "demo/plane4/s0", "demo/plane6/s0"]


def test_the_longer_run_is_the_same_run_with_its_epochs_multiplied_and_no_snapshots():
    reg = demo_registry()
    convergence_target(reg, OPTIONS)
    longer = reg.runs["convergence/demo/plane2-long/x2/s0"]
    base = reg.runs["demo/plane2-long/s0"]
    assert longer.epochs == 10 and longer.save_epochs == () and longer.seed == 0
    assert longer.nodes == base.nodes and longer.edges == base.edges and longer.schedule == base.schedule
    assert not any(name.startswith("convergence/demo/kd") or name.startswith("convergence/demo/lsr") for name in reg.runs)


def test_the_table_calls_a_change_under_the_threshold_converged(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    reg = demo_registry()
    target = convergence_target(reg, OPTIONS)
    assert sorted(target.runs) == sorted([*checked_runs(reg), *(f"convergence/{r.rsplit('/', 1)[0]}/x2/s0" for r in checked_runs(reg))])
    finish(reg, "demo/plane2/s0", 80.0)
    finish(reg, "convergence/demo/plane2/x2/s0", 80.9)
    finish(reg, "demo/plane4/s0", 80.0)
    finish(reg, "convergence/demo/plane4/x2/s0", 83.5)
    finish(reg, "demo/plane6/s0", 10.0, trained=False, not_trained_because="near chance")
    finish(reg, "convergence/demo/plane6/x2/s0", 70.0)
    finish(reg, "demo/plane2-long/s0", 75.0)  # its longer run has not finished
    target.render()
    frame = pd.read_csv("results/unit/tables/convergence_table.csv").set_index("run")
    assert frame.loc["demo/plane2/s0", "verdict"] == "converged" and frame.loc["demo/plane2/s0", "change"] == "+0.90"
    assert frame.loc["demo/plane4/s0", "verdict"] == "not converged" and frame.loc["demo/plane4/s0", "change"] == "+3.50"
    assert frame.loc["demo/plane6/s0", "verdict"] == "did not train"
    assert frame.loc["demo/plane2-long/s0", "verdict"] == "missing"
    assert frame.loc["demo/plane2/s0", "epochs x2"] == 4 and frame.loc["demo/plane2/s0", "test images"] == 1000
    caption = open("results/unit/tables/convergence_table.md").read()
    assert "1 converged" in caption and "1 not converged" in caption and "demo/plane6/s0 (near chance)" in caption
