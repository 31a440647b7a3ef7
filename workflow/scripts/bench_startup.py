"""Start-up of the commands that only read, before and after, interleaved so that both see the same load.

    python workflow/scripts/bench_startup.py BEFORE_TREE AFTER_TREE [--repeats 3] [--paper] [--train-spec FILE]

Each tree is a checkout of the repository (e.g. `git archive <commit> | tar -x -C /tmp/before`); every
command runs in that tree with its src/ first on PYTHONPATH. Printed per command and tree: the median wall
and user+system CPU seconds over the repeats, and after/before ratios. "cold" runs start with an empty user
cache (a fresh HOME: the first invocation after a code change), "warm" ones reuse one (every later one).
The load average is printed before each command; other jobs on the machine show in the wall times more than
in the CPU seconds. Two floors, the same code in both trees (so their ratio shows the noise), give Snakemake's
own share of a dry-run: `snakemake --version` (its import) and the dry-run of a workflow of one empty rule
(its import, settings, profile and persistence, without a job). The commands run with bytecode caching on, as
a user's do, whatever PYTHONDONTWRITEBYTECODE says in the calling shell.
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

COMMANDS = {
    "kdrepro --help": ["kdrepro", "--help"],
    "kdrepro list targets": ["kdrepro", "list", "targets"],
    "kdrepro list runs": ["kdrepro", "list", "runs"],
    "kdrepro status": ["kdrepro", "status"],
    "snakemake -n (default)": ["snakemake", "-n", "-q"],
}
PAPER = {"snakemake -n (paper)": ["snakemake", "-n", "-q", "--configfile", "config/paper.yaml"]}


def floors(empty_snakefile: Path) -> dict[str, list[str]]:
    """Snakemake's own share of a dry-run, the same in both trees."""
    return {"snakemake --version (floor)": ["snakemake", "--version"],
            "snakemake -n, empty workflow (floor)": ["snakemake", "-n", "-q", "--snakefile", str(empty_snakefile)]}


def timed(command: list[str], tree: Path, home: Path) -> tuple[float, float]:
    """A training command runs in a fresh working directory (its run is not finished there yet)."""
    env = {key: value for key, value in os.environ.items() if key != "PYTHONDONTWRITEBYTECODE"}
    env |= {"PYTHONPATH": str(tree / "src"), "HOME": str(home)}
    cwd = Path(tempfile.mkdtemp(prefix="cwd-")) if command[:2] == ["kdrepro", "train"] else tree
    before, start = resource.getrusage(resource.RUSAGE_CHILDREN), time.perf_counter()
    subprocess.run(command, cwd=cwd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)
    wall, after = time.perf_counter() - start, resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("before", type=Path)
    parser.add_argument("after", type=Path)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--paper", action="store_true", help="also the paper setting's dry-run (1,000+ jobs)")
    parser.add_argument("--train-spec", type=Path, help="instead: `kdrepro train --spec-json` of this run spec (one thread)")
    args = parser.parse_args()
    empty = Path(tempfile.mkdtemp(prefix="empty-")) / "Snakefile"
    empty.write_text("rule all:\n    input: []\n")
    commands = floors(empty) | COMMANDS | (PAPER if args.paper else {})
    if args.train_spec:
        commands = {"kdrepro train --spec-json": ["kdrepro", "train", "--spec-json", args.train_spec.read_text(),
                                                  "--setting", "bench", "--no-progress", "--threads", "1"]}
    warm = {tree: Path(tempfile.mkdtemp(prefix="home-")) for tree in (args.before, args.after)}
    for tree, home in warm.items():  # fill the warm caches
        for command in commands.values():
            timed(command, tree, home)
    for label, command in commands.items():
        print(f"{label}: load average {os.getloadavg()[0]:.2f}", flush=True)
        results: dict[tuple[str, str], list[tuple[float, float]]] = {}
        for _ in range(args.repeats):
            for tree, name in ((args.before, "before"), (args.after, "after")):
                cold = Path(tempfile.mkdtemp(prefix="home-"))
                results.setdefault((name, "cold"), []).append(timed(command, tree, cold))
                shutil.rmtree(cold)
                results.setdefault((name, "warm"), []).append(timed(command, tree, warm[tree]))
        medians = {k: (statistics.median(w for w, _ in v), statistics.median(c for _, c in v)) for k, v in results.items()}
        for (name, cache), (wall, cpu) in medians.items():
            print(f"  {name:6s} {cache}: {wall:6.2f} s wall  {cpu:6.2f} s CPU")
        for cache in ("cold", "warm"):
            (wb, cb), (wa, ca) = medians[("before", cache)], medians[("after", cache)]
            print(f"  after/before {cache}: wall {wa / wb:.2f}  CPU {ca / cb:.2f}")
    for folder in [*warm.values(), empty.parent]:
        shutil.rmtree(folder)


if __name__ == "__main__":
    sys.exit(main())
