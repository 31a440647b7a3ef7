"""Per-job time outside the training loop of a finished DAG, from its own files:

    python workflow/scripts/job_overhead.py results/default [more results dirs...]

For every run with a benchmark file (benchmarks/train/<run>.tsv: Snakemake's wall-clock of the job) and a
metrics.json (wall_seconds: the run's own time from its first epoch's start to its end), the job's time
outside the loop is the difference: starting Python, importing torch, reading the data, building the
networks, writing the outputs. Printed per results dir: the number of runs, the median, the 90th
percentile and the sum of that time, and the sum of the jobs' wall-clock.
"""

from __future__ import annotations

import csv
import json
import statistics
import sys
from pathlib import Path


def overheads(results: Path) -> tuple[list[float], float]:
    outside, total = [], 0.0
    for bench in sorted((results / "benchmarks" / "train").rglob("*.tsv")):
        run = bench.relative_to(results / "benchmarks" / "train").with_suffix("")
        metrics = results / "runs" / run / "metrics.json"
        if not metrics.exists():
            continue
        with open(bench) as handle:
            job_seconds = float(next(csv.DictReader(handle, delimiter="\t"))["s"])
        outside.append(job_seconds - json.loads(metrics.read_text())["wall_seconds"])
        total += job_seconds
    return outside, total


def main(dirs: list[str]) -> None:
    for name in dirs:
        outside, total = overheads(Path(name))
        if not outside:
            print(f"{name}: no run with both a benchmark file and metrics.json")
            continue
        decile = statistics.quantiles(outside, n=10)[-1] if len(outside) > 1 else outside[0]
        print(f"{name}: {len(outside)} runs; outside the loop: median {statistics.median(outside):.2f} s, "
              f"90th percentile {decile:.2f} s, sum {sum(outside) / 60:.1f} min; jobs' wall-clock sum {total / 60:.1f} min")


if __name__ == "__main__":
    main(sys.argv[1:] or ["results/default"])
