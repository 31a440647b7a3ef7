"""Train one knowledge-transfer graph: the whole hot path of every method in the package."""

from __future__ import annotations

import contextlib
import json
import math
import sys
import time
from pathlib import Path
from typing import Any, Callable, Iterator

import torch
from torch import nn

from kdrepro.data.device import DeviceData
from kdrepro.data.sources import load_dataset, load_folder
from kdrepro.engine.checkpoint import (
    FORMAT,
    DamagedCheckpoint,
    load_checkpoint,
    load_node_weights,
    model_record,
    save_torch,
    set_aside,
    source_checkpoint,
)
from kdrepro.engine.frozen import FrozenOutputs
from kdrepro.engine.optim import SGD, RMSProp, learning_rate, momentum
from kdrepro.engine.records import Progress, rows_to_csv, summarise
from kdrepro.errors import CheckpointError, TrainingError
from kdrepro.data.samplers import make_sampler
from kdrepro.engine.edges import build_edge_modules, edge_key, edge_losses, edge_modules, node_inputs
from kdrepro.engine.external import load_external
from kdrepro.graph import Node, RunSpec
from kdrepro.io import file_lock, remove_stale_temporaries, save_json, save_text
from kdrepro.paths import LOCK, PREVIOUS_RESUME, RESUME
from kdrepro.models.zoo import create_model
from kdrepro.teachers import weights_path


def load_data(spec: RunSpec, device: str) -> DeviceData:
    d = spec.data
    if d.fingerprint is not None:  # one of the setting's image folders, named by its content
        train, test, info = load_folder(d.dataset, d.channels, d.fingerprint, d.root)
    else:
        train, test, info = load_dataset(d.dataset, d.root, download=d.download)
    return DeviceData(
        train, test, info, device=device, normalization=d.normalization, pad_to=d.pad_to,
        crop_padding=d.crop_padding, flip=d.flip, rotation=d.rotation, train_subset=d.train_subset,
        test_subset=d.test_subset, validation=d.validation,
    )


def build_models(spec: RunSpec, data: DeviceData, runs_root: Path, device: str,
                 compile_mode: str | None = None) -> dict[str, nn.Module]:
    """Trainable nodes start from weights fixed by (seed, position), so compared methods share them; frozen ones
    load another run's checkpoint, or an external teacher's file (the file of the node's weights_sha256)."""
    models: dict[str, nn.Module] = {}
    trainable_index = 0
    for node in spec.nodes:
        if node.trainable:
            torch.manual_seed(spec.seed * 1000 + trainable_index)
            trainable_index += 1
        model = create_model(node.arch, data.num_classes, data.in_channels, data.image_size, **node.options)
        source = node.frozen_from or node.init_from
        if node.weights_sha256:
            try:
                load_external(model, weights_path(node.weights_file, node.weights_sha256), node.arch, node.options, data.num_classes)
            except CheckpointError as err:
                raise CheckpointError(f"run {spec.name}: node {node.name!r}: {err}") from None
        elif source:
            weights = load_node_weights(source_checkpoint(runs_root, node), node.arch, node.options, data.num_classes, source)
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
    """One optimizer over every trainable node and edge module. Modules may carry training rules, as
    pylearn2 layers do: `lr_scale` multiplies the rate of the module's own parameters (W_lr_scale and
    b_lr_scale), `max_norm` bounds the norm of each output unit's weights after every step
    (max_kernel_norm, max_col_norm; optim.renormalise_). A node initialised from another run with
    init_lr_scale != 1 has the rate of its loaded layers (init_layers; all if None) scaled further, as
    the official FitNets code multiplies the layer's own scale by -lrs (scripts/fitnets_training.py
    lines 283-290)."""
    o = spec.optimizer
    trainable, scales, max_norms = [], [], []

    def add(module: nn.Module, loaded_scale: float = 1.0, loaded_layers: tuple[str, ...] | None = ()) -> None:
        """Every parameter of `module`; `loaded_scale` also scales those under `loaded_layers` (None: all)."""
        for path, owner in module.named_modules():
            for name, p in owner.named_parameters(recurse=False):
                loaded = loaded_layers is None or under(f"{path}.{name}" if path else name, loaded_layers)
                if name == "weight" and getattr(owner, "max_norm", None):
                    max_norms.append((len(trainable), owner.max_norm, p.dim() - 1))
                trainable.append(p)
                scales.append(getattr(owner, "lr_scale", 1.0) * (loaded_scale if loaded else 1.0))

    for n in spec.nodes:
        if n.trainable:
            add(models[n.name], n.init_lr_scale, n.init_layers if n.init_from else ())
    for module in edge_modules(spec, models):
        add(module)
    if o.kind == "rmsprop":
        return RMSProp(trainable, lr=o.lr, alpha=o.alpha, eps=o.eps, weight_decay=o.weight_decay, lr_scales=scales,
                       max_norms=max_norms)
    return SGD(trainable, lr=o.lr, momentum=o.momentum, nesterov=o.nesterov, weight_decay=o.weight_decay, lr_scales=scales,
               max_norms=max_norms)


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
    optimizer.momentum = momentum(spec, epoch)
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


