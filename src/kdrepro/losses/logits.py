"""Losses on logits: cross-entropy with the labels, Hinton's KD and decoupled KD (DKD)."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from kdrepro.losses.registry import register_loss

CLASS_REDUCTIONS = ("sum", "mean")


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
    if class_reduction not in CLASS_REDUCTIONS:
        raise ValueError(f"class_reduction must be one of {CLASS_REDUCTIONS}, not {class_reduction!r}")
    log_p_target = F.log_softmax(target / temperature, dim=1)
    log_p_source = F.log_softmax(source / temperature, dim=1)
    kl = kl_divergence(log_p_source, log_p_target) * temperature**2
    return kl / target.shape[1] if class_reduction == "mean" else kl


def kl_divergence(log_p: torch.Tensor, log_q: torch.Tensor) -> torch.Tensor:
    """KL(p || q) per row, from log-probabilities."""
    return (log_p.exp() * (log_p - log_q)).sum(dim=1)


def decouple(log_p: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(log b, log p_hat) of DKD Eqs. 1-2 from log-probabilities over the classes: b = [p_t, 1 - p_t], the
    target class against the rest, and p_hat_j = p_j / (1 - p_t) over the non-target classes. log(1 - p_t)
    is a log-sum-exp over the other classes (1 - p_t loses every digit when p_t is close to 1). p_hat's
    target column is set to 0 (log 1), so that it adds exactly 0 to a KL between two such rows. Masks and
    gather, no boolean indexing: the stacked trainer runs losses under torch.func.vmap."""
    is_target = labels[:, None] == torch.arange(log_p.shape[1], device=labels.device)
    log_rest = log_p.masked_fill(is_target, -math.inf).logsumexp(dim=1, keepdim=True)
    log_binary = torch.cat([log_p.gather(1, labels[:, None]), log_rest], dim=1)
    return log_binary, (log_p - log_rest).masked_fill(is_target, 0.0)


@register_loss("dkd")
def decoupled_kd(source: torch.Tensor, target: torch.Tensor, labels: torch.Tensor, temperature: float = 4.0,
                 alpha: float = 1.0, beta: float = 8.0) -> torch.Tensor:
    """Decoupled KD (Zhao et al., CVPR 2022, Sec. 3.3, Eq. 7): alpha * TCKD + beta * NCKD per sample, with
    TCKD = tau^2 KL(b^T || b^S) on the binary target-vs-rest probabilities b = [p_t, 1 - p_t] and
    NCKD = tau^2 KL(p_hat^T || p_hat^S) on the softmax over the non-target classes only, every
    probability at temperature tau (Sec. 3.1, Eqs. 1-6: classical KD = TCKD + (1 - p_t^T) NCKD).

    Reference: megvii-research/mdistiller, mdistiller/distillers/DKD.py (commit a08d46f, `dkd_loss`,
    lines 8-32; defaults tau 4, alpha 1, beta 8 in mdistiller/engine/cfg.py lines 161-167). mdistiller
    drops the target class from NCKD by subtracting 1000 from its scaled logit; here p_hat is p
    renormalised without it (equal up to exp(-1000)). Its batch sums divided by the batch size are
    the batch means of these per-sample values.

    Not here: mdistiller's cross-entropy term (a separate `ce` edge from the label node) and its
    warm-up, which scales the DKD loss by min(epoch / 20, 1): a loss does not see the epoch (the engine
    gives training progress to gates only). On an edge, the `linear_decay` gate with start 0, end 1
    and until = 20 / 240 (mdistiller's 20 of its 240 epochs, as config/experiments/compare.yaml's dkd)
    comes close: it rises linearly per step instead of in per-epoch steps.
    """
    binary_teacher, rest_teacher = decouple(F.log_softmax(source.float() / temperature, dim=1), labels)
    binary_student, rest_student = decouple(F.log_softmax(target.float() / temperature, dim=1), labels)
    tckd = kl_divergence(binary_teacher, binary_student)
    nckd = kl_divergence(rest_teacher, rest_student)
    return (alpha * tckd + beta * nckd) * temperature**2
