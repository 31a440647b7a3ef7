"""Cluster sizing: what one training run asks SLURM for, and how short runs are bundled.

The workflow's train rule takes its `resources:` and `group:` from here (through
workflow/rules/common.smk), so the rules stay declarative and the numbers stay testable.

Runtime estimate (a deliberately small model, not a profiler): a step costs a fixed time per
layer *pass*; training a node costs three passes per layer (forward, backward, optimiser), a
frozen node one forward pass per step when the input is augmented (without augmentation its
logits are computed once per run), and every epoch ends with one forward pass over the test split.

* GPU (`device` cuda or auto): small CIFAR networks at batch 128 are bound by kernel launches,
  not FLOPs, so the cost per layer pass does not depend on width: GPU_MS_PER_LAYER_PASS per step,
  calibrated on docs/benchmarks.md (H100, resnet56 -> resnet20 with augmentation, 6.59 s per
  epoch of 391 steps = 16.9 ms per step for 3*20 + 56 = 116 layer passes).
* CPU: FLOP-bound, so the cost scales with the images and the width squared:
  CPU_MS_PER_IMAGE_LAYER_PASS at width 1, calibrated on the same file (2 cores, plane2 student at
  width 1 on Fashion-MNIST, 3.80 s per 10,000-image epoch = 0.38 ms per image for 3*2 passes).

Plus STARTUP_MINUTES per run (imports, data, the frozen teacher's logits). The SLURM time limit
is generous (LIMIT_FACTOR x estimate + LIMIT_SLACK_MINUTES, times the attempt), since SLURM kills
a job at its limit; the estimate itself only sizes bundles.

Bundles: SLURM schedules best when a job carries at least BUNDLE_MINUTES of work, so runs
estimated shorter than that are packed into Snakemake job groups: level by level of the run
DAG (a run's level is one more than its deepest dependency, so no run of a bundle depends on
another run of it or on a run that depends on it), sorted by estimate, into consecutive bundles
whose estimates add up to at least BUNDLE_MINUTES. A level's last bundle may be shorter. Runs
estimated at BUNDLE_MINUTES or more are a cluster job of their own.
"""

from __future__ import annotations

import math
from typing import Any, Mapping

from kdrepro.data.meta import PUBLISHED
from kdrepro.graph import RunSpec
from kdrepro.catalog import model_info

BUNDLE_MINUTES = 10.0
GPU_MS_PER_LAYER_PASS = 0.146
CPU_MS_PER_IMAGE_LAYER_PASS = 0.063
STARTUP_MINUTES = 1.0
LIMIT_FACTOR = 2.0
LIMIT_SLACK_MINUTES = 10

# an image folder's size is unknown before its listing is read: estimate it as CIFAR's
UNKNOWN_SPLIT_SIZES = (50_000, 10_000)


def uses_gpu(device: str) -> bool:
    """cuda, cuda:N and auto (a cluster setting asks for a GPU) run on a GPU; cpu does not."""
    return device != "cpu"


def _depth(arch: str) -> int:
    return model_info(arch)["depth"]


def split_sizes(spec: RunSpec) -> tuple[int, int]:
    meta = PUBLISHED.get(spec.data.dataset)  # the full splits; a subset in the run spec overrides them
    train, test = (meta.train, meta.test) if meta else UNKNOWN_SPLIT_SIZES
    train = min(train, spec.data.train_subset or train) - spec.data.validation
    test = min(test, spec.data.test_subset or test)
    return max(train, 1), max(test, 1)


