"""Losses on logits: cross-entropy with the labels and Hinton's KD."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from kdrepro.losses.registry import register_loss


@register_loss("ce")
def cross_entropy(source: torch.Tensor | None, target: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Per-sample cross-entropy of the target's logits with the labels (the source is the label node)."""
    return F.cross_entropy(target, labels, reduction="none")


@register_loss("kd")
def hinton_kd(
    source: torch.Tensor,
    target: torch.Tensor,
    labels: torch.Tensor,
    temperature: float = 4.0,
    class_reduction: str = "sum",
) -> torch.Tensor:
    """tau^2 * KL(softmax(source/tau) || softmax(target/tau)) per sample (Hinton et al. 2015).

    class_reduction="sum" is the paper's KL. "mean" divides by the number of classes, as the
    official TAKD and Tf-KD code do through nn.KLDivLoss()'s default element-wise mean.
    """
    if class_reduction not in ("sum", "mean"):
        raise ValueError(f"class_reduction must be 'sum' or 'mean', not {class_reduction!r}")
    log_p_target = F.log_softmax(target / temperature, dim=1)
    log_p_source = F.log_softmax(source / temperature, dim=1)
    kl = (log_p_source.exp() * (log_p_source - log_p_target)).sum(dim=1) * temperature**2
    return kl / target.shape[1] if class_reduction == "mean" else kl
