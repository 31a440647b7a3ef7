"""An external teacher's file (kdrepro.teachers): read, and loaded strictly into the network that names it.

The file holds a plain state_dict of one of the package's architectures (parameter name -> tensor, as
`torch.save(model.state_dict(), path)` writes it) or a kdrepro checkpoint.pt of another setting (its evaluated
node, after its content checksum is verified). Every key and shape must fit: a file that does not is an error
that says how (keys missing or left over, shapes, a classifier for another number of classes).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from kdrepro.engine.checkpoint import FORMAT, load_checkpoint
from kdrepro.errors import CheckpointError
from kdrepro.models.zoo import create_model
from kdrepro.teachers import ExternalTeacher

SHOWN = 4  # keys named in an error, of each kind


def read_weights(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, Any] | None]:
    """The weights in `path` and, for a kdrepro checkpoint, the record of its evaluated node (arch, options,
    num_classes); None for a plain state_dict."""
    try:
        content = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # torch raises several types for a file it cannot read
        raise CheckpointError(f"{path} cannot be read as a torch file ({err})") from None
    if isinstance(content, dict) and content.get("format") == FORMAT:
        record = load_checkpoint(path)["model"]  # read again, its content checksum verified
        return record["state_dict"], record
    if isinstance(content, dict) and content and all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in content.items()):
        return dict(content), None
    raise CheckpointError(f"{path} holds neither a state_dict (parameter name -> tensor, as torch.save(model.state_dict()) "
                          f"writes it) nor a {FORMAT} file")


def fit_problem(model: nn.Module, weights: dict[str, torch.Tensor], num_classes: int) -> str | None:
    """Why `weights` do not load strictly into `model` (None: they do). Where only the classifier's tensors differ,
    and only in their first dimension, the weights are for another number of classes, and the message says so."""
    wanted = model.state_dict()
    missing = [k for k in wanted if k not in weights]
    extra = [k for k in weights if k not in wanted]
    shapes = {k: (tuple(weights[k].shape), tuple(v.shape)) for k, v in wanted.items() if k in weights and weights[k].shape != v.shape}
    if not (missing or extra or shapes):
        return None
    found_classes = {found[0] for found, need in shapes.values() if found and need[:1] == (num_classes,) and found[1:] == need[1:]}
    if not (missing or extra) and len(found_classes) == 1 and all(
            found and need[:1] == (num_classes,) and found[1:] == need[1:] for found, need in shapes.values()):
        return (f"its classifier is for {found_classes.pop()} classes ({', '.join(f'{k} {found}' for k, (found, _) in shapes.items())}), "
                f"the dataset has {num_classes}")
    parts = [f"{len(keys)} {what}: {', '.join(keys[:SHOWN])}{', ...' if len(keys) > SHOWN else ''}"
             for what, keys in (("keys missing", missing), ("keys the network does not have", extra)) if keys]
    if shapes:
        shown = [f"{k} {found} (the network's {need})" for k, (found, need) in list(shapes.items())[:SHOWN]]
        parts.append(f"{len(shapes)} shapes differ: {', '.join(shown)}{', ...' if len(shapes) > SHOWN else ''}")
    return "; ".join(parts)


def load_external(model: nn.Module, path: Path, arch: str, options: dict[str, Any], num_classes: int) -> None:
    """`model` (an `arch` with `options` for `num_classes` classes) given the weights in `path`, strictly."""
    weights, record = read_weights(path)
    if record is not None and (record["arch"], record["num_classes"]) != (arch, num_classes):
        raise CheckpointError(f"{path} is a kdrepro checkpoint of {record['arch']} for {record['num_classes']} classes "
                              f"(options {record['options']}), not of {arch} for {num_classes}")
    problem = fit_problem(model, weights, num_classes)
    if problem is not None:
        hint = f" (the checkpoint's options: {record['options']})" if record is not None else ""
        raise CheckpointError(f"{path} does not fit {arch} with options {options}{hint}: {problem}")
    model.load_state_dict(weights)


def check_teacher(teacher: ExternalTeacher, num_classes: int, channels: int, image_size: int) -> None:
    """The teacher's file loads strictly into its network for its dataset; else an error naming the setting key."""
    model = create_model(teacher.arch, num_classes, channels, image_size, **teacher.options)
    try:
        load_external(model, teacher.path, teacher.arch, teacher.options, num_classes)
    except CheckpointError as err:
        raise CheckpointError(f"config key {teacher.key}.path: {err} ({teacher.key}: arch {teacher.arch}, options "
                              f"{teacher.options}, dataset {teacher.dataset} with {num_classes} classes)") from None
