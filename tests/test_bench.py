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


@pytest.mark.parametrize("preset", ["cpu", "gpu"])
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
