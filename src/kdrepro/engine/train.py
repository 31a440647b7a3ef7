"""Train one knowledge-transfer graph: the whole hot path of every method in the package."""

from __future__ import annotations

import contextlib
import csv
import io
import json
import math
import sys
import time
from pathlib import Path
from typing import Any, Callable, Iterator

import torch
from torch import nn

import kdrepro
from kdrepro import kernels
from kdrepro.data import DeviceData, load_dataset
from kdrepro.engine.checkpoint import (
    FORMAT,
    DamagedCheckpoint,
    file_lock,
    load_checkpoint,
    load_node_weights,
    model_record,
    remove_stale_temporaries,
    save_json,
    save_text,
    save_torch,
    set_aside,
)
from kdrepro.engine.optim import SGD, RMSProp, learning_rate
from kdrepro.data.samplers import make_sampler
from kdrepro.graph import LABELS, Edge, Node, RunSpec
from kdrepro.losses import GATES, LOSS_INFO, LOSSES
from kdrepro.losses.registry import split_options
from kdrepro.models import create_model
from kdrepro.models.features import FeatureTap

# What an edge may read from a node besides its logits, and the module path that FeatureTap taps for it.
# An edge may name other modules (options source_layer / target_layer, e.g. FitNets' hint and guided
# layers): such a read is keyed by its module path, which FeatureTap then taps as it is.
TAPS = {"embedding": "embedding", "feature_map": "embedding:input"}
# A run directory's lock, and its resume states: the newest, and the one before it (used if the newest is damaged)
LOCK, RESUME, PREVIOUS_RESUME = ".lock", "resume.pt", "resume.prev.pt"
# A run did not train if an epoch's mean loss is LOSS_GROWTH times its lowest of an earlier epoch or more
# (diverging), or if its best test accuracy stays within CHANCE_STANDARD_ERRORS standard errors of chance
# (a test set of n images measures chance, 100/K %, to within 100 * sqrt(p (1 - p) / n), p = 1/K).
LOSS_GROWTH = 100.0
CHANCE_STANDARD_ERRORS = 3.0


def edge_reads(edge: Edge) -> tuple[str, str]:
    """What the edge reads at (source, target): its loss's `inputs`, or the module paths it names."""
    inputs = LOSS_INFO[edge.loss].inputs
    return edge.options.get("source_layer", inputs), edge.options.get("target_layer", inputs)


class TrainingError(RuntimeError):
    """Training cannot go on (a NaN loss, for example); the message names the run and the edge."""


def load_data(spec: RunSpec, device: str) -> DeviceData:
    d = spec.data
    train, test, info = load_dataset(d.dataset, d.root, download=d.download)
    return DeviceData(
        train, test, info, device=device, normalization=d.normalization, pad_to=d.pad_to,
        crop_padding=d.crop_padding, flip=d.flip, rotation=d.rotation, train_subset=d.train_subset,
        test_subset=d.test_subset, validation=d.validation,
    )


def build_models(spec: RunSpec, data: DeviceData, runs_root: Path, device: str,
                 compile_mode: str | None = None) -> dict[str, nn.Module]:
    """Trainable nodes start from weights fixed by (seed, position), so compared methods share them."""
    models: dict[str, nn.Module] = {}
    trainable_index = 0
    for node in spec.nodes:
        if node.trainable:
            torch.manual_seed(spec.seed * 1000 + trainable_index)
            trainable_index += 1
        model = create_model(node.arch, data.num_classes, data.in_channels, data.image_size, **node.options)
        source = node.frozen_from or node.init_from
        if source:
            name = "checkpoint.pt" if node.frozen_epoch is None else f"epoch{node.frozen_epoch:03d}.pt"
            weights = load_node_weights(runs_root / source / name, node.arch, node.options, data.num_classes, source)
            if node.init_from and node.init_layers is not None:  # only these layers; the rest keep their fresh init
                weights = {k: v for k, v in weights.items() if under(k, node.init_layers)}
                missing = [p for p in node.init_layers if not any(under(k, (p,)) for k in weights)]
                if missing:
                    raise TrainingError(f"run {spec.name}: node {node.name!r}: init_layers {missing} name no weights of {node.arch}")
            model.load_state_dict(weights, strict=node.init_layers is None)
        models[node.name] = prepare_model(model, node, device, compile_mode)
    models.update(build_edge_modules(spec, models, data, device))
    return models


