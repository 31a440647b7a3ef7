"""Gates of the knowledge-transfer graph (Minami et al.): per-sample weights on an edge's loss."""

from __future__ import annotations

import torch

from kdrepro.losses.registry import register_gate


@register_gate("through")
def through(source, labels: torch.Tensor, progress: float) -> torch.Tensor:
    """The loss passes unchanged."""
    return torch.ones_like(labels, dtype=torch.float32)


@register_gate("cutoff")
def cutoff(source, labels: torch.Tensor, progress: float) -> torch.Tensor:
    """The loss is blocked."""
    return torch.zeros_like(labels, dtype=torch.float32)


@register_gate("linear")
def linear(source, labels: torch.Tensor, progress: float) -> torch.Tensor:
    """The weight rises linearly from 0 at the first update to 1 at the last."""
    return torch.full_like(labels, progress, dtype=torch.float32)


@register_gate("correct")
def correct(source, labels: torch.Tensor, progress: float) -> torch.Tensor:
    """Only the samples that the source classifies correctly pass (all of them for the label node)."""
    if source is None:
        return through(source, labels, progress)
    return (source.argmax(dim=1) == labels).float()
