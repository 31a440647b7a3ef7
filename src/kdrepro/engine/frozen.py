"""What a frozen node computes for the runs that read it: computed once, kept beside the run it loads.

Before its first epoch a run with a frozen node needs the node's outputs on the whole training split (its
logits and what the edges read: an embedding, a feature map, a named layer; looked up by image index, as a
frozen node sees the same images every epoch without augmentation), the embeddings a CCKD sampler
clusters, and the node's test accuracy (read off its logits on the test split). In the default setting
resnet110 is frozen in 28 runs, and each computed all of this again: most of the 13 job-minutes that the
default DAG's 87 runs with a frozen node spent outside their epoch loops (docs/benchmarks.md). FrozenOutputs
computes each once and shares it.

Where: `frozen/` in the directory of the run whose checkpoint the node loads
(results/<setting>/runs/<teacher>/frozen/), not the user cache (~/.cache/kdrepro). What is kept there is
derived from that checkpoint and read only by runs of the same results: it is deleted with the teacher's
run, lies on the file system that a cluster's jobs already share for the checkpoint, and stays bounded: one
entry per teacher checkpoint, split, outputs read and environment, as the writer of a newer version (other
weights: a retrained teacher; other code or torch) removes the older. In the user cache every code version
would leave its own copy of feature maps that are tens of MB each. The files are not `.pt`, so `kdrepro
verify` (which checks the checkpoints) leaves them alone: a damaged entry is never trusted but computed again.

An entry is keyed on what changes the numbers: the node's weights as loaded (the content checksum of its
state dict) and its architecture; the split as the run sees it (the content checksum of its uint8 images
after subset, hold-out and padding, of its labels and of the normalisation's statistics); the outputs read;
the device (on CUDA also the GPU, the CUDA and cuDNN versions and the TF32 flags); the CPU kernels
(kdrepro.kernels.selection: the pin, the dispatch, the thread count); the compile mode; torch's version; and
the package's source (architectures, taps, normalisation and this pass all live there). Outputs of passes
that read different things are not mixed: a pass that taps a layer hooks the network, which under
torch.compile may change how (so to which bits) the logits are computed. The test accuracy comes from the
test-split entry, not from the teacher's metrics.json: a student may see another test view (subset,
normalisation) or compile its teacher, and the entry is the same number by construction. An entry holds its key
and a content checksum: a reader that finds another key, a failing checksum or an unreadable file computes
the outputs again and writes them anew. Writes are atomic (kdrepro.io): two runs computing one entry each
write a whole file, the last rename wins, and a reader never sees half of one.
"""

from __future__ import annotations

import functools
import hashlib
import json
import sys
from pathlib import Path
from typing import Any, Sequence

import torch
from torch import nn

from kdrepro import kernels
from kdrepro.catalog import code_version
from kdrepro.data.device import DeviceData
from kdrepro.engine.checkpoint import CHECKSUM, content_checksum, save_torch, source_checkpoint
from kdrepro.engine.edges import forward
from kdrepro.graph import Node
from kdrepro.io import WriteError

FOLDER = "frozen"  # in the loaded run's directory
SUFFIX = ".outputs"  # a torch file; not .pt, which `kdrepro verify` checks as a checkpoint
FORMAT = "kdrepro-frozen-outputs/1"


@functools.cache
def source_digest() -> str:
    """sha256 of every source file of the package: any change of code may change what a node computes."""
    return code_version(folders=("",))


def device_identity(device: torch.device) -> dict[str, Any]:
    """What picks the kernels on `device`: on CUDA the GPU and the libraries, on the CPU kdrepro.kernels."""
    identity: dict[str, Any] = {"type": device.type}
    if device.type == "cuda":
        identity |= {"gpu": torch.cuda.get_device_name(device), "cuda": torch.version.cuda,
                     "cudnn": torch.backends.cudnn.version(),
                     "tf32": [torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32]}
    return identity | {"cpu_kernels": kernels.selection()}  # on CUDA too: the host computes a little of every step


