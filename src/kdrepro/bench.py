"""`kdrepro bench`: the engine's KD training epoch against a reference loop written the way the
official KD codebases write theirs (torchvision DataLoader with per-image CPU augmentation, fp32,
the teacher's forward pass every step, `.item()` every step), in one process, on the same data.

Presets follow issue 7: `gpu` is resnet56 -> resnet20 on CIFAR-100-shaped data (random pixels:
throughput does not depend on them, and no CIFAR is reachable offline) with crop+flip; `cpu` is
plane10 -> plane2 on Fashion-MNIST without augmentation, as TAKD's code trains.
"""

from __future__ import annotations

import json
import math
import platform
import statistics
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import torch
import torch.nn.functional as F
from torch import nn

from kdrepro.data.device import DeviceData, stratified
from kdrepro.data.sources import DatasetInfo, Split, load_dataset
from kdrepro.engine.checkpoint import load_node_weights, save_torch
from kdrepro.engine.frozen import FrozenOutputs
from kdrepro.engine.stack import train_stacked
from kdrepro.engine.train import (
    accuracy,
    checkpoint,
    frozen_logits,
    load_data,
    make_optimizer,
    prepare_model,
    train_epoch,
    train_run,
)
from kdrepro.graph import LABELS, Data, Edge, Node, Optimizer, RunSpec
from kdrepro.models.zoo import create_model


@dataclass(frozen=True)
class Preset:
    teacher: str
    student: str
    dataset: str  # a registered dataset, or "cifar100-shaped" (random uint8 pixels)
    augment: bool
    precision: str


PRESETS = {
    "gpu": Preset("resnet56", "resnet20", "cifar100-shaped", augment=True, precision="bf16"),
    "cpu": Preset("plane10", "plane2", "fashion_mnist", augment=False, precision="fp32"),
}


def bench_data(preset: Preset, images: int) -> tuple[Split, Split, DatasetInfo]:
    if preset.dataset == "cifar100-shaped":
        g = torch.Generator().manual_seed(0)
        split = lambda n: Split(torch.randint(0, 256, (n, 3, 32, 32), generator=g, dtype=torch.uint8),  # noqa: E731
                                torch.randint(0, 100, (n,), generator=g))
        info = DatasetInfo("cifar100-shaped", 100, 3, 32, (0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762))
        return split(images), split(1000), info
    train, test, info = load_dataset(preset.dataset)
    return Split(train.images[:images], train.labels[:images]), test, info


def run_data(preset: Preset, dataset: str, images: int | None = None, test_images: int | None = None) -> Data:
    """The preset's data as a run reads it: `images` training and `test_images` test images (None: all)."""
    return Data(dataset, train_subset=images, test_subset=test_images, pad_to=32, crop_padding=4 if preset.augment else 0,
                flip=preset.augment)


def kd_spec(preset: Preset, batch_size: int, data: Data, teacher_from: str = "none", epochs: int = 1,
            seed: int = 0) -> RunSpec:
    """TAKD's BLKD step: (1-λ)·CE + λ·τ²·KL with the teacher frozen."""
    return RunSpec(
        name=f"kd-s{seed}", data=data, nodes=(Node("teacher", preset.teacher, frozen_from=teacher_from), Node("student", preset.student)),
        edges=(Edge(LABELS, "student", "ce", 0.5), Edge("teacher", "student", "kd", 0.5, options={"temperature": 4.0})),
        epochs=epochs, seed=seed, batch_size=batch_size, optimizer=OPTIMIZER,
    )


def teacher_spec(preset: Preset, data: Data, epochs: int, batch_size: int) -> RunSpec:
    """The teacher that kd_spec(teacher_from="teacher") loads, trained from scratch with cross-entropy."""
    return RunSpec(name="teacher", data=data, nodes=(Node("teacher", preset.teacher),), edges=(Edge(LABELS, "teacher", "ce"),),
                   epochs=epochs, seed=0, batch_size=batch_size, optimizer=OPTIMIZER, eval_node="teacher")


OPTIMIZER = Optimizer(lr=0.05, weight_decay=5e-4)


