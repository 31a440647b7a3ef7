"""results/<setting>/runs.csv: every finished run of the setting, what it measured and what produced it.

It is committed with the tables, so a reader can check any committed number: check out the run's
`source_commit`, train the run by name under the same `cpu_isa` (the kernels' instruction set), and compare
its accuracies and its last epoch's mean loss with this file, digit for digit
(tests/test_provenance.py does this for the cheapest runs of every committed setting).
"""

from __future__ import annotations

import csv

import pandas as pd

from kdrepro.experiments import Registry, Target
from kdrepro.io import save_text
from kdrepro.report.results import read_metrics

# metrics.json keys copied as they are; a protocol's key that a run lacks (no validation split) stays empty
METRICS = ["trained", "not_trained_because", "best_test_acc", "final_test_acc", "test_acc_at_best_val", "best_epoch",
           "epochs", "config_hash", "source_commit", "torch_version", "wall_seconds"]
KERNELS = ["cpu_isa", "cpu_capability"]


def last_loss(epochs_csv) -> str:
    """The last epoch's mean training loss as the run wrote it (the text, so no digit is lost); empty for an
    evaluation run (an external teacher's), which trained nothing."""
    with open(epochs_csv, newline="") as handle:
        return list(csv.DictReader(handle))[-1].get("loss", "")


def run_row(registry: Registry, run: str) -> dict | None:
    metrics = read_metrics(registry, run)
    if metrics is None:
        return None
    kernels = metrics.get("kernels", {})
    return ({"run": run} | {key: metrics.get(key) for key in METRICS} | {key: kernels.get(key) for key in KERNELS}
            | {"final_loss": last_loss(registry.run_dir(run) / "epochs.csv")})


def runs_target(registry: Registry) -> Target:
    """The index of every run the setting registers (with the runs of finished searches), finished ones only."""
    path = registry.results_dir / "runs.csv"

    def render() -> None:
        rows = [row for row in (run_row(registry, run) for run in sorted(registry.runs)) if row is not None]
        if not rows:
            raise FileNotFoundError(f"no finished run under {registry.results_dir / 'runs'}")
        save_text(pd.DataFrame(rows).to_csv(index=False), path)

    return Target("runs", "all", "index", sorted(registry.runs), [str(path)], render)
