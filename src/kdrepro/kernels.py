"""The CPU kernels' instruction set, pinned so that a run gives the same bits on every x86 host that has it.

PyTorch picks its CPU kernels (ATen's vectorised loops, oneDNN's convolutions, MKL's GEMMs) by the best
instruction set of the host: the same seed gives other numbers on an AVX-512 host than on an AVX2 one,
since wider vectors sum in another order. Three variables fix the choice; each library reads its own the
first time it computes, so `pin` must run before the first tensor operation (importing torch is fine):
  ATEN_CPU_CAPABILITY  ATen's dispatch (default, avx2, avx512)
  ONEDNN_MAX_CPU_ISA   the highest instruction set oneDNN may use
  MKL_CBWR             MKL's conditional numerical reproducibility branch
Threads matter too (reductions split by thread): settings fix `threads_per_job`.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

ISA_ENV = {
    "avx2": {"ATEN_CPU_CAPABILITY": "avx2", "ONEDNN_MAX_CPU_ISA": "AVX2", "MKL_CBWR": "AVX2"},
    "avx512": {"ATEN_CPU_CAPABILITY": "avx512", "ONEDNN_MAX_CPU_ISA": "AVX512_CORE", "MKL_CBWR": "AVX512"},
}
ISAS = list(ISA_ENV)
# the flags each level needs (as /proc/cpuinfo names them); ATen's avx512 path asks for these four
ISA_FLAGS = {"avx2": {"avx2", "fma"}, "avx512": {"avx512f", "avx512bw", "avx512vl", "avx512dq"}}


def host_isa(cpuinfo: Path = Path("/proc/cpuinfo")) -> str:
    """The best pinnable instruction set of this host: avx512, avx2, or default (neither, or not Linux)."""
    try:
        flags = next((set(line.split(":", 1)[1].split()) for line in cpuinfo.read_text().splitlines()
                      if line.startswith("flags")), set())
    except OSError:
        return "default"
    return next((isa for isa in ("avx512", "avx2") if ISA_FLAGS[isa] <= flags), "default")


def pin(isa: str | None) -> None:
    """Pin the kernels to `isa` (None: leave PyTorch's choice). Refuses an instruction set the host lacks,
    which PyTorch would otherwise ignore without a word."""
    if isa is None:
        return
    if isa not in ISA_ENV:
        raise ValueError(f"cpu_isa must be one of {', '.join(ISAS)} or null, got {isa!r}")
    host = host_isa()
    if host == "default" or (isa == "avx512" and host != "avx512"):
        raise ValueError(f"cpu_isa {isa}: this host's CPU has only {host}; a setting pinned to {isa} runs on hosts that have it")
    os.environ.update(ISA_ENV[isa])


def in_use() -> dict[str, str | None]:
    """What metrics.json records: the pin, the kernels ATen dispatched to, and the host's own best."""
    import torch

    return {"cpu_isa": os.environ.get("ATEN_CPU_CAPABILITY"), "cpu_capability": torch.backends.cpu.get_cpu_capability(),
            "host_isa": host_isa()}


def selection() -> dict[str, Any]:
    """Everything that picks this process's CPU kernels, for what keeps computed tensors to be keyed on: in_use(),
    the variables `pin` sets (each may also come from the environment) and the thread count."""
    import torch

    pinned = {name: os.environ.get(name) for name in ISA_ENV["avx2"]}
    return in_use() | pinned | {"threads": torch.get_num_threads()}
