"""The convergence check: is the setting's training budget long enough for its networks?

A claim about distillation is only as good as the runs it compares: a student that stopped far from where
more epochs would take it measures the budget, not the method. So the check trains every distinct scratch
run of the setting (one network learning from the labels alone; one per network and recipe, on the first of
its seeds) again for `factor` times its epochs, its learning-rate schedule stretched alike (a run's
milestones are fractions of its epochs), and compares the two accuracies, each as its paper reports it.
A change under `threshold` points counts as converged. One seed: the same initialisation and the same first
epoch's batches, so the change is the longer budget's and not another draw's.
"""

from __future__ import annotations

import json
from dataclasses import replace
from typing import Any

import pandas as pd

from kdrepro.experiments import Registry, Target
from kdrepro.graph import LABELS, RunSpec
from kdrepro.report.results import Results
from kdrepro.report.tables import TableContent, frame_table

PREFIX = "convergence"
SCRATCH_LOSS = "ce"  # plain cross-entropy
CONVERGED, NOT_CONVERGED = "converged", "not converged"
LONGER = "accuracy x"  # the table's column of the longer runs' accuracy, followed by the factor


def factor_of(columns: list[str]) -> int:
    """The factor of a convergence table, from its columns."""
    return next(int(c[len(LONGER):]) for c in columns if c.startswith(LONGER))


def is_scratch(spec: RunSpec) -> bool:
    """One trainable network that starts from its own initialisation and learns by cross-entropy on the labels
    alone (label smoothing and Tf-KD's virtual teacher are methods, not the baseline)."""
    return (len(spec.nodes) == 1 and spec.nodes[0].trainable and not spec.nodes[0].init_from
            and all(edge.source == LABELS and edge.loss == SCRATCH_LOSS for edge in spec.edges))


def recipe_key(spec: RunSpec) -> str:
    """What a run is apart from its name and seed (runs of one recipe and other seeds share it)."""
    return json.dumps(replace(spec, name="", seed=0).to_dict(), sort_keys=True)


def longer_name(run: str, factor: int) -> str:
    """"takd/fashion_mnist/resnet8/s0" -> "convergence/takd/fashion_mnist/resnet8/x2/s0"."""
    prefix, _, seed = run.rpartition("/")
    return f"{PREFIX}/{prefix}/x{factor}/{seed}"


def checked_runs(registry: Registry) -> list[str]:
    """The scratch run of each recipe with the smallest seed (ties: the first name), in name order."""
    first: dict[str, str] = {}
    for name in sorted(registry.runs, key=lambda n: (registry.runs[n].seed, n)):
        spec = registry.runs[name]
        if is_scratch(spec) and not name.startswith(PREFIX + "/"):
            first.setdefault(recipe_key(spec), name)
    return sorted(first.values())


def convergence_target(registry: Registry, options: dict[str, Any]) -> Target:
    """Registers the longer runs and returns the table that sets them beside the setting's own."""
    factor, threshold = options["factor"], options["threshold"]
    pairs = []
    for run in checked_runs(registry):
        spec = registry.runs[run]
        longer = longer_name(run, factor)
        registry.add_runs({longer: replace(spec, name=longer, epochs=spec.epochs * factor, save_epochs=())})
        pairs.append((run, longer))

    def content() -> TableContent:
        records = []
        for run, longer in pairs:
            results = Results(registry, run.split("/", 1)[0])  # the accuracy as the run's own paper reports it
            base, more = results.stat([run]), results.stat([longer])
            spec = registry.runs[run]
            change = more.mean - base.mean if base.n and more.n else None
            if change is None:
                verdict = "missing"
            elif base.not_trained or more.not_trained:
                verdict = "did not train"
            else:
                verdict = CONVERGED if abs(change) < threshold else NOT_CONVERGED
            records.append({
                "run": run, "network": spec.nodes[0].arch, "epochs": spec.epochs, "accuracy": base.text(),
                f"epochs x{factor}": spec.epochs * factor, f"{LONGER}{factor}": more.text(),
                "change": "–" if change is None else f"{change:+.2f}", "verdict": verdict,
                "test images": base.test_images, "report": results.protocol_text, "longer run": longer,
            })
        frame = pd.DataFrame.from_records(records)
        counts = frame["verdict"].value_counts().to_dict() if records else {}
        text = (f"Convergence check of setting `{registry.setting}`: each scratch run (one network learning from the "
                f"labels, one per network and recipe, its first seed) against the same run trained {factor}x as long, "
                f"its learning-rate schedule stretched alike; converged = the accuracy changes by less than {threshold} "
                f"points. Each accuracy as the run's paper reports it (column report). "
                f"{registry.config.get('description', '')}. "
                + ", ".join(f"{count} {verdict}" for verdict, count in counts.items()) + ".")
        shown = ["run", "epochs", "accuracy", f"{LONGER}{factor}", "change", "verdict", "test images"]
        return TableContent(frame, text, shown)

    return frame_table(registry, "convergence_table", "all", [r for pair in pairs for r in pair], content)
