"""Runs of one graph that differ only in their seed (and so in the runs their frozen nodes load),
trained in one process as one stacked model: each network's weights stacked along a new first
dimension, one vmapped step (torch.func.vmap of torch.func.grad) for all runs. Every run keeps its
own initialisation, data order, augmentation and teacher, so its results equal a separate run's up
to float rounding (stacked kernels sum in another order); the gain is fewer, larger kernels.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import time
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.func import functional_call, grad, vmap

from kdrepro.engine.edges import edge_losses
from kdrepro.engine.frozen import FrozenOutputs
from kdrepro.engine.optim import learning_rate, momentum
from kdrepro.engine.records import Progress, rows_to_csv, summarise
from kdrepro.engine.train import (
    TrainingError,
    build_models,
    claimed,
    epoch_row,
    fresh_state,
    frozen_accuracies,
    frozen_logits,
    load_data,
    make_optimizer,
    training_progress,
    write_outputs,
)
from kdrepro.graph import RunSpec
from kdrepro.io import save_text
from kdrepro.losses import LOSS_INFO


def check_stackable(specs: list[RunSpec]) -> None:
    """Stacked runs must be one graph: equal but for name, seed and the runs frozen nodes load from."""

    def shape(spec: RunSpec) -> dict[str, Any]:
        nodes = tuple(dataclasses.replace(n, frozen_from=n.frozen_from and "run", init_from=n.init_from and "run") for n in spec.nodes)
        return dataclasses.replace(spec, name="", seed=0, nodes=nodes).to_dict()

    if len({s.seed for s in specs}) != len(specs):
        raise TrainingError(f"stacked runs need distinct seeds: {[s.name for s in specs]}")
    for spec in specs[1:]:
        if shape(spec) != shape(specs[0]):
            raise TrainingError(f"runs {specs[0].name} and {spec.name} are not one graph with other seeds: they cannot be stacked")
    spec = specs[0]
    unsupported = {"save_epochs": spec.save_epochs, "sampler": spec.sampler,
                   "edges with modules": [e.label for e in spec.edges if LOSS_INFO[e.loss].module is not None]}
    if any(unsupported.values()):
        raise TrainingError(f"run {spec.name}: stacking does not support {unsupported}; train these runs one by one")


def stack_weights(modules: list[nn.Module]) -> dict[str, torch.Tensor]:
    """Each parameter and buffer of the modules, stacked along a new first dimension. Each module's own
    tensors become views of its slice, so it evaluates and checkpoints the stacked training state."""
    states = [dict(m.named_parameters()) | dict(m.named_buffers()) for m in modules]
    stacked = {name: torch.stack([s[name].detach() for s in states]) for name in states[0]}
    for index, state in enumerate(states):
        for name, tensor in state.items():
            tensor.data = stacked[name][index]
    return stacked


class Bound:
    """A network called with the given weights (functional_call); hooks on its modules still fire."""

    def __init__(self, module: nn.Module, weights: dict[str, torch.Tensor]):
        self.module, self.weights = module, weights

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        return functional_call(self.module, self.weights, (images,))

    def get_submodule(self, path: str) -> nn.Module:
        return self.module.get_submodule(path)


def train_stacked(specs: list[RunSpec], run_dirs: list[Path], runs_root: Path, *, device: str = "cpu", setting: str = "",
                  precision: str = "fp32", progress: bool | None = None) -> list[dict[str, Any]]:
    """Train `specs` into `run_dirs` as one stacked model, as train_run does each (frozen nodes load from
    runs_root); finished runs are returned as they are. No resume: a stopped stack starts again. Every
    run's lock is held throughout (taken in the order of their directories, so two stacks never deadlock)."""
    check_stackable(specs)
    with contextlib.ExitStack() as locks:
        finished = {d: locks.enter_context(claimed(s, d)) for d, s in sorted(zip(run_dirs, specs), key=lambda p: p[0])}
        done = [finished[d] for d in run_dirs]
        todo = [i for i, metrics in enumerate(done) if metrics is None]
        if todo:
            trained = train_together([specs[i] for i in todo], [run_dirs[i] for i in todo], runs_root, device, setting,
                                     precision, progress)
            for i, metrics in zip(todo, trained):
                done[i] = metrics
    return done


