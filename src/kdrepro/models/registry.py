"""One registry for every architecture, one constructor signature:

    create_model(name, num_classes, in_channels=3, image_size=32, **options)

A builder registers itself with its family and depth (the size axis of the papers' figures).
Options are checked against the builder's keyword arguments before anything is built.
"""

from __future__ import annotations

import functools
import inspect
import math
import typing
from dataclasses import dataclass
from typing import Any, Callable

from torch import nn

from kdrepro.typecheck import expected, fits


class ModelError(ValueError):
    """An unknown architecture or option; the message lists what is available."""


@dataclass(frozen=True)
class ModelEntry:
    builder: Callable[..., nn.Module]
    family: str
    depth: int

    # cached: every run spec checks its nodes' options against them, thousands in a paper setting
    @functools.cached_property
    def options(self) -> list[str]:
        fixed = {"num_classes", "in_channels", "image_size"}
        return [p for p in inspect.signature(self.builder).parameters if p not in fixed]

    @functools.cached_property
    def option_types(self) -> dict[str, Any]:
        return typing.get_type_hints(self.builder)


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


def family_models(family: str) -> list[str]:
    """The registered models of a family (settings give model options per family); [] for an unknown one."""
    return [name for name in list_models() if MODELS[name].family == family]


def list_families() -> list[str]:
    return sorted({e.family for e in MODELS.values()})


def model_info(name: str) -> dict[str, Any]:
    e = entry(name)
    return {"family": e.family, "depth": e.depth, "options": e.options}


def check_model_options(name: str, options: dict[str, Any]) -> None:
    """Every option is one the builder takes, of the type it declares; a width is positive."""
    unknown = sorted(set(options) - set(entry(name).options))
    if unknown:
        raise ModelError(f"model {name!r} has no option {unknown}; its options are {entry(name).options}")
    types = entry(name).option_types
    for option, value in options.items():
        if not fits(value, types.get(option, Any)):
            raise ModelError(f"model {name!r}: option {option} must be {expected(types[option])}, got {value!r}")
    if "width" in options and not options["width"] > 0:
        raise ModelError(f"model {name!r}: option width scales every layer and must be a positive number, got {options['width']!r}")


def create_model(name: str, num_classes: int, in_channels: int = 3, image_size: int = 32, **options: Any) -> nn.Module:
    check_model_options(name, options)
    return entry(name).builder(num_classes=num_classes, in_channels=in_channels, image_size=image_size, **options)
