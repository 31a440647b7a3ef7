"""One registry for every architecture, one constructor signature:

    create_model(name, num_classes, in_channels=3, image_size=32, **options)

A builder registers itself with its family and depth (the size axis of the papers' figures).
Options are checked against the builder's keyword arguments before anything is built.
"""

from __future__ import annotations

import inspect
import math
from dataclasses import dataclass
from typing import Any, Callable

from torch import nn


class ModelError(ValueError):
    """An unknown architecture or option; the message lists what is available."""


@dataclass(frozen=True)
class ModelEntry:
    builder: Callable[..., nn.Module]
    family: str
    depth: int

    @property
    def options(self) -> list[str]:
        fixed = {"num_classes", "in_channels", "image_size"}
        return [p for p in inspect.signature(self.builder).parameters if p not in fixed]


MODELS: dict[str, ModelEntry] = {}


def fan_out_init(model: nn.Module, zero_linear_bias: bool = False) -> None:
    """The official CIFAR ResNet and WRN codes' initialisation: convs from N(0, sqrt(2 / (k*k*out))),
    BatchNorm weight 1 and bias 0, and (WRN) Linear biases 0."""
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            m.weight.data.normal_(0, math.sqrt(2.0 / (m.kernel_size[0] * m.kernel_size[1] * m.out_channels)))
        elif isinstance(m, nn.BatchNorm2d):
            m.weight.data.fill_(1)
            m.bias.data.zero_()
        elif isinstance(m, nn.Linear) and zero_linear_bias:
            m.bias.data.zero_()


def scaled(channels: int, width: float, multiple: int = 1) -> int:
    """`channels` times the width option, rounded to a multiple of `multiple` (groups, channel splits), at least one."""
    return max(multiple, round(channels * width / multiple) * multiple)


def register_model(name: str, *, family: str, depth: int):
    """Decorator: `builder(num_classes, in_channels, image_size, **options) -> nn.Module`."""

    def add(builder: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        if name in MODELS:
            raise ModelError(f"model {name!r} is registered twice")
        MODELS[name] = ModelEntry(builder, family, depth)
        return builder

    return add


def entry(name: str) -> ModelEntry:
    if name not in MODELS:
        raise ModelError(f"unknown model {name!r}; known models: {', '.join(list_models())}")
    return MODELS[name]


def list_models() -> list[str]:
    return sorted(MODELS, key=lambda n: (MODELS[n].family, MODELS[n].depth, n))


def model_info(name: str) -> dict[str, Any]:
    e = entry(name)
    return {"family": e.family, "depth": e.depth, "options": e.options}


def check_model_options(name: str, options: dict[str, Any]) -> None:
    unknown = sorted(set(options) - set(entry(name).options))
    if unknown:
        raise ModelError(f"model {name!r} has no option {unknown}; its options are {entry(name).options}")


def create_model(name: str, num_classes: int, in_channels: int = 3, image_size: int = 32, **options: Any) -> nn.Module:
    check_model_options(name, options)
    return entry(name).builder(num_classes=num_classes, in_channels=in_channels, image_size=image_size, **options)