def under(name: str, prefixes: tuple[str, ...]) -> bool:
    """Is the parameter or module `name` one of `prefixes` or inside one of them?"""
    return any(name == p or name.startswith(p + ".") for p in prefixes)


def edge_key(index: int, edge: Edge) -> str:
    """The key of an edge's module in the models dict (and in checkpoints): "edge0:hint:teacher->student"."""
    return f"edge{index}:{edge.label}"


def build_edge_modules(spec: RunSpec, models: dict[str, nn.Module], data: DeviceData, device: str) -> dict[str, nn.Module]:
    """The parameters of edges whose loss registers a module factory (regressors, embedding heads),
    shaped by one dummy batch through both nodes (in eval mode, so no BN statistic moves) and
    initialised from (seed, edge index). They train with the target node, in the same optimizer."""
    modules: dict[str, nn.Module] = {}
    for index, edge in enumerate(spec.edges):
        info = LOSS_INFO[edge.loss]
        if info.module is None:
            continue
        dummy = torch.zeros(2, data.in_channels, data.image_size, data.image_size, device=device)
        with torch.no_grad():
            outputs = []
            for name, read in zip((edge.source, edge.target), edge_reads(edge)):
                was_training = models[name].training
                outputs.append(forward(models[name].eval(), [read], dummy)[read])
                models[name].train(was_training)
        torch.manual_seed(spec.seed * 1000 + 500 + index)
        _, module_options = split_options(edge.loss, edge.options)
        modules[edge_key(index, edge)] = info.module(*outputs, **module_options).to(device)
    return modules


def edge_modules(spec: RunSpec, models: dict[str, nn.Module]) -> list[nn.Module]:
    return [models[edge_key(i, e)] for i, e in enumerate(spec.edges) if edge_key(i, e) in models]


def node_inputs(spec: RunSpec) -> dict[str, list[str]]:
    """Per node, the outputs besides its logits that some edge reads."""
    needs: dict[str, set[str]] = {}
    for edge in spec.edges:
        for end, read in zip((edge.source, edge.target), edge_reads(edge)):
            if read != "logits" and end != LABELS:
                needs.setdefault(end, set()).add(read)
    return {name: sorted(v) for name, v in needs.items()}


def forward(model: nn.Module, inputs: list[str], images: torch.Tensor) -> dict[str, torch.Tensor]:
    """{"logits": model(images)} plus each named intermediate output, read through forward hooks."""
    if not inputs:
        return {"logits": model(images)}
    wanted = [i for i in inputs if i != "logits"]
    with FeatureTap(model, [TAPS.get(i, i) for i in wanted]) as tap:
        logits = model(images)
    return {"logits": logits} | {i: tap.features[TAPS.get(i, i)] for i in wanted}


def prepare_model(model: nn.Module, node: Node, device: str | torch.device, compile_mode: str | None = None) -> nn.Module:
    """On the device, channels-last on CUDA (faster convolutions; on CPU it crashed oneDNN for 4-channel
    layers here); a frozen node is fixed in inference mode (BN running statistics). `compile_mode`
    compiles in place (state-dict keys unchanged), e.g. "reduce-overhead" for CUDA graphs."""
    layout = torch.channels_last if torch.device(device).type == "cuda" else torch.contiguous_format
    model = model.to(device, memory_format=layout)
    if not node.trainable:
        model.requires_grad_(False).eval()
    if compile_mode:
        model.compile(mode=compile_mode)
    return model


def make_optimizer(spec: RunSpec, models: dict[str, nn.Module]) -> SGD:
    """One optimizer over every trainable node and edge module. A node initialised from another run
    with init_lr_scale != 1 has the rate of its loaded layers (init_layers; all if None) scaled."""
    o = spec.optimizer
    trainable, scales = [], []
    for n in spec.nodes:
        if n.trainable:
            for name, p in models[n.name].named_parameters():
                trainable.append(p)
                loaded = n.init_from and (n.init_layers is None or under(name, n.init_layers))
                scales.append(n.init_lr_scale if loaded else 1.0)
    extra = [p for module in edge_modules(spec, models) for p in module.parameters()]
    trainable, scales = trainable + extra, scales + [1.0] * len(extra)
    if o.kind == "rmsprop":
        return RMSProp(trainable, lr=o.lr, alpha=o.alpha, eps=o.eps, weight_decay=o.weight_decay, lr_scales=scales)
    return SGD(trainable, lr=o.lr, momentum=o.momentum, nesterov=o.nesterov, weight_decay=o.weight_decay, lr_scales=scales)


