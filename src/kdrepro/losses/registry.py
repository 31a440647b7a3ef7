"""Name -> function registries for edge losses and gates."""

from __future__ import annotations

import inspect
from typing import Callable

import torch

LossFn = Callable[..., torch.Tensor]

LOSSES: dict[str, LossFn] = {}
GATES: dict[str, LossFn] = {}


class LossError(ValueError):
    """An edge names an unknown loss or gate, or passes an option it does not take."""


def _register(table: dict[str, LossFn], kind: str):
    def decorator_for(name: str):
        def decorator(fn: LossFn) -> LossFn:
            if name in table:
                raise LossError(f"{kind} {name!r} is registered twice")
            table[name] = fn
            return fn

        return decorator

    return decorator_for


register_loss = _register(LOSSES, "loss")
register_gate = _register(GATES, "gate")


def check_options(table: dict[str, LossFn], kind: str, name: str, options: dict) -> None:
    """Fail before training when an edge names an unknown function or option."""
    if name not in table:
        raise LossError(f"unknown {kind} {name!r}; known: {', '.join(sorted(table))}")
    accepted = list(inspect.signature(table[name]).parameters)[3:]
    unknown = sorted(set(options) - set(accepted))
    if unknown:
        raise LossError(f"{kind} {name!r} takes no option {unknown[0]!r}; it takes: {', '.join(accepted) or 'none'}")
