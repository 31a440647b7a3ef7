"""Name -> function registries for edge losses and gates.

A loss also declares what it reads (LOSS_INFO): which output of its nodes (`inputs`: "logits", the
default; "embedding", the output of the module every model names "embedding"; "feature_map", that
module's input, the last feature map before pooling), whether it is a batch-level loss (`batch`),
and an optional `module` factory for edges with parameters (regressors, embedding heads).
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass
from typing import Callable

import torch

from kdrepro.catalog import EdgeFacts, LossError, record

LossFn = Callable[..., torch.Tensor]

LOSSES: dict[str, LossFn] = {}
GATES: dict[str, LossFn] = {}


def _register(table: dict[str, LossFn], kind: str):
    def decorator_for(name: str):
        def decorator(fn: LossFn) -> LossFn:
            if name in table:
                raise LossError(f"{kind} {name!r} is registered twice")
            table[name] = fn
            return fn

        return decorator

    return decorator_for


_register_gate_fn = _register(GATES, "gate")


def register_gate(name: str):
    """`@register_gate("correct")`: fn(source, target, labels, progress, **options) -> per-sample weights."""

    def decorator(fn: LossFn) -> LossFn:
        _register_gate_fn(name)(fn)
        record("gate", name, EdgeFacts(option_names(fn, 3)))
        return fn

    return decorator


INPUTS = ("logits", "embedding", "feature_map")
# Edge options that every loss reading features (inputs other than logits) takes: the module path read
# at the source and at the target node in place of the `inputs` default (e.g. FitNets' hint and guided
# layers, "features.h1" and "features.h10"; a path ending in ":input" reads the module's input).
LAYER_OPTIONS = ("source_layer", "target_layer")


@dataclass(frozen=True)
class LossInfo:
    """What an edge loss reads and owns.

    inputs: the output of the source and target nodes the loss gets.
    batch: the loss is defined on the whole batch (a correlation matrix, say); its function still
        returns one value per sample, whose mean is the batch loss, so edge weights and the
        epoch-mean logging work unchanged. Only the "through" gate is allowed on such an edge.
    module: factory(source_example, target_example, **options) -> nn.Module, built once per edge
        after the models exist; the module's forward(source, target) returns the pair the loss
        function then gets; its parameters are trained with the target node and checkpointed.
        Options go to the factory and to the loss function by their signatures.
    """

    inputs: str = "logits"
    batch: bool = False
    module: Callable | None = None


LOSS_INFO: dict[str, LossInfo] = {}
_register_loss_fn = _register(LOSSES, "loss")


def register_loss(name: str, *, inputs: str = "logits", batch: bool = False, module: Callable | None = None):
    """`@register_loss("cc", inputs="embedding", batch=True)`; see LossInfo."""
    if inputs not in INPUTS:
        raise LossError(f"loss {name!r}: inputs must be one of {INPUTS}, got {inputs!r}")

    def decorator(fn: LossFn) -> LossFn:
        _register_loss_fn(name)(fn)
        LOSS_INFO[name] = LossInfo(inputs, batch, module)
        record("loss", name, EdgeFacts(accepted_options(fn, LOSS_INFO[name]), inputs, batch))
        return fn

    return decorator


def option_names(fn: Callable, skip: int) -> tuple[str, ...]:
    return tuple(inspect.signature(fn).parameters)[skip:]


def split_options(name: str, options: dict) -> tuple[dict, dict]:
    """An edge's options split into (the loss function's, the module factory's), by their signatures."""
    info = LOSS_INFO.get(name, LossInfo())
    options = {k: v for k, v in options.items() if k not in LAYER_OPTIONS}  # the engine's, not the loss's
    if info.module is None:
        return options, {}
    for_module = set(option_names(info.module, 2))
    for_loss = set(option_names(LOSSES[name], 3))
    return ({k: v for k, v in options.items() if k in for_loss or k not in for_module},
            {k: v for k, v in options.items() if k in for_module})


def accepted_options(fn: LossFn, info: LossInfo) -> tuple[str, ...]:
    """An edge's options for this loss: the function's, its module factory's, and the layer options of a
    loss that reads features (kdrepro.catalog checks edges against them)."""
    accepted = list(option_names(fn, 3))
    if info.module is not None:
        accepted += [o for o in option_names(info.module, 2) if o not in accepted]
    if info.inputs != "logits":
        accepted += list(LAYER_OPTIONS)
    return tuple(accepted)