def edge_losses(spec: RunSpec, models: dict[str, nn.Module], images: torch.Tensor, labels: torch.Tensor,
                progress: float, known: dict[str, torch.Tensor] | None = None) -> list[torch.Tensor]:
    """Every edge's gated loss. Sources are detached, so each loss trains only its target node (and
    the edge's own module, if it has one). A loss reads the output its registration names (logits,
    embedding, feature map); gates always see the source's logits. `known` holds outputs computed
    beforehand for this batch (cached frozen nodes): node -> {"logits": ..., "embedding": ...}."""
    outputs = dict(known or {})
    needs = node_inputs(spec)
    for node in spec.nodes:
        if node.name not in outputs:
            with torch.set_grad_enabled(node.trainable):
                outputs[node.name] = forward(models[node.name], needs.get(node.name, []), images)
    losses = []
    for index, edge in enumerate(spec.edges):
        source_read, target_read = edge_reads(edge)
        source = None if edge.source == LABELS else outputs[edge.source][source_read].detach()
        target = outputs[edge.target][target_read]
        module = models.get(edge_key(index, edge))
        if module is not None:
            source, target = module(source, target)
        loss_options, _ = split_options(edge.loss, edge.options)
        per_sample = LOSSES[edge.loss](source, target, labels, **loss_options)
        gate = GATES[edge.gate](None if edge.source == LABELS else outputs[edge.source]["logits"].detach(), labels, progress,
                                **edge.gate_options)
        losses.append(edge.weight * (gate * per_sample).mean())
    return losses


def train_epoch(spec: RunSpec, models: dict[str, nn.Module], optimizer: SGD, data: DeviceData,
                generator: torch.Generator, cached: dict[str, dict[str, torch.Tensor]], epoch: int,
                precision: str = "fp32", sampler=None) -> list[float]:
    """One epoch over the training split; returns each edge's mean loss and the total's. The loop
    never waits for the device: losses are summed there and read once at the end. `sampler`
    (kdrepro.data.samplers) orders the epoch; None = a random permutation."""
    for node in spec.nodes:
        models[node.name].train(node.trainable)
    for module in edge_modules(spec, models):
        module.train()
    steps_per_epoch = math.ceil(data.n_train / spec.batch_size)
    sums = torch.zeros(len(spec.edges) + 1, device=data.device)
    autocast = torch.autocast(data.device.type, torch.bfloat16, enabled=precision == "bf16")
    for step, (images, labels, index) in enumerate(data.train_batches(spec.batch_size, generator, sampler)):
        progress = training_progress(spec, epoch, step, steps_per_epoch)
        optimizer.lr = learning_rate(spec, epoch, step, steps_per_epoch)
        known = {name: {kind: out[index] for kind, out in outputs.items()} for name, outputs in cached.items()}
        if data.device.type == "cuda":  # a new step for models compiled into CUDA graphs
            torch.compiler.cudagraph_mark_step_begin()
        with autocast:
            losses = edge_losses(spec, models, images, labels, progress, known)
        total = torch.stack(losses).sum()
        optimizer.zero_grad()
        total.backward()
        optimizer.step()
        sums += torch.stack([*losses, total]).detach().float() * len(labels)
    return (sums / data.n_train).tolist()


def training_progress(spec: RunSpec, epoch: int, step: int, steps_per_epoch: int) -> float:
    """How far training is at this step, 0 at the first and 1 at the last (what gates read)."""
    return ((epoch - 1) * steps_per_epoch + step) / max(spec.epochs * steps_per_epoch - 1, 1)


@torch.no_grad()
def frozen_logits(spec: RunSpec, models: dict[str, nn.Module], data: DeviceData) -> dict[str, dict[str, torch.Tensor]]:
    """Without augmentation a frozen node sees the same image every epoch: compute once what the edges
    read from it, node -> {"logits": ..., and "embedding" / "feature_map" where an edge reads them}."""
    if data.augmented:
        return {}
    needs = node_inputs(spec)
    cached = {}
    for node in spec.nodes:
        if not node.trainable:
            batches = [forward(models[node.name], needs.get(node.name, []), x) for x, _ in data.eval_batches("train")]
            cached[node.name] = {kind: torch.cat([b[kind] for b in batches]) for kind in batches[0]}
    return cached


