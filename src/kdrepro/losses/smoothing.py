"""Label-node losses of Tf-KD (Yuan et al., CVPR 2020): label smoothing and the virtual teacher.

Both read only the labels (the source is the label node). Each comes in the paper's form and in the
official code's form (yuanli2333/Teacher-free-Knowledge-Distillation, my_loss_function.py), chosen by
`form`; the paper's is the default.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from kdrepro.losses.logits import CLASS_REDUCTIONS, hinton_kd
from kdrepro.losses.registry import register_loss

FORMS = ("paper", "official")


def _check_form(form: str) -> None:
    if form not in FORMS:
        raise ValueError(f"form must be one of {FORMS}, not {form!r}")


def virtual_teacher(labels: torch.Tensor, num_classes: int, correct_prob: float) -> torch.Tensor:
    """p^d: `correct_prob` on the labelled class, the rest spread evenly over the other K-1 classes."""
    if not 0 < correct_prob < 1:
        raise ValueError(f"correct_prob must lie in (0, 1), not {correct_prob}")
    rest = (1 - correct_prob) / (num_classes - 1)
    p = torch.full((len(labels), num_classes), rest, device=labels.device)
    return p.scatter_(1, labels[:, None], correct_prob)


@register_loss("label_smoothing")
def label_smoothing(source, target: torch.Tensor, labels: torch.Tensor, epsilon: float = 0.1, form: str = "paper") -> torch.Tensor:
    """Cross-entropy with smoothed labels (LSR). paper: q' = (1-eps) q + eps/K on every class (Szegedy et
    al., the form Tf-KD analyses); official: 1-eps on the labelled class and eps/(K-1) on each other one."""
    _check_form(form)
    k = target.shape[1]
    if form == "paper":
        smoothed = torch.full_like(target, epsilon / k).scatter_(1, labels[:, None], 1 - epsilon + epsilon / k)
    else:
        smoothed = virtual_teacher(labels, k, 1 - epsilon).to(target.dtype)
    return -(smoothed * F.log_softmax(target, dim=1)).sum(dim=1)


@register_loss("tfkd_reg")
def tfkd_regularization(source, target: torch.Tensor, labels: torch.Tensor, correct_prob: float = 0.99,
                        temperature: float = 20.0, form: str = "paper", class_reduction: str = "sum") -> torch.Tensor:
    """Tf-KD_reg: KD from a virtual teacher that is right with probability `correct_prob`.

    paper: KD from the virtual teacher, its log-probabilities acting as logits: tau^2 KL(p^d_tau || p_tau)
    with p^d_tau = softmax(log p^d / tau) and p_tau = softmax(z / tau).
    official: KL(softmax(p^d / tau) || softmax(z)): the temperature divides the probabilities themselves
    (which makes the teacher nearly uniform) and the student is not softened.
    class_reduction: the KL summed over the classes ("sum") or divided by their number ("mean", as the
    official code's nn.KLDivLoss() element-wise mean; with it the official form is exactly
    my_loss_function.py line 47 before its `* params.multiplier`, which an edge puts in its weight).
    """
    _check_form(form)
    p = virtual_teacher(labels, target.shape[1], correct_prob).to(target.dtype)
    if form == "paper":
        return hinton_kd(p.log(), target, labels, temperature=temperature, class_reduction=class_reduction)
    if class_reduction not in CLASS_REDUCTIONS:
        raise ValueError(f"class_reduction must be one of {CLASS_REDUCTIONS}, not {class_reduction!r}")
    teacher = F.softmax(p / temperature, dim=1)
    kl = (teacher * (teacher.log() - F.log_softmax(target, dim=1))).sum(dim=1)
    return kl / target.shape[1] if class_reduction == "mean" else kl
