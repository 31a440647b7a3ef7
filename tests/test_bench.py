"""`kdrepro bench` in a small mode: a well-formed report (not a timing), and the FLOP counter by hand."""

import json
import subprocess
import sys

import pytest
from torch import nn

from conftest import fashion_mnist_available
from kdrepro.bench import count_flops


def test_flop_counter_on_a_network_counted_by_hand():
    net = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 8 * 8, 10))
    # conv: 4 output maps of 8x8, each 3*3*3 multiply-adds; linear: 256 x 10 multiply-adds
    assert count_flops(net, (3, 8, 8)) == 2 * (4 * 8 * 8 * 27 + 256 * 10)


@pytest.mark.parametrize("preset", ["cpu", pytest.param("gpu", marks=pytest.mark.slow)])  # the GPU preset on a CPU: slow
def test_bench_writes_a_well_formed_report(tmp_path, preset):
    if preset == "cpu" and not fashion_mnist_available():
        pytest.skip("the cpu preset reads the real Fashion-MNIST")
    out = tmp_path / "bench.json"
    proc = subprocess.run([sys.executable, "-m", "kdrepro.cli", "bench", "--preset", preset, "--device", "cpu",
                           "--images", "256", "--batch-size", "64", "--repeats", "1", "--workers", "0",
                           "--json", str(out)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    report = json.loads(out.read_text())
    for name in ("ours", "reference"):
        assert report[name]["images_per_second"] > 0 and len(report[name]["epoch_seconds"]) == 1
        assert 0 < report[name]["fraction_of_matmul_peak"]
    assert report["speedup"] == pytest.approx(report["reference"]["best_epoch_seconds"] / report["ours"]["best_epoch_seconds"])
    assert report["flops_per_image"]["teacher"] > report["flops_per_image"]["student"] > 0
    assert "speed-up" in proc.stdout


def bench(tmp_path, *flags):
    """Run `kdrepro bench` in a small mode; its JSON report."""
    if not fashion_mnist_available():
        pytest.skip("these modes train on the real Fashion-MNIST")
    out = tmp_path / "bench.json"
    proc = subprocess.run([sys.executable, "-m", "kdrepro.cli", "bench", "--device", "cpu", "--images", "256",
                           "--batch-size", "64", "--workers", "0", *flags, "--json", str(out)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    return json.loads(out.read_text()), proc.stdout


def test_accuracy_mode_reports_every_path_over_the_seeds(tmp_path):
    report, stdout = bench(tmp_path, "--accuracy", "--epochs", "1", "--seeds", "0", "1", "--precision", "bf16", "--test-images", "200")
    assert set(report["paths"]) == {"reference (fp32)", "ours (fp32)", "ours (bf16)"}
    for path in report["paths"].values():
        assert len(path["test_acc"]) == 2 and all(0 <= a <= 100 for a in path["test_acc"])
        assert path["mean"] == pytest.approx(sum(path["test_acc"]) / 2)
    fast, fp32 = report["paths"]["ours (bf16)"], report["paths"]["ours (fp32)"]
    assert report["fast_minus_fp32"] == pytest.approx(fast["mean"] - fp32["mean"])
    assert report["fast_within_spread"] == (abs(report["fast_minus_fp32"]) <= fp32["std"])
    assert "fast path - fp32" in stdout


def test_stack_mode_reports_the_aggregate_gain(tmp_path):
    report, stdout = bench(tmp_path, "--stack", "2", "--repeats", "1", "--test-images", "200")
    assert report["runs"] == 2 and report["stacked_epoch_seconds"] > 0 and report["one_by_one_epoch_seconds"] > 0
    assert report["speedup"] == pytest.approx(report["one_by_one_epoch_seconds"] / report["stacked_epoch_seconds"])
    assert "aggregate speed-up" in stdout