def train_together(specs: list[RunSpec], run_dirs: list[Path], runs_root: Path, device: str, setting: str, precision: str,
                   progress: bool | None) -> list[dict[str, Any]]:
    """The stacked training itself (check_stackable has passed; none of these runs is finished)."""
    spec, count = specs[0], len(specs)
    data = load_data(spec, device)
    runs = [build_models(s, data, runs_root, device) for s in specs]
    frozen = FrozenOutputs(data, runs_root)
    caches = [frozen_logits(s, models, frozen) for s, models in zip(specs, runs)]
    cached = {name: {kind: torch.stack([c[name][kind] for c in caches]) for kind in caches[0][name]} for name in caches[0]}
    frozen_acc = [frozen_accuracies(s, models, frozen) for s, models in zip(specs, runs)]
    weights = {n.name: stack_weights([models[n.name] for models in runs]) for n in spec.nodes}
    trained = {n.name for n in spec.nodes if n.trainable}
    # what grad differentiates (trained nodes' parameters), and the rest (buffers, frozen nodes' weights)
    params = {name: {k: weights[name][k] for k, _ in runs[0][name].named_parameters()} for name in trained}
    fixed = {name: {k: w for k, w in node.items() if k not in params.get(name, {})} for name, node in weights.items()}
    # the optimizer run 0 would have (rate scales included), stepping the stacked parameters instead of run 0's
    optimizer = make_optimizer(spec, runs[0])
    views = {id(p): params[name][k] for name in trained for k, p in runs[0][name].named_parameters()}
    optimizer.params = [views[id(p)] for p in optimizer.params]
    for node in spec.nodes:
        runs[0][node.name].train(node.trainable)

    def one_run(params, fixed, images, labels, known, progress):
        models = {name: Bound(runs[0][name], params.get(name, {}) | fixed[name]) for name in weights}
        losses = torch.stack(edge_losses(spec, models, images, labels, progress, known))
        return losses.sum(), losses

    step_all = vmap(grad(one_run, has_aux=True), in_dims=(0, 0, 0, 0, 0, None))
    autocast = torch.autocast(data.device.type, torch.bfloat16, enabled=precision == "bf16")
    generators = [torch.Generator().manual_seed(s.seed) for s in specs]
    steps_per_epoch = math.ceil(data.n_train / spec.batch_size)
    states, started = [fresh_state() for _ in specs], time.perf_counter()
    run_index = torch.arange(count, device=data.device)[:, None]
    bar = Progress(dataclasses.replace(spec, name=f"{spec.name} (+{count - 1} stacked)"), 0, progress)
    for epoch in range(1, spec.epochs + 1):
        optimizer.momentum = momentum(spec, epoch)
        sums = torch.zeros(count, len(spec.edges) + 1, device=data.device)
        for step, batches in enumerate(zip(*(data.train_batches(spec.batch_size, g) for g in generators))):
            images, labels, index = (torch.stack(parts) for parts in zip(*batches))
            optimizer.lr = learning_rate(spec, epoch, step, steps_per_epoch)
            known = {name: {kind: out[run_index, index] for kind, out in outputs.items()} for name, outputs in cached.items()}
            with autocast:
                grads, losses = step_all(params, fixed, images, labels, known,
                                         training_progress(spec, epoch, step, steps_per_epoch))
            for name in trained:
                for k, g in grads[name].items():
                    params[name][k].grad = g
            optimizer.step()
            sums += torch.cat([losses, losses.sum(1, keepdim=True)], 1).detach().float() * labels.shape[1]
        for s, run_dir, models, state, losses_mean in zip(specs, run_dirs, runs, states, (sums / data.n_train).tolist()):
            state["rows"].append(epoch_row(s, models, data, epoch, optimizer.lr, losses_mean, started))
            save_text(rows_to_csv(state["rows"]), run_dir / "epochs.csv")
        bar.update(states[0]["rows"][-1], spec.eval_node)
    bar.close()
    results = []
    for s, run_dir, models, state, acc in zip(specs, run_dirs, runs, states, frozen_acc):
        state.update(epoch=spec.epochs, wall=state["rows"][-1]["seconds"])
        metrics = summarise(s, state, acc, models, data, setting, device) | {"precision": precision, "compile": None,
                                                                               "stacked_runs": count}
        write_outputs(s, run_dir, models, state, metrics, data.num_classes)
        results.append(metrics)
    return results
