"""Read named intermediate outputs through forward hooks, so models need no rewriting
(torchdistill's pattern): FitNets hints and CCKD embeddings use module paths."""

from __future__ import annotations

import torch
from torch import nn

from kdrepro.models.registry import ModelError

PENULTIMATE = "embedding"  # every registered model names its penultimate representation so
INPUT_SUFFIX = ":input"  # "embedding:input" taps the module's input (the last feature map, before pooling)


class FeatureTap:
    """`with FeatureTap(model, ["layer2", "embedding"]) as tap: model(x); tap.features["layer2"]`.
    A path ending in ":input" keeps the module's (first) input instead of its output."""

    def __init__(self, model: nn.Module, paths: list[str]):
        self.features: dict[str, torch.Tensor] = {}
        self.handles = []
        for path in paths:
            try:
                module = model.get_submodule(path.removesuffix(INPUT_SUFFIX))
            except AttributeError:
                names = [n for n, _ in model.named_modules() if n]
                raise ModelError(f"{type(model).__name__} has no module {path!r}; modules: {names[:40]}") from None
            self.handles.append(module.register_forward_hook(self.keeper(path)))

    def keeper(self, path: str):
        def keep(module, inputs, output):
            self.features[path] = inputs[0] if path.endswith(INPUT_SUFFIX) else output

        return keep

    def remove(self) -> None:
        for handle in self.handles:
            handle.remove()
        self.handles.clear()

    def __enter__(self) -> "FeatureTap":
        return self

    def __exit__(self, *exc) -> None:
        self.remove()