def frozen_logits(spec: RunSpec, models: dict[str, nn.Module], frozen: FrozenOutputs) -> dict[str, dict[str, torch.Tensor]]:
    """Without augmentation a frozen node sees the same image every epoch: what the edges read from it on
    the training split, computed once per teacher (FrozenOutputs), node -> {"logits": ..., and "embedding" /
    "feature_map" where an edge reads them}."""
    if frozen.data.augmented:
        return {}
    needs = node_inputs(spec)
    return {node.name: frozen.outputs(node, models[node.name], "train", needs.get(node.name, []))
            for node in spec.nodes if not node.trainable}


def prepare_sampler(spec: RunSpec, models: dict[str, nn.Module], frozen: FrozenOutputs):
    """The run's batch sampler (None: random order); one that needs a frozen node's embeddings of the
    training split gets them here (computed once per teacher: FrozenOutputs), with a generator seeded by
    the run seed."""
    if spec.sampler is None:
        return None
    sampler = make_sampler(spec.sampler)
    node = sampler.needs_embeddings
    if node is not None:
        embeddings = frozen.outputs(spec.node(node), models[node], "train", ["embedding"])["embedding"]
        sampler.prepare(embeddings, frozen.data.train_labels_cpu, torch.Generator().manual_seed(spec.seed))
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
        frozen = FrozenOutputs(data, runs_root, compile_mode)
        cached = frozen_logits(spec, models, frozen)
        sampler = prepare_sampler(spec, models, frozen)
        frozen_acc = frozen_accuracies(spec, models, frozen)
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


def frozen_accuracies(spec: RunSpec, models: dict[str, nn.Module], frozen: FrozenOutputs) -> dict[str, float]:
    """Each frozen node's test accuracy, read off its test logits (computed once per teacher: FrozenOutputs);
    the same number as `accuracy` (tests/test_frozen.py)."""
    labels = frozen.data.splits["test"][1]
    return {n.name: 100.0 * float((frozen.outputs(n, models[n.name], "test", [])["logits"].argmax(1) == labels).sum())
            / len(labels) for n in spec.nodes if not n.trainable}


def epoch_row(spec: RunSpec, models: dict[str, nn.Module], data: DeviceData, epoch: int, lr: float,
              losses_mean: list[float], started: float) -> dict[str, Any]:
    """The epoch's line of epochs.csv: rate, mean losses (total and per edge), the trained nodes'
    accuracies and the seconds since `started` (a perf_counter time)."""
    if not math.isfinite(losses_mean[-1]):
        bad = [e.label for e, v in zip(spec.edges, losses_mean) if not math.isfinite(v)]
        raise TrainingError(f"run {spec.name}: loss is not finite at epoch {epoch} (edges {bad})")
    row: dict[str, Any] = {"epoch": epoch, "lr": lr, "loss": losses_mean[-1]}
    row.update({f"loss[{e.label}]": v for e, v in zip(spec.edges, losses_mean)})
    tested = spec.tests_after(epoch)
    for node in spec.nodes:
        if node.trainable:
            row[f"test_acc[{node.name}]"] = accuracy(models[node.name], data, "test") if tested else math.nan
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
    # the trained nodes, and an evaluation run's frozen one (what it measured)
    records = {n.name: model_record(n.arch, n.options, num_classes, models[n.name]) for n in spec.nodes
               if n.trainable or n.name == spec.eval_node}
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
