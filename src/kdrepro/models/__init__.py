"""Architectures: one registry, one constructor signature, hooks for intermediate features."""

from kdrepro.models import densenet, googlenet, mobilenetv2, plane, resnet, resnet_imagenet, resnext, shufflenetv2  # noqa: F401  (registers the builders)
from kdrepro.models import wrn  # noqa: F401,E402  (KTG's wide resnets)
from kdrepro.models import maxout  # noqa: F401,E402  (FitNets' maxout networks)
from kdrepro.models.features import PENULTIMATE, FeatureTap
from kdrepro.models.registry import (
    MODELS,
    ModelError,
    check_model_options,
    create_model,
    family_models,
    list_families,
    list_models,
    model_info,
    register_model,
)

__all__ = [
    "MODELS", "PENULTIMATE", "FeatureTap", "ModelError", "check_model_options", "create_model", "family_models",
    "list_families", "list_models", "model_info", "register_model",
]
