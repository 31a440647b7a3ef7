"""One registry for every architecture, one constructor signature:

    create_model(name, num_classes, in_channels=3, image_size=32, **options)

A builder registers itself with its family and depth (the size axis of the papers' figures).
Options are checked against the builder's keyword arguments before anything is built.
"""

from __future__ import annotations

import inspect
import math
import typing
from dataclasses import dataclass
from typing import Any, Callable

from torch import nn

from kdrepro.catalog import ModelError, ModelFacts, annotation_text, check_model_options, list_models, record
from kdrepro.models.width import scaled  # noqa: F401  (the builders import it from here, with register_model)


@dataclass(frozen=True)
class ModelEntry:
    builder: Callable[..., nn.Module]
    family: str
    depth: int


def builder_facts(builder: Callable[..., nn.Module], family: str, depth: int) -> ModelFacts:
    """The options a builder takes beyond the fixed three, with their annotated types (kdrepro.catalog)."""
    fixed = {"num_classes", "in_channels", "image_size"}
    hints = typing.get_type_hints(builder)
    options = {p: annotation_text(hints.get(p, Any)) for p in inspect.signature(builder).parameters if p not in fixed}
    return ModelFacts(family, depth, options)


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


def register_model(name: str, *, family: str, depth: int):
    """Decorator: `builder(num_classes, in_channels, image_size, **options) -> nn.Module`."""

    def add(builder: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        if name in MODELS:
            raise ModelError(f"model {name!r} is registered twice")
        MODELS[name] = ModelEntry(builder, family, depth)
        record("model", name, builder_facts(builder, family, depth))
        return builder

    return add


def entry(name: str) -> ModelEntry:
    if name not in MODELS:
        raise ModelError(f"unknown model {name!r}; known models: {', '.join(list_models())}")
    return MODELS[name]


def create_model(name: str, num_classes: int, in_channels: int = 3, image_size: int = 32, **options: Any) -> nn.Module:
    check_model_options(name, options)
    return entry(name).builder(num_classes=num_classes, in_channels=in_channels, image_size=image_size, **options)