def estimate_minutes(spec: RunSpec, device: str) -> float:
    """Estimated wall-clock minutes of one run on `device` (see the module docstring)."""
    train, test = split_sizes(spec)
    augmented = bool(spec.data.crop_padding or spec.data.flip)
    trained = [n for n in spec.nodes if n.trainable]
    frozen = [n for n in spec.nodes if not n.trainable]
    eval_depth = _depth(spec.node(spec.eval_node).arch)

    def passes(nodes, per_layer):
        return sum(per_layer * _depth(n.arch) * (float(n.options.get("width", 1.0)) ** 2 if not uses_gpu(device) else 1.0)
                   for n in nodes)

    train_passes = passes(trained, 3) + (passes(frozen, 1) if augmented else 0.0)
    if uses_gpu(device):
        steps, test_steps = math.ceil(train / spec.batch_size), math.ceil(test / spec.batch_size)
        epoch_ms = GPU_MS_PER_LAYER_PASS * (steps * train_passes + test_steps * eval_depth)
        once_ms = 0.0 if augmented else GPU_MS_PER_LAYER_PASS * math.ceil(train / spec.batch_size) * passes(frozen, 1)
    else:
        eval_width = float(spec.node(spec.eval_node).options.get("width", 1.0)) ** 2
        epoch_ms = CPU_MS_PER_IMAGE_LAYER_PASS * (train * train_passes + test * eval_depth * eval_width)
        once_ms = 0.0 if augmented else CPU_MS_PER_IMAGE_LAYER_PASS * train * passes(frozen, 1)
    return STARTUP_MINUTES + (spec.epochs * epoch_ms + once_ms) / 60_000


def runtime_limit(minutes: float, attempt: int = 1) -> int:
    """SLURM time limit in minutes for a run estimated at `minutes`; doubles with each retry."""
    return int(math.ceil(LIMIT_FACTOR * minutes + LIMIT_SLACK_MINUTES)) * 2 ** (max(attempt, 1) - 1)


def mem_mb(spec: RunSpec, device: str, attempt: int = 1) -> int:
    """Host memory: torch (+ CUDA context on a GPU) plus four copies of the uint8 splits, in GB steps."""
    train, test = split_sizes(spec)
    pixels = (spec.data.pad_to or 32) ** 2 * 3
    data_mb = 4 * (train + test) * pixels / 2**20
    base = 4000 if uses_gpu(device) else 2000
    return int(math.ceil((base + data_mb) / 1000) * 1000) * max(attempt, 1)


def levels(runs: Mapping[str, RunSpec]) -> dict[str, int]:
    """0 for a run that loads no other run, else one more than its deepest dependency."""
    out: dict[str, int] = {}

    def level(name: str, path: tuple[str, ...] = ()) -> int:
        if name not in out:
            if name in path:
                raise ValueError(f"dependency cycle through run {name}")
            deps = runs[name].dependencies
            out[name] = 1 + max(level(d, path + (name,)) for d in deps) if deps else 0
        return out[name]

    for name in runs:
        level(name)
    return out


def bundles(minutes: Mapping[str, float], run_levels: Mapping[str, int],
            target: float = BUNDLE_MINUTES, prefix: str = "train") -> dict[str, str | None]:
    """Run -> job group name (None: a cluster job of its own), as the module docstring says."""
    out: dict[str, str | None] = {}
    by_level: dict[int, list[str]] = {}
    for name, m in minutes.items():
        if m >= target:
            out[name] = None
        else:
            by_level.setdefault(run_levels[name], []).append(name)
    for level in sorted(by_level):
        index, total = 0, 0.0
        for name in sorted(by_level[level], key=lambda n: (minutes[n], n)):
            out[name] = f"{prefix}_l{level}_b{index}"
            total += minutes[name]
            if total >= target:
                index, total = index + 1, 0.0
    return out


def plan(runs: Mapping[str, RunSpec], device: str, target: float = BUNDLE_MINUTES) -> dict[str, dict[str, Any]]:
    """Per run: estimated minutes, level and job group; what `kdrepro`'s callers and tests read."""
    minutes = {name: estimate_minutes(spec, device) for name, spec in runs.items()}
    run_levels = levels(runs)
    groups = bundles(minutes, run_levels, target)
    return {name: {"minutes": minutes[name], "level": run_levels[name], "group": groups[name]} for name in runs}
