"""An evaluation run: a spec whose nodes are all frozen (an external teacher) trains nothing; its eval_node's
test accuracy is measured on the run's data and written as a trained run's outputs are (checkpoint.pt, the
node's weights as loaded; epochs.csv, one row for epoch 0; metrics.json), so tables read it like any run."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from kdrepro.engine.records import rows_to_csv, summarise
from kdrepro.engine.train import accuracy, build_models, claimed, fresh_state, load_data, write_outputs
from kdrepro.graph import RunSpec


def evaluate_run(spec: RunSpec, run_dir: Path, runs_root: Path, *, device: str = "cpu", setting: str = "") -> dict[str, Any]:
    """Measure `spec`'s eval_node (spec.evaluation: every node frozen); return the metrics. A finished run of the
    same configuration is returned as it is, one of another is never overwritten (as train_run does)."""
    with claimed(spec, run_dir) as finished:
        if finished is not None:
            return finished
        data = load_data(spec, device)
        models = build_models(spec, data, runs_root, device)
        started = time.perf_counter()
        row = {"epoch": 0, f"test_acc[{spec.eval_node}]": accuracy(models[spec.eval_node], data, "test")}
        row["seconds"] = time.perf_counter() - started
        state = fresh_state() | {"rows": [row], "wall": row["seconds"]}
        metrics = summarise(spec, state, {}, models, data, setting, device) | {"precision": "fp32", "compile": None}
        write_outputs(spec, run_dir, models, state, metrics, data.num_classes)
        return metrics
