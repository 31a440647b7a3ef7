"""Atomic output files and checkpoints that can be checked before they are trusted."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

import torch

FORMAT = "kdrepro-checkpoint/1"


class CheckpointError(RuntimeError):
    """A checkpoint is missing, corrupt or does not match the node that loads it."""


def atomic_write(path: Path, write) -> None:
    """Write through a temporary file in the same folder, then rename: readers never see half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            write(handle)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def save_torch(obj: Any, path: Path) -> None:
    atomic_write(path, lambda handle: torch.save(obj, handle))


def save_json(obj: Any, path: Path) -> None:
    atomic_write(path, lambda handle: handle.write((json.dumps(obj, indent=2, sort_keys=True) + "\n").encode()))


def save_text(text: str, path: Path) -> None:
    atomic_write(path, lambda handle: handle.write(text.encode()))


def load_checkpoint(path: Path) -> dict[str, Any]:
    if not path.exists():
        raise CheckpointError(f"checkpoint {path} does not exist (train its run first)")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as err:  # torch raises several types for a truncated or foreign file
        raise CheckpointError(f"checkpoint {path} is corrupt or not a kdrepro checkpoint: {err}") from None
    if not isinstance(ckpt, dict) or ckpt.get("format") != FORMAT:
        raise CheckpointError(f"checkpoint {path} is not a {FORMAT} file")
    return ckpt


def load_node_weights(path: Path, arch: str, options: dict[str, Any], num_classes: int) -> dict[str, torch.Tensor]:
    """The weights of the run's evaluated node, after checking that they fit the loading node."""
    ckpt = load_checkpoint(path)
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