def count_flops(model: nn.Module, shape: tuple[int, ...]) -> int:
    """Forward FLOPs of one image: 2 per multiply-add of every conv and linear layer."""
    total = 0

    def add(module, inputs, output):
        nonlocal total
        kernel = module.weight[0].numel()  # in_channels/groups * kh * kw, or in_features
        total += 2 * kernel * output[0].numel()

    handles = [m.register_forward_hook(add) for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    with torch.no_grad():
        model.eval()(torch.zeros(1, *shape))
    for h in handles:
        h.remove()
    return total


def matmul_peak(device: torch.device, dtype: torch.dtype, size: int = 4096) -> float:
    """Measured FLOP/s of a large matmul: the practical peak the training step is compared with."""
    size = size if device.type == "cuda" else 1024
    a = torch.randn(size, size, device=device, dtype=dtype)
    for _ in range(2):
        a @ a
    sync(device)
    reps, start = 10, time.perf_counter()
    for _ in range(reps):
        a @ a
    sync(device)
    return 2 * size**3 * reps / (time.perf_counter() - start)


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def reference_trainer(teacher: nn.Module, student: nn.Module, train: Split, info: DatasetInfo, spec: RunSpec,
                      device: torch.device, workers: int) -> Callable[[], None]:
    """The official codebases' loop: returns a function that trains `student` for one epoch."""
    # only this loop uses torchvision and PIL: imported here, not where every paper's registry loads bench (start-up time)
    import torchvision.transforms as T
    from PIL import Image

    pad = (spec.data.pad_to - info.size) // 2
    augment = [T.RandomCrop(info.size + 2 * pad, padding=4), T.RandomHorizontalFlip()] if spec.data.flip else []
    transform = T.Compose([T.Pad(pad), *augment, T.ToTensor(), T.Normalize(info.mean, info.std)])

    class Images(torch.utils.data.Dataset):  # what torchvision's CIFAR/FashionMNIST datasets do per item
        def __len__(self):
            return len(train.labels)

        def __getitem__(self, i):
            image = train.images[i].permute(1, 2, 0).squeeze(-1).numpy()
            return transform(Image.fromarray(image)), int(train.labels[i])

    loader = torch.utils.data.DataLoader(Images(), batch_size=spec.batch_size, shuffle=True, num_workers=workers,
                                         pin_memory=device.type == "cuda")
    o = spec.optimizer
    optimizer = torch.optim.SGD(student.parameters(), lr=o.lr, momentum=o.momentum, weight_decay=o.weight_decay)
    kl, tau = nn.KLDivLoss(reduction="batchmean"), spec.edges[1].options["temperature"]

    def epoch() -> None:
        student.train(), teacher.eval()
        running = 0.0
        for x, y in loader:
            x, y = x.to(device), y.to(device)
            out = student(x)
            with torch.no_grad():
                soft = teacher(x)
            loss = 0.5 * F.cross_entropy(out, y) + 0.5 * tau**2 * kl(F.log_softmax(out / tau, 1), F.softmax(soft / tau, 1))
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            running += loss.item()  # the per-step host sync of the official loops

    return epoch


def timed(fn, device: torch.device) -> tuple[Any, float]:
    """fn's result and its wall-clock seconds, with the device's queue drained on both sides."""
    sync(device)
    start = time.perf_counter()
    out = fn()
    sync(device)
    return out, time.perf_counter() - start


def ours_epoch(models: dict[str, nn.Module], data: DeviceData, spec: RunSpec, device: torch.device, precision: str,
               cached: dict[str, torch.Tensor]) -> float:
    optimizer = make_optimizer(spec, models)
    generator = torch.Generator().manual_seed(0)
    return timed(lambda: train_epoch(spec, models, optimizer, data, generator, cached, 1, precision), device)[1]


def run_bench(preset_name: str, device_name: str, images: int, batch_size: int, repeats: int, workers: int,
              compile_mode: str | None = None, precision: str | None = None) -> dict[str, Any]:
    preset, device = PRESETS[preset_name], torch.device(device_name)
    precision = precision or preset.precision
    train, test, info = bench_data(preset, images)
    spec = kd_spec(preset, batch_size, run_data(preset, preset.dataset))
    data = DeviceData(train, test, info, device=device, pad_to=32, crop_padding=spec.data.crop_padding, flip=spec.data.flip)
    shape = (info.channels, 32, 32)

    def models(prepare) -> dict[str, nn.Module]:
        torch.manual_seed(0)
        return {n.name: prepare(create_model(n.arch, info.num_classes, info.channels), n) for n in spec.nodes}

    theirs = models(lambda m, n: m.to(device).requires_grad_(n.trainable).train(n.trainable))
    ours = models(lambda m, n: prepare_model(m, n, device, compile_mode))  # compiled once, reused by every epoch
    # without augmentation a frozen teacher's logits are computed once per run, not per epoch: timed apart
    cached, cache_seconds = timed(lambda: frozen_logits(spec, ours, FrozenOutputs(data)), device)  # the pass, not a cache
    reference = reference_trainer(theirs["teacher"], theirs["student"], train, info, spec, device, workers)
    timings: dict[str, list[float]] = {"ours": [], "reference": []}
    for _ in range(repeats + 1):  # the first round warms up kernels, caches and compilation, and is dropped
        timings["reference"].append(timed(reference, device)[1])
        timings["ours"].append(ours_epoch(ours, data, spec, device, precision, cached))
    flops = {n: count_flops(create_model(a, info.num_classes, info.channels), shape)
             for n, a in (("teacher", preset.teacher), ("student", preset.student))}
    # forward + backward (2x) of the student, and the teacher's forward where it runs every step
    step_flops = {"reference": 3 * flops["student"] + flops["teacher"],
                  "ours": 3 * flops["student"] + (0 if cached else flops["teacher"])}
    peak = matmul_peak(device, torch.bfloat16 if precision == "bf16" else torch.float32)
    report: dict[str, Any] = {
        "preset": preset_name, "teacher": preset.teacher, "student": preset.student, "dataset": preset.dataset,
        "images": images, "batch_size": batch_size, "augment": preset.augment,
        "precision_ours": precision, "device": device_description(device),
        "torch": torch.__version__, "reference_workers": workers, "repeats": repeats, "compile_mode": compile_mode,
        "flops_per_image": flops, "matmul_peak_tflops": peak / 1e12,
        "teacher_cache_seconds_once_per_run": cache_seconds if cached else None,
    }
    for name, values in timings.items():
        best = min(values[1:])
        report[name] = {"epoch_seconds": values[1:], "best_epoch_seconds": best, "images_per_second": images / best,
                        "fraction_of_matmul_peak": step_flops[name] * images / best / peak}
    report["speedup"] = report["reference"]["best_epoch_seconds"] / report["ours"]["best_epoch_seconds"]
    return report


def inference_seconds(models: dict[str, nn.Module], images: torch.Tensor, threads: int, batch_size: int = 128,
                      repeats: int = 3) -> tuple[dict[str, float], str]:
    """Median seconds of one pass over `images` (standing for a test split) per model, on this machine's CPU with
    `threads` threads, after one warm-up batch; and a description of the measurement for a caption."""
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    times = {}
    try:
        with torch.inference_mode():
            for name, model in models.items():
                model.eval()(images[:batch_size])  # warm-up
                passes = []
                for _ in range(repeats):
                    start = time.perf_counter()
                    for i in range(0, len(images), batch_size):
                        model(images[i:i + batch_size])
                    passes.append(time.perf_counter() - start)
                times[name] = statistics.median(passes)
    finally:
        torch.set_num_threads(previous)
    machine = (f"CPU ({platform.processor() or platform.machine()}), {threads} thread(s), "
               f"{len(images)} test images in batches of {batch_size}, median of {repeats} passes")
    return times, machine


def device_description(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"CPU ({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads)"


def run_accuracy(preset_name: str, device_name: str, images: int, epochs: int, seeds: list[int], batch_size: int,
                 workers: int, precision: str = "bf16", compile_mode: str | None = None,
                 dataset: str | None = None, test_images: int | None = None) -> dict[str, Any]:
    """Test accuracy of the preset's KD student over `seeds` along three paths: the official codebases'
    loop (fp32), our engine in fp32 (the faithful path) and our engine's fast path (`precision`,
    `compile_mode`), all distilled from one teacher that our engine trains first, on real images."""
    preset, device = PRESETS[preset_name], torch.device(device_name)
    dataset = dataset or preset.dataset
    if dataset == "cifar100-shaped":
        raise SystemExit("kdrepro bench --accuracy needs real images: add --dataset fashion_mnist "
                         "(or cifar100 where it is on disk)")
    data_spec = run_data(preset, dataset, images, test_images)
    train_all, _, info = load_dataset(dataset)
    keep = stratified(train_all.labels, images, "images")  # the images our engine's train_subset keeps
    train = Split(train_all.images[keep], train_all.labels[keep])
    fast = f"ours ({precision}{', compile ' + compile_mode if compile_mode else ''})"
    accuracies: dict[str, list[float]] = {"reference (fp32)": [], "ours (fp32)": [], fast: []}
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        teacher = teacher_spec(preset, data_spec, epochs, batch_size)
        teacher_acc = train_run(teacher, root / "teacher", root, device=device_name, progress=False)["final_test_acc"]
        test_data = load_data(teacher, device_name)
        teacher_model = create_model(preset.teacher, info.num_classes, info.channels).to(device)  # the reference's copy
        teacher_model.load_state_dict(load_node_weights(root / "teacher" / "checkpoint.pt", preset.teacher, {}, info.num_classes))
        for seed in seeds:
            spec = kd_spec(preset, batch_size, data_spec, teacher_from="teacher", epochs=epochs, seed=seed)
            for path, options in (("ours (fp32)", {}), (fast, {"precision": precision, "compile_mode": compile_mode})):
                metrics = train_run(spec, root / f"{path}-{seed}", root, device=device_name, progress=False, **options)
                accuracies[path].append(metrics["final_test_acc"])
            torch.manual_seed(seed * 1000)  # the student's initial weights, as our engine draws them
            student = create_model(preset.student, info.num_classes, info.channels).to(device)
            epoch = reference_trainer(teacher_model, student, train, info, spec, device, workers)
            for _ in range(epochs):
                epoch()
            accuracies["reference (fp32)"].append(accuracy(student, test_data, "test"))
    summary = {path: {"test_acc": values, "mean": statistics.mean(values),
                      "std": statistics.stdev(values) if len(values) > 1 else 0.0} for path, values in accuracies.items()}
    fp32, reference = summary["ours (fp32)"], summary["reference (fp32)"]
    return {
        "preset": preset_name, "teacher": preset.teacher, "student": preset.student, "dataset": dataset,
        "images": images, "test_images": test_images, "epochs": epochs, "seeds": seeds, "batch_size": batch_size, "device": device_description(device),
        "torch": torch.__version__, "teacher_test_acc": teacher_acc, "paths": summary, "fast_path": fast,
        # the fast path is within the seed-to-seed spread when its mean is within one std of the faithful path's
        "fast_minus_fp32": summary[fast]["mean"] - fp32["mean"],
        "fast_within_spread": abs(summary[fast]["mean"] - fp32["mean"]) <= fp32["std"],
        "fp32_minus_reference": fp32["mean"] - reference["mean"],
        "fp32_within_spread_of_reference": abs(fp32["mean"] - reference["mean"]) <= reference["std"],
    }


def print_accuracy(report: dict[str, Any]) -> None:
    print(f"{report['preset']}: {report['teacher']} (teacher {report['teacher_test_acc']:.2f}%) -> {report['student']} KD "
          f"on {report['dataset']} ({report['images']} images, {report['epochs']} epochs, seeds {report['seeds']}) "
          f"on {report['device']}")
    for path, r in report["paths"].items():
        print(f"  {path:28s} {r['mean']:6.2f} ± {r['std']:.2f}  ({', '.join(f'{a:.2f}' for a in r['test_acc'])})")
    verdict = "within" if report["fast_within_spread"] else "NOT within"
    print(f"  fast path - fp32: {report['fast_minus_fp32']:+.2f} points, {verdict} one seed std of the fp32 path")


def run_stack_bench(preset_name: str, device_name: str, images: int, batch_size: int, repeats: int, runs: int,
                    precision: str | None = None, test_images: int | None = None) -> dict[str, Any]:
    """`runs` KD students (seeds 0..runs-1, one teacher) trained one after another, then stacked into
    one model (kdrepro.engine.stack), in this process; each path's epoch time is the median of its
    `repeats` epochs after the first (epochs.csv's clock: training and the per-epoch evaluation)."""
    preset = PRESETS[preset_name]
    precision = precision or preset.precision
    dataset = "fashion_mnist" if preset.dataset == "cifar100-shaped" else preset.dataset  # real files, one loader
    data_spec = run_data(preset, dataset, images, test_images)
    _, _, info = load_dataset(dataset)
    specs = [kd_spec(preset, batch_size, data_spec, teacher_from="teacher", epochs=repeats + 1, seed=seed) for seed in range(runs)]
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        teacher = {"teacher": create_model(preset.teacher, info.num_classes, info.channels)}  # untrained: speed only
        save_torch(checkpoint(teacher_spec(preset, data_spec, 1, batch_size), teacher, 0, info.num_classes),
                   root / "teacher" / "checkpoint.pt")
        for spec in specs:
            train_run(spec, root / "one-by-one" / spec.name, root, device=device_name, precision=precision, progress=False)
        train_stacked(specs, [root / "stacked" / s.name for s in specs], root, device=device_name, precision=precision,
                      progress=False)

        def epoch_seconds(path: Path) -> float:
            clock = [0.0] + [float(line.rsplit(",", 1)[1]) for line in path.read_text().splitlines()[1:]]
            return statistics.median(b - a for a, b in zip(clock[1:-1], clock[2:]))

        separate = sum(epoch_seconds(root / "one-by-one" / s.name / "epochs.csv") for s in specs)
        stacked = epoch_seconds(root / "stacked" / specs[0].name / "epochs.csv")
    device = torch.device(device_name)
    return {"preset": preset_name, "teacher": preset.teacher, "student": preset.student, "dataset": dataset,
            "images": images, "test_images": test_images, "batch_size": batch_size, "runs": runs, "precision": precision,
            "device": device_description(device), "torch": torch.__version__,
            "one_by_one_epoch_seconds": separate, "stacked_epoch_seconds": stacked,
            "one_by_one_images_per_second": runs * images / separate, "stacked_images_per_second": runs * images / stacked,
            "speedup": separate / stacked}


def print_stack(report: dict[str, Any]) -> None:
    print(f"{report['preset']}: {report['runs']} {report['teacher']} -> {report['student']} KD runs on {report['dataset']} "
          f"({report['images']} images, batch {report['batch_size']}, {report['precision']}) on {report['device']}")
    for path in ("one_by_one", "stacked"):
        print(f"  {path.replace('_', ' '):10s} {report[path + '_epoch_seconds']:8.2f} s per epoch of all runs  "
              f"{report[path + '_images_per_second']:9.0f} images/s")
    print(f"  aggregate speed-up of stacking  {report['speedup']:.2f}x")


def print_report(report: dict[str, Any]) -> None:
    print(f"{report['preset']}: {report['teacher']} -> {report['student']} KD on {report['dataset']} "
          f"({report['images']} images, batch {report['batch_size']}) on {report['device']}")
    for name in ("reference", "ours"):
        r = report[name]
        print(f"  {name:9s} {r['best_epoch_seconds']:8.2f} s/epoch  {r['images_per_second']:9.0f} images/s  "
              f"{100 * r['fraction_of_matmul_peak']:5.1f}% of matmul peak ({report['matmul_peak_tflops']:.2f} TFLOP/s)")
    if report["teacher_cache_seconds_once_per_run"] is not None:
        print(f"  ours computed the frozen teacher's logits once, in {report['teacher_cache_seconds_once_per_run']:.2f} s "
              "(once per run, not per epoch: no augmentation)")
    print(f"  speed-up  {report['speedup']:.2f}x per epoch")


def main(args) -> None:
    if args.stack:
        report = run_stack_bench(args.preset, args.device, args.images, args.batch_size, args.repeats, args.stack,
                                 args.precision, args.test_images)
        print_stack(report)
    elif args.accuracy:
        report = run_accuracy(args.preset, args.device, args.images, args.epochs, args.seeds, args.batch_size,
                              args.workers, args.precision or "bf16", args.compile, args.dataset, args.test_images)
        print_accuracy(report)
    else:
        report = run_bench(args.preset, args.device, args.images, args.batch_size, args.repeats, args.workers,
                           args.compile, args.precision)
        print_report(report)
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(report, indent=2) + "\n")
    if "speedup" in report and not math.isfinite(report["speedup"]):
        raise SystemExit("kdrepro bench: a timing was not finite")
