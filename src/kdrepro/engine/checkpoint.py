"""Checkpoints, written atomically (kdrepro.io) and checked before they are trusted."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from kdrepro.io import atomic_write

FORMAT = "kdrepro-checkpoint/1"


class CheckpointError(RuntimeError):
    """A checkpoint is missing, corrupt or does not match the node that loads it."""


def save_torch(obj: Any, path: Path) -> None:
    atomic_write(path, lambda handle: torch.save(obj, handle))


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
