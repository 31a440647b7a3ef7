"""What a run records besides its weights: metrics.json (with the check that the run trained), the rows of
epochs.csv, and its progress, as a bar on a terminal or a line per epoch in a log."""

from __future__ import annotations

import csv
import io
import math
import sys
from typing import Any

import torch

import kdrepro
from kdrepro import kernels
from kdrepro.provenance import source_commit
from kdrepro.data.meta import chance_level
from kdrepro.graph import LABELS, RunSpec

# A run did not train if an epoch's mean loss is LOSS_GROWTH times its lowest of an earlier epoch or more
# (diverging), or if its best test accuracy stays at chance (kdrepro.data.meta.chance_level).
LOSS_GROWTH = 100.0


def summarise(spec, state, frozen_acc, models, data, setting, device) -> dict[str, Any]:
    """metrics.json of a finished run; `trained` false (and the log says why) if it did not train."""
    rows = state["rows"]
    key = f"test_acc[{spec.eval_node}]"
    best = max(tested(rows, key), key=lambda r: r[key])
    metrics: dict[str, Any] = {
        "run": spec.name,
        "setting": setting,
        "dataset": spec.data.dataset,
        "seed": spec.seed,
        "epochs": spec.epochs,
        "eval_node": spec.eval_node,
        "final_test_acc": rows[-1][key],
        "best_test_acc": best[key],
        "best_epoch": best["epoch"],
        "node_test_acc": {k[9:-1]: v for k, v in rows[-1].items() if k.startswith("test_acc[")} | frozen_acc,
        "params": {n.name: sum(p.numel() for p in models[n.name].parameters()) for n in spec.nodes},
        "snapshot_test_acc": {str(k): v for k, v in state["snapshots"].items()},
        "wall_seconds": state["wall"],
        "device": device,
        "package_version": kdrepro.__version__,
        "torch_version": torch.__version__,
        "kernels": kernels.in_use(),
        "config_hash": spec.config_hash,
        "source_commit": source_commit(),
    }
    problem = training_problem(spec, rows, data.num_classes, data.n_test)
    metrics["trained"] = problem is None
    if problem is not None:
        metrics["not_trained_because"] = problem
        print(f"[kdrepro] run {spec.name} did not train: {problem}", file=sys.stderr)
    val_key = f"val_acc[{spec.eval_node}]"
    if val_key in rows[-1]:
        best_val = max(rows, key=lambda r: r[val_key])
        metrics.update(best_val_acc=best_val[val_key], test_acc_at_best_val=best_val[key], best_val_epoch=best_val["epoch"])
    return metrics


def tested(rows: list[dict[str, Any]], key: str) -> list[dict[str, Any]]:
    """The epochs after which the test split was evaluated (RunSpec.test_every); the last always is."""
    return [row for row in rows if not math.isnan(row[key])]


def training_problem(spec: RunSpec, rows: list[dict[str, Any]], num_classes: int, n_test: int) -> str | None:
    """Why a finished run did not train, or None: its mean loss grew LOSS_GROWTH-fold or more over its
    lowest of an earlier epoch (diverged; a loss that exploded in the first epoch leaves the accuracy at
    chance), or the best test accuracy of its evaluated node stayed at chance over all its epochs. A node
    that no label edge reaches (FitNets' hint stage) is not judged on its accuracy, nor is an evaluation run's
    (it trained nothing)."""
    if spec.evaluation:
        return None
    losses = [row["loss"] for row in rows]
    for i in range(1, len(losses)):
        lowest = min(losses[:i])
        if lowest > 0 and losses[i] >= LOSS_GROWTH * lowest:
            return f"its loss grew from {lowest:.3g} to {losses[i]:.3g} at epoch {rows[i]['epoch']} (diverged)"
    if not any(e.source == LABELS and e.target == spec.eval_node for e in spec.edges):
        return None
    chance, margin = chance_level(num_classes, n_test)
    key = f"test_acc[{spec.eval_node}]"
    best = max(row[key] for row in tested(rows, key))
    if best > chance + margin:
        return None
    return (f"its best test accuracy over {len(rows)} epoch(s), {best:.2f}%, is chance level ({chance:.2f}% "
            f"+ {margin:.2f} for {n_test} test images); last loss {losses[-1]:.3g}")


def rows_to_csv(rows: list[dict[str, Any]]) -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(rows[0]), lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return buffer.getvalue()


class Progress:
    """A tqdm bar on a terminal; one line per epoch in a log file."""

    def __init__(self, spec: RunSpec, done: int, enabled: bool | None):
        from tqdm import tqdm

        self.interactive = sys.stderr.isatty() if enabled is None else enabled
        self.bar = tqdm(total=spec.epochs, initial=done, desc=spec.name, unit="epoch", disable=not self.interactive)
        self.epochs = spec.epochs

    def update(self, row: dict[str, Any], node: str) -> None:
        acc = row[f"test_acc[{node}]"]
        acc_text = "–" if math.isnan(acc) else f"{acc:.2f}"  # not evaluated after this epoch (RunSpec.test_every)
        if self.interactive:
            self.bar.set_postfix(loss=f"{row['loss']:.3f}", acc=acc_text)
            self.bar.update()
        else:
            print(f"epoch {row['epoch']}/{self.epochs} loss {row['loss']:.4f} test_acc {acc_text} "
                  f"({row['seconds']:.1f}s)", file=sys.stderr, flush=True)

    def close(self) -> None:
        self.bar.close()
