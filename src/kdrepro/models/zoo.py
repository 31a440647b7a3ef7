"""Every architecture, registered: importing this module builds the registry that create_model reads (torch).

What only checks or lists models reads kdrepro.catalog instead, and never loads this.
"""

from kdrepro.models import densenet, googlenet, mobilenetv2, plane, resnet, resnet_imagenet, resnext, shufflenetv2  # noqa: F401  (registers the builders)
from kdrepro.models import wrn  # noqa: F401,E402  (KTG's wide resnets)
from kdrepro.models import maxout  # noqa: F401,E402  (FitNets' maxout networks)
from kdrepro.models.features import PENULTIMATE, FeatureTap
from kdrepro.models.registry import MODELS, create_model, register_model

__all__ = ["MODELS", "PENULTIMATE", "FeatureTap", "create_model", "register_model"]