@torch.no_grad()
def prepare_sampler(spec: RunSpec, models: dict[str, nn.Module], data: DeviceData):
    """The run's batch sampler (None: random order); one that needs a frozen node's embeddings of the
    training split gets them here, once, with a generator seeded by the run seed."""
    if spec.sampler is None:
        return None
    sampler = make_sampler(spec.sampler)
    node = sampler.needs_embeddings
    if node is not None:
        embeddings = torch.cat([forward(models[node], ["embedding"], x)["embedding"] for x, _ in data.eval_batches("train")])
        sampler.prepare(embeddings, data.train_labels_cpu, torch.Generator().manual_seed(spec.seed))
    return sampler


@torch.inference_mode()
def accuracy(model: nn.Module, data: DeviceData, split: str) -> float:
    was_training = model.training
    model.eval()
    correct = total = 0
    for images, labels in data.eval_batches(split):
        correct += (model(images).argmax(1) == labels).sum()
        total += len(labels)
    model.train(was_training)
    return 100.0 * float(correct) / total


def train_run(
    spec: RunSpec, run_dir: Path, runs_root: Path, *, device: str = "cpu", setting: str = "", progress: bool | None = None,
    precision: str = "fp32", compile_mode: str | None = None, on_epoch: Callable[[int, dict[str, Any]], None] | None = None,
) -> dict[str, Any]:
    """Train `spec`, resuming from the last good resume state a killed attempt left; return the metrics.
    A finished run of the same configuration is returned as it is; one of another is never overwritten
    (checked under the run's lock, at the start and again before the outputs are written). `on_epoch(epoch,
    row)` is called after each epoch's row (losses, accuracies) and resume state are saved; an exception it
    raises (a search pruning the trial, say) ends training there, resumable. `precision` "bf16" trains under
    bf16 autocast (evaluation stays fp32); `compile_mode` torch.compiles every node ("default", or
    "reduce-overhead": CUDA graphs). Neither enters the config hash: they change how a run computes, not
    what it is, and metrics.json records both."""
    with claimed(spec, run_dir) as finished:
        if finished is not None:
            return finished
        data = load_data(spec, device)
        models = build_models(spec, data, runs_root, device, compile_mode)
        optimizer = make_optimizer(spec, models)
        generator = torch.Generator().manual_seed(spec.seed)
        cached = frozen_logits(spec, models, data)
        sampler = prepare_sampler(spec, models, data)
        frozen_acc = frozen_accuracies(spec, models, data)
        state = resume(run_dir, spec, models, optimizer, generator)

        def snapshot(epoch: int, test_acc: float) -> None:
            save_torch(checkpoint(spec, models, epoch, data.num_classes), run_dir / f"epoch{epoch:03d}.pt")
            state["snapshots"][epoch] = test_acc

        if 0 in spec.save_epochs and 0 not in state["snapshots"]:  # the initialisation, the poorest teacher of all
            snapshot(0, accuracy(models[spec.eval_node], data, "test"))
        started = time.perf_counter() - state["wall"]
        bar = Progress(spec, state["epoch"], progress)
        for epoch in range(state["epoch"] + 1, spec.epochs + 1):
            losses_mean = train_epoch(spec, models, optimizer, data, generator, cached, epoch, precision, sampler)
            row = epoch_row(spec, models, data, epoch, optimizer.lr, losses_mean, started)
            state["rows"].append(row)
            if epoch in spec.save_epochs:
                snapshot(epoch, row[f"test_acc[{spec.eval_node}]"])
            save_text(rows_to_csv(state["rows"]), run_dir / "epochs.csv")
            state.update(epoch=epoch, wall=row["seconds"])
            save_torch(resume_state(state, spec, models, optimizer, generator), run_dir / RESUME,
                       keep_previous=run_dir / PREVIOUS_RESUME)
            bar.update(row, spec.eval_node)
            if on_epoch is not None:
                on_epoch(epoch, row)
        bar.close()
        metrics = summarise(spec, state, frozen_acc, models, data, setting, device) | {"precision": precision,
                                                                                       "compile": compile_mode}
        write_outputs(spec, run_dir, models, state, metrics, data.num_classes)
        return metrics


