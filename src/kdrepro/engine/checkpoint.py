"""Checkpoints, written atomically (kdrepro.io) and checked before they are trusted."""

from __future__ import annotations

import hashlib
import io
import time
from pathlib import Path
from typing import Any

import torch

from kdrepro.errors import CheckpointError
from kdrepro.graph import Node
from kdrepro.io import atomic_write

FORMAT = "kdrepro-checkpoint/1"
CHECKSUM = "content_sha256"  # the key of a torch file's checksum, over everything else it holds


class DamagedCheckpoint(CheckpointError):
    """A checkpoint cannot be read back as written: unreadable, truncated, or its checksum fails."""


def content_checksum(obj: Any) -> str:
    """sha256 over every value of a checkpoint-like object: tensors by dtype, shape and bytes; containers
    and plain values by type and repr. Independent of how torch lays the file out."""
    digest = hashlib.sha256()
    feed_checksum(digest, obj)
    return digest.hexdigest()


def feed_checksum(digest, obj: Any) -> None:
    if isinstance(obj, torch.Tensor):
        tensor = obj.detach().cpu().contiguous()
        digest.update(f"tensor {tensor.dtype} {tuple(tensor.shape)}\n".encode())
        digest.update(tensor.reshape(-1).view(torch.uint8).numpy())
    elif isinstance(obj, dict):
        digest.update(f"dict {len(obj)}\n".encode())
        for key, value in obj.items():
            feed_checksum(digest, key)
            feed_checksum(digest, value)
    elif isinstance(obj, (list, tuple)):
        digest.update(f"{type(obj).__name__} {len(obj)}\n".encode())
        for value in obj:
            feed_checksum(digest, value)
    elif obj is None or isinstance(obj, (bool, int, float, str)):
        digest.update(f"{type(obj).__name__} {obj!r}\n".encode())
    else:
        raise TypeError(f"a checkpoint cannot hold a {type(obj).__name__} (no content checksum for it)")


def save_torch(obj: dict[str, Any], path: Path, keep_previous: Path | None = None) -> None:
    """torch.save with the content checksum added, serialised in memory first so that a failing write
    is an OSError of the file (torch's own writer reports it as "unexpected pos")."""
    buffer = io.BytesIO()
    torch.save({**obj, CHECKSUM: content_checksum(obj)}, buffer)
    atomic_write(path, lambda handle: handle.write(buffer.getbuffer()), keep_previous)


def set_aside(path: Path) -> Path:
    """Rename a damaged file out of the way, keeping it for inspection: name.damaged-<time>."""
    aside = path.with_name(f"{path.name}.damaged-{time.strftime('%Y%m%dT%H%M%S')}")
    path.rename(aside)
    return aside


def load_checkpoint(path: Path, run: str | None = None) -> dict[str, Any]:
    """A kdrepro torch file, after its content checksum is verified. `run`: the run that wrote it (in its
    folder), named in a DamagedCheckpoint's message with the command that retrains it."""
    if not path.exists():
        raise CheckpointError(f"checkpoint {path} does not exist (train its run first)")
    retrain = (f"; retrain run {run}: `snakemake {path.parent / 'metrics.json'} --force` with the setting's "
               "--configfile (`kdrepro verify <setting>` checks every file of the setting)") if run else ""
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as err:  # torch raises several types for a truncated or foreign file
        raise DamagedCheckpoint(f"checkpoint {path} is corrupt or not a kdrepro checkpoint ({err}){retrain}") from None
    if not isinstance(ckpt, dict) or ckpt.get("format") != FORMAT:
        raise DamagedCheckpoint(f"checkpoint {path} is not a {FORMAT} file{retrain}")
    if CHECKSUM not in ckpt:
        raise DamagedCheckpoint(f"checkpoint {path} has no content checksum (written before kdrepro kept one), "
                                f"so it cannot be verified{retrain}")
    if ckpt.pop(CHECKSUM) != content_checksum(ckpt):
        raise DamagedCheckpoint(f"checkpoint {path} fails its content checksum: it changed after it was written "
                                f"(disk or copy damage){retrain}")
    return ckpt


def source_checkpoint(runs_root: Path, node: Node) -> Path:
    """The file a frozen or initialised node loads: its source run's final weights, or that run's snapshot
    of `frozen_epoch`."""
    name = "checkpoint.pt" if node.frozen_epoch is None else f"epoch{node.frozen_epoch:03d}.pt"
    return runs_root / (node.frozen_from or node.init_from) / name


def load_node_weights(path: Path, arch: str, options: dict[str, Any], num_classes: int,
                      run: str | None = None) -> dict[str, torch.Tensor]:
    """The weights of the run's evaluated node, after checking that they fit the loading node."""
    ckpt = load_checkpoint(path, run)
    saved = ckpt["model"]
    wanted = {"arch": arch, "options": options, "num_classes": num_classes}
    found = {k: saved[k] for k in wanted}
    if found != wanted:
        raise CheckpointError(f"checkpoint {path} holds {found}, but the node needs {wanted}")
    return saved["state_dict"]


def model_record(arch: str, options: dict[str, Any], num_classes: int, module: torch.nn.Module) -> dict[str, Any]:
    return {
        "arch": arch,
        "options": options,
        "num_classes": num_classes,
        "state_dict": {k: v.detach().cpu().clone() for k, v in module.state_dict().items()},
    }
