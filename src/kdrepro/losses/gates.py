"""Gates of the knowledge-transfer graph (Minami et al.): per-sample weights on an edge's loss.

A gate is gate(source logits or None, labels, progress in [0, 1], **options); its options come from
the edge's `gate_options` and are checked against its signature before training."""

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


@register_gate("linear_decay")
def linear_decay(source, labels: torch.Tensor, progress: float, start: float = 1.0, end: float = 0.0,
                 begin: float = 0.0, until: float = 1.0) -> torch.Tensor:
    """`start` until progress `begin`, then linearly to `end` at progress `until`, `end` after that
    (FitNets' TeacherDecayOverEpoch with lambda 4 -> 1 over epochs 5..400: start 4, end 1, begin and
    until those epochs as fractions of the run; `until` may exceed 1, the decay then stops part-way)."""
    if until <= begin:
        raise ValueError(f"linear_decay: until ({until}) must exceed begin ({begin})")
    fraction = min(max((progress - begin) / (until - begin), 0.0), 1.0)
    return torch.full_like(labels, start + (end - start) * fraction, dtype=torch.float32)