@contextlib.contextmanager
def claimed(spec: RunSpec, run_dir: Path) -> Iterator[dict[str, Any] | None]:
    """Hold the run directory's lock (another process training the run is waited for) and yield the
    metrics of a finished run of this configuration there, or None: then the run is to be trained, and
    the temporary files of writes killed in an earlier attempt are removed first."""
    with file_lock(run_dir / LOCK, waiting=f"run {spec.name} is being trained by another process; waiting for it"):
        finished = finished_metrics(spec, run_dir)
        if finished is None:
            stale = remove_stale_temporaries(run_dir)
            if stale:
                print(f"[kdrepro] removed {len(stale)} temporary file(s) of a killed write in {run_dir}: "
                      f"{', '.join(p.name for p in stale)}", file=sys.stderr)
        yield finished


def finished_metrics(spec: RunSpec, run_dir: Path) -> dict[str, Any] | None:
    """The metrics of a finished run of this configuration in run_dir; None if none finished there.
    A finished run of another configuration is never overwritten: that is an error."""
    finished = run_dir / "metrics.json"
    if not finished.exists():
        return None
    metrics = json.loads(finished.read_text())
    if metrics["config_hash"] != spec.config_hash:
        raise TrainingError(f"{run_dir} holds a finished run of another configuration ({metrics['config_hash']}, "
                            f"this one is {spec.config_hash}): remove it, or give this setting its own name")
    return metrics


def frozen_accuracies(spec: RunSpec, models: dict[str, nn.Module], data: DeviceData) -> dict[str, float]:
    return {n.name: accuracy(models[n.name], data, "test") for n in spec.nodes if not n.trainable}


def epoch_row(spec: RunSpec, models: dict[str, nn.Module], data: DeviceData, epoch: int, lr: float,
              losses_mean: list[float], started: float) -> dict[str, Any]:
    """The epoch's line of epochs.csv: rate, mean losses (total and per edge), the trained nodes'
    accuracies and the seconds since `started` (a perf_counter time)."""
    if not math.isfinite(losses_mean[-1]):
        bad = [e.label for e, v in zip(spec.edges, losses_mean) if not math.isfinite(v)]
        raise TrainingError(f"run {spec.name}: loss is not finite at epoch {epoch} (edges {bad})")
    row: dict[str, Any] = {"epoch": epoch, "lr": lr, "loss": losses_mean[-1]}
    row.update({f"loss[{e.label}]": v for e, v in zip(spec.edges, losses_mean)})
    for node in spec.nodes:
        if node.trainable:
            row[f"test_acc[{node.name}]"] = accuracy(models[node.name], data, "test")
            if data.n_val:
                row[f"val_acc[{node.name}]"] = accuracy(models[node.name], data, "val")
    return row | {"seconds": time.perf_counter() - started}


def write_outputs(spec: RunSpec, run_dir: Path, models: dict[str, nn.Module], state: dict[str, Any],
                  metrics: dict[str, Any], num_classes: int) -> None:
    """A finished run's files; metrics.json last, as the mark that the run is complete. The check that no
    finished run of another configuration is there is made again first: the caller holds the run's lock,
    and a process that does not (another version) may have finished one since the start."""
    finished_metrics(spec, run_dir)
    save_torch(checkpoint(spec, models, spec.epochs, num_classes), run_dir / "checkpoint.pt")
    save_json(spec.to_dict(), run_dir / "spec.json")
    # again here: a rerun deletes its outputs first, and one killed after its last epoch resumes with no epoch to train
    save_text(rows_to_csv(state["rows"]), run_dir / "epochs.csv")
    save_json(metrics, run_dir / "metrics.json")
    discard_resume_state(run_dir)


def discard_resume_state(run_dir: Path) -> None:
    for name in (RESUME, PREVIOUS_RESUME):
        (run_dir / name).unlink(missing_ok=True)


def checkpoint(spec: RunSpec, models: dict[str, nn.Module], epoch: int, num_classes: int) -> dict[str, Any]:
    records = {n.name: model_record(n.arch, n.options, num_classes, models[n.name]) for n in spec.nodes if n.trainable}
    edges = {key: {k: v.detach().cpu().clone() for k, v in models[key].state_dict().items()}
             for key in (edge_key(i, e) for i, e in enumerate(spec.edges)) if key in models}
    return {"format": FORMAT, "run": spec.name, "config_hash": spec.config_hash, "epoch": epoch,
            "model": records[spec.eval_node], "nodes": records, "edges": edges}


