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
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from kdrepro.data import DatasetInfo, DeviceData, Split, load_dataset
from kdrepro.graph import LABELS, Data, Edge, Node, Optimizer, RunSpec


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


def kd_spec(preset: Preset, batch_size: int, pad_to: int) -> RunSpec:
    """TAKD's BLKD step: (1-λ)·CE + λ·τ²·KL with the teacher frozen."""
    return RunSpec(
        name="bench", data=Data(preset.dataset, pad_to=pad_to, crop_padding=4 if preset.augment else 0, flip=preset.augment),
        nodes=(Node("teacher", preset.teacher, frozen_from="none"), Node("student", preset.student)),
        edges=(Edge(LABELS, "student", "ce", 0.5), Edge("teacher", "student", "kd", 0.5, options={"temperature": 4.0})),
        epochs=1, seed=0, batch_size=batch_size, optimizer=Optimizer(lr=0.05, weight_decay=5e-4),
    )


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


def reference_epoch(teacher: nn.Module, student: nn.Module, train: Split, info: DatasetInfo, spec: RunSpec,
                    device: torch.device, workers: int) -> float:
    """The official codebases' loop; returns seconds for one epoch."""
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
    student.train(), teacher.eval()

    def epoch() -> None:
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

    return timed(epoch, device)[1]


def timed(fn, device: torch.device) -> tuple[Any, float]:
    """fn's result and its wall-clock seconds, with the device's queue drained on both sides."""
    sync(device)
    start = time.perf_counter()
    out = fn()
    sync(device)
    return out, time.perf_counter() - start


def ours_epoch(models: dict[str, nn.Module], data: DeviceData, spec: RunSpec, device: torch.device, precision: str,
               cached: dict[str, torch.Tensor]) -> float:
    from kdrepro.engine.train import make_optimizer, train_epoch

    optimizer = make_optimizer(spec, models)
    generator = torch.Generator().manual_seed(0)
    return timed(lambda: train_epoch(spec, models, optimizer, data, generator, cached, 1, precision), device)[1]


def run_bench(preset_name: str, device_name: str, images: int, batch_size: int, repeats: int, workers: int,
              compile_mode: str | None = None) -> dict[str, Any]:
    from kdrepro.engine.train import frozen_logits, prepare_model
    from kdrepro.models import create_model

    preset, device = PRESETS[preset_name], torch.device(device_name)
    train, test, info = bench_data(preset, images)
    spec = kd_spec(preset, batch_size, pad_to=32)
    data = DeviceData(train, test, info, device=device, pad_to=32, crop_padding=spec.data.crop_padding, flip=spec.data.flip)
    shape = (info.channels, 32, 32)

    def models(prepare) -> dict[str, nn.Module]:
        torch.manual_seed(0)
        return {n.name: prepare(create_model(n.arch, info.num_classes, info.channels), n) for n in spec.nodes}

    theirs = models(lambda m, n: m.to(device).requires_grad_(n.trainable).train(n.trainable))
    ours = models(lambda m, n: prepare_model(m, n, device, compile_mode))  # compiled once, reused by every epoch
    # without augmentation a frozen teacher's logits are computed once per run, not per epoch: timed apart
    cached, cache_seconds = timed(lambda: frozen_logits(spec, ours, data), device)
    timings: dict[str, list[float]] = {"ours": [], "reference": []}
    for _ in range(repeats + 1):  # the first round warms up kernels, caches and compilation, and is dropped
        timings["reference"].append(reference_epoch(theirs["teacher"], theirs["student"], train, info, spec, device, workers))
        timings["ours"].append(ours_epoch(ours, data, spec, device, preset.precision, cached))
    flops = {n: count_flops(create_model(a, info.num_classes, info.channels), shape)
             for n, a in (("teacher", preset.teacher), ("student", preset.student))}
    # forward + backward (2x) of the student, and the teacher's forward where it runs every step
    step_flops = {"reference": 3 * flops["student"] + flops["teacher"],
                  "ours": 3 * flops["student"] + (0 if cached else flops["teacher"])}
    peak = matmul_peak(device, torch.bfloat16 if preset.precision == "bf16" and device.type == "cuda" else torch.float32)
    report: dict[str, Any] = {
        "preset": preset_name, "teacher": preset.teacher, "student": preset.student, "dataset": preset.dataset,
        "images": images, "batch_size": batch_size, "augment": preset.augment,
        "precision_ours": preset.precision if device.type == "cuda" else "fp32",
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU ({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads)",
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
    report = run_bench(args.preset, args.device, args.images, args.batch_size, args.repeats, args.workers, args.compile)
    print_report(report)
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(report, indent=2) + "\n")
    if not math.isfinite(report["speedup"]):
        raise SystemExit("kdrepro bench: a timing was not finite")