@torch.no_grad()
def compute(model: nn.Module, data: DeviceData, split: str, reads: Sequence[str]) -> dict[str, torch.Tensor]:
    """The node's logits and `reads` on the whole split, in the evaluation batches, concatenated."""
    batches = [forward(model, list(reads), images) for images, _ in data.eval_batches(split)]
    return {kind: torch.cat([b[kind] for b in batches]) for kind in batches[0]}


class FrozenOutputs:
    """The outputs of a run's frozen nodes on `data`, kept beside the runs they load (under `runs_root`) and
    read from there by every later run of the same key; `runs_root` None computes them every time (a
    benchmark timing the pass itself). `compile_mode`: the one the nodes were compiled with."""

    def __init__(self, data: DeviceData, runs_root: Path | None = None, compile_mode: str | None = None):
        self.data, self.runs_root, self.compile_mode = data, runs_root, compile_mode
        self.split_digests: dict[str, str] = {}

    def outputs(self, node: Node, model: nn.Module, split: str, reads: Sequence[str]) -> dict[str, torch.Tensor]:
        """The frozen `node`'s logits and `reads` on `split` ({"logits": ..., read: ...}); `model` is its network."""
        if self.runs_root is None or node.weights_sha256:  # an external teacher's file has no run to keep them beside
            return compute(model, self.data, split, reads)
        # the slot names what is computed, the version by what: a newer version replaces an older one
        checkpoint = source_checkpoint(self.runs_root, node)
        slot = {"checkpoint": checkpoint.name, "split": split, "data": self.split_digest(split), "reads": sorted(reads),
                "device": device_identity(self.data.device), "compile": self.compile_mode}
        version = {"weights": content_checksum(model.state_dict()), "arch": node.arch, "options": node.options,
                   "source": source_digest(), "torch": torch.__version__}
        key = json.dumps({"slot": slot, "version": version}, sort_keys=True)
        prefix = f"{checkpoint.stem}-{split}-{short_hash(slot)}"
        path = checkpoint.parent / FOLDER / f"{prefix}-{short_hash(version)}{SUFFIX}"
        found = stored(path, key)
        if found is not None:
            return {kind: tensor.to(self.data.device) for kind, tensor in found.items()}
        computed = compute(model, self.data, split, reads)
        keep(path, key, computed, prefix)
        return computed

    def split_digest(self, split: str) -> str:
        """The split as the run sees it: its images (subset, held out, padded), labels and normalisation."""
        if split not in self.split_digests:
            images, labels = self.data.splits[split]
            self.split_digests[split] = content_checksum({"images": images, "labels": labels, "mean": self.data.mean,
                                                          "std": self.data.std})
        return self.split_digests[split]


def short_hash(part: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(part, sort_keys=True).encode()).hexdigest()[:12]


def stored(path: Path, key: str) -> dict[str, torch.Tensor] | None:
    """The outputs kept at `path` under `key`; None if there are none (or another process just replaced
    them), or if the file is damaged, partial or of another key: then it says so, and they are computed again."""
    try:
        saved = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        return None
    except Exception as err:  # torch raises several types for a truncated or foreign file
        problem = f"it cannot be read ({err})"
    else:
        checksum = saved.pop(CHECKSUM, None) if isinstance(saved, dict) else None
        if checksum is not None and saved.get("format") == FORMAT and saved.get("key") == key and checksum == content_checksum(saved):
            return saved["outputs"]
        problem = "its content checksum or key does not match"
    print(f"[kdrepro] frozen outputs {path}: {problem}; computing them again", file=sys.stderr)
    return None


def keep(path: Path, key: str, outputs: dict[str, torch.Tensor], prefix: str) -> None:
    """Write the outputs atomically, then remove the older versions of their slot (files named `prefix`-*).
    A folder that cannot be written costs later runs the computation again, nothing else."""
    try:
        save_torch({"format": FORMAT, "key": key, "outputs": {kind: t.cpu() for kind, t in outputs.items()}}, path)
    except WriteError as err:
        print(f"[kdrepro] frozen outputs not kept for later runs: {err}", file=sys.stderr)
        return
    for older in path.parent.glob(f"{prefix}-*{SUFFIX}"):
        if older != path:
            older.unlink(missing_ok=True)
