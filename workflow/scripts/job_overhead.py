"""Per-job time outside the training loop of a finished DAG, from its own files:

    python workflow/scripts/job_overhead.py results/default [more results dirs...]

For every run with a benchmark file (benchmarks/train/<run>.tsv: Snakemake's wall-clock of the job) and a
metrics.json (wall_seconds: the run's own time from its first epoch's start to its end), the job's time
outside the loop is the difference. For a run that loads no other run that is its start-up (starting Python,
importing torch, reading the data, building the network) and writing its outputs; a run with a frozen teacher
or an initialisation also loads them and passes its training and test images through the teacher once (its
cached logits, the teacher's accuracy) before its first epoch. Printed per results dir and per kind: the number
of runs, the median, the 90th percentile and the sum of that time, and the sum of the jobs' wall-clock.
"""

from __future__ import annotations

import csv
import json
import statistics
import sys
from pathlib import Path

from kdrepro.graph import RunSpec

KINDS = {False: "runs that load no other run", True: "runs with a frozen teacher or an initialisation"}


def overheads(results: Path) -> dict[bool, list[tuple[float, float]]]:
    """kind (loads another run?) -> [(job seconds, seconds outside the loop)]"""
    out: dict[bool, list[tuple[float, float]]] = {False: [], True: []}
    for bench in sorted((results / "benchmarks" / "train").rglob("*.tsv")):
        run_dir = results / "runs" / bench.relative_to(results / "benchmarks" / "train").with_suffix("")
        if not (run_dir / "metrics.json").exists():
            continue
        with open(bench) as handle:
            job_seconds = float(next(csv.DictReader(handle, delimiter="\t"))["s"])
        loads = bool(RunSpec.from_dict(json.loads((run_dir / "spec.json").read_text())).dependencies)
        out[loads].append((job_seconds, job_seconds - json.loads((run_dir / "metrics.json").read_text())["wall_seconds"]))
    return out


def main(dirs: list[str]) -> None:
    for name in dirs:
        kinds = overheads(Path(name))
        for kind, jobs in [*((KINDS[loads], jobs) for loads, jobs in kinds.items()), ("all runs", kinds[False] + kinds[True])]:
            if not jobs:
                continue
            outside = [o for _, o in jobs]
            decile = statistics.quantiles(outside, n=10)[-1] if len(outside) > 1 else outside[0]
            print(f"{name}, {kind}: {len(jobs)}; outside the loop: median {statistics.median(outside):.2f} s, "
                  f"90th percentile {decile:.2f} s, sum {sum(outside) / 60:.1f} min; jobs' wall-clock sum "
                  f"{sum(s for s, _ in jobs) / 60:.1f} min")


if __name__ == "__main__":
    main(sys.argv[1:] or ["results/default"])