def fresh_state() -> dict[str, Any]:
    """Progress of a run that has trained no epoch yet."""
    return {"epoch": 0, "rows": [], "wall": 0.0, "snapshots": {}}


def resume_state(state, spec, models, optimizer, generator) -> dict[str, Any]:
    return {
        "format": FORMAT,
        "config_hash": spec.config_hash,
        "state": state,
        "models": {name: m.state_dict() for name, m in models.items()},
        "optimizer": optimizer.state_dict(),
        "generator": generator.get_state(),
        "torch_rng": torch.get_rng_state(),
        "cuda_rng": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
    }


def resume(run_dir: Path, spec, models, optimizer, generator) -> dict[str, Any]:
    """The newest good resume state of the run (resume.pt, else the one before it), restored into the
    models, optimizer and generators; a fresh state if there is none. A damaged file (unreadable, or its
    checksum fails) is set aside and one of another configuration kept aside, each saying so."""
    set_aside_any = False
    for path in (run_dir / RESUME, run_dir / PREVIOUS_RESUME):
        if not path.exists():
            continue
        try:
            saved = load_checkpoint(path)
        except DamagedCheckpoint as err:
            print(f"[kdrepro] {err}; set aside as {set_aside(path).name}", file=sys.stderr)
            set_aside_any = True
            continue
        if saved["config_hash"] != spec.config_hash:
            stale = path.with_name(f"{path.stem}-{saved['config_hash']}.stale.pt")
            path.rename(stale)
            print(f"[kdrepro] {path} belongs to another configuration; kept as {stale.name}", file=sys.stderr)
            set_aside_any = True
            continue
        for name, model in models.items():
            model.load_state_dict(saved["models"][name])
        optimizer.load_state_dict(saved["optimizer"])
        generator.set_state(saved["generator"])
        torch.set_rng_state(saved["torch_rng"])
        if saved["cuda_rng"]:
            torch.cuda.set_rng_state_all(saved["cuda_rng"])
        print(f"[kdrepro] resuming {spec.name} after epoch {saved['state']['epoch']} (from {path.name})", file=sys.stderr)
        return saved["state"]
    if set_aside_any:
        print(f"[kdrepro] starting {spec.name} from scratch: no good resume state of it is left", file=sys.stderr)
    return fresh_state()


def summarise(spec, state, frozen_acc, models, data, setting, device) -> dict[str, Any]:
    """metrics.json of a finished run; `trained` false (and the log says why) if it did not train."""
    rows = state["rows"]
    key = f"test_acc[{spec.eval_node}]"
    best = max(rows, key=lambda r: r[key])
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


def training_problem(spec: RunSpec, rows: list[dict[str, Any]], num_classes: int, n_test: int) -> str | None:
    """Why a finished run did not train, or None: its mean loss grew LOSS_GROWTH-fold or more over its
    lowest of an earlier epoch (diverged; a loss that exploded in the first epoch leaves the accuracy at
    chance), or the best test accuracy of its evaluated node stayed at chance over all its epochs. A node
    that no label edge reaches (FitNets' hint stage) is not judged on its accuracy."""
    losses = [row["loss"] for row in rows]
    for i in range(1, len(losses)):
        lowest = min(losses[:i])
        if lowest > 0 and losses[i] >= LOSS_GROWTH * lowest:
            return f"its loss grew from {lowest:.3g} to {losses[i]:.3g} at epoch {rows[i]['epoch']} (diverged)"
    if not any(e.source == LABELS and e.target == spec.eval_node for e in spec.edges):
        return None
    p = 1 / num_classes
    chance, margin = 100 * p, CHANCE_STANDARD_ERRORS * 100 * math.sqrt(p * (1 - p) / n_test)
    best = max(row[f"test_acc[{spec.eval_node}]"] for row in rows)
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
        if self.interactive:
            self.bar.set_postfix(loss=f"{row['loss']:.3f}", acc=f"{acc:.2f}")
            self.bar.update()
        else:
            print(f"epoch {row['epoch']}/{self.epochs} loss {row['loss']:.4f} test_acc {acc:.2f} "
                  f"({row['seconds']:.1f}s)", file=sys.stderr, flush=True)

    def close(self) -> None:
        self.bar.close()
