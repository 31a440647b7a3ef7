"""Pinning the CPU instruction set (kdrepro.kernels): read from the host, refused where the host lacks it,
applied before the first tensor operation, recorded in metrics.json."""

import json
import subprocess
import sys

import pytest

from kdrepro import kernels


def cpuinfo(tmp_path, flags: str):
    path = tmp_path / "cpuinfo"
    path.write_text(f"processor\t: 0\nmodel name\t: test\nflags\t\t: fpu sse {flags}\n\nprocessor\t: 1\nflags\t\t: fpu sse {flags}\n")
    return path


@pytest.mark.parametrize("flags,expected", [
    ("avx avx2 fma", "avx2"),
    ("avx avx2 fma avx512f avx512bw avx512vl avx512dq avx512_bf16", "avx512"),
    ("avx avx2 fma avx512f", "avx2"),  # AVX-512 without the subsets ATen's avx512 path needs
    ("avx", "default"),
])
def test_host_isa_from_cpuinfo(tmp_path, flags, expected):
    assert kernels.host_isa(cpuinfo(tmp_path, flags)) == expected


def test_an_isa_the_host_lacks_is_refused(monkeypatch):
    monkeypatch.setattr(kernels, "host_isa", lambda: "avx2")
    with pytest.raises(ValueError, match="cpu_isa avx512: this host's CPU has only avx2"):
        kernels.pin("avx512")
    with pytest.raises(ValueError, match="cpu_isa must be one of avx2, avx512"):
        kernels.pin("sse")


def test_pin_sets_the_three_libraries_before_the_first_operation():
    if kernels.host_isa() == "default":
        pytest.skip("this host has no AVX2")
    code = ("from kdrepro import kernels; import torch; kernels.pin('avx2'); torch.ones(3).sum(); "
            "import json; print(json.dumps(kernels.in_use()))")
    env = {k: v for k, v in __import__("os").environ.items() if k not in kernels.ISA_ENV["avx2"]}
    out = json.loads(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env).stdout)
    assert out["cpu_isa"] == "avx2" and out["cpu_capability"] == "AVX2" and out["host_isa"] in ("avx2", "avx512")
