"""FitNets' two losses (Romero et al., ICLR 2015; official code adri-romsor/FitNets, costs/*.py).

kd_ce: the KD term of Eq. 2, H(P_T^tau, P_S^tau) = -sum_k softmax(a_T/tau)_k log softmax(a_S/tau)_k, with
    no tau^2 factor (paper Eq. 2 and KDCost.cost_wrt_teacher). It equals KL(P_T^tau || P_S^tau) plus the
    teacher's entropy, which does not depend on the student: the gradients are KL's (the `kd` loss with
    temperature tau divided by tau^2); the logged value is the cross-entropy, as the official monitor.
fitnets_hint: Eq. 3, L_HT = 1/2 ||u_h(x) - r(v_g(x))||^2, the teacher's hint-layer output against the
    regressed output of the student's guided layer. The edge names both layers (options source_layer,
    target_layer: module paths read through FeatureTap). The regressor is the official `conv` regressor
    (scripts/fitnets_training.py, generateConvRegressor): a maxout convolution with the hint layer's
    number of pieces, out_channels = the hint's channels, kernel = guided size - hint size + 1 per
    dimension, no padding, weights uniform in +-0.05 (irange), kernel norms bounded by the edge's
    max_kernel_norm (the official 0.9), so its output has the hint's shape exactly; none when the shapes
    already agree. reduction "paper": per sample 1/2 the sum over every unit (Eq. 3); "official":
    HintCost's reduction of a c01b map, 1/2 the sum over the rows then the mean
    over channels, columns and the batch (the gradients differ by a constant factor only).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from kdrepro.losses.registry import register_loss
from kdrepro.models.layers import MaxoutConv2d

REDUCTIONS = ("paper", "official")
REGRESSOR_RANGE = 0.05  # generateConvRegressor's irange


@register_loss("kd_ce")
def kd_cross_entropy(source: torch.Tensor, target: torch.Tensor, labels: torch.Tensor, temperature: float = 3.0) -> torch.Tensor:
    """Per sample -sum_k P_T^tau log P_S^tau (FitNets Eq. 2's second term, no tau^2)."""
    p_teacher = F.softmax(source.float() / temperature, dim=1)
    return -(p_teacher * F.log_softmax(target.float() / temperature, dim=1)).sum(dim=1)


class HintRegressor(nn.Module):
    """r(.) of Eq. 3: maps the student's guided-layer output onto the teacher's hint-layer shape."""

    def __init__(self, hint: torch.Tensor, guided: torch.Tensor, pieces: int = 2, max_kernel_norm: float | None = None):
        super().__init__()
        if hint.dim() != 4 or guided.dim() != 4:
            raise ValueError(f"fitnets_hint: hint {tuple(hint.shape[1:])} and guided {tuple(guided.shape[1:])} must be "
                             "feature maps (the official fully-connected regressor raises NotImplementedError too)")
        (hc, hh, hw), (gc, gh, gw) = hint.shape[1:], guided.shape[1:]
        if gh < hh or gw < hw:
            raise ValueError(f"fitnets_hint: the guided map {gh}x{gw} is smaller than the hint map {hh}x{hw}; "
                             "a convolutional regressor would need zero-padding (as the official code says)")
        self.net: nn.Module = nn.Identity()
        if (hc, hh, hw) != (gc, gh, gw):
            self.net = MaxoutConv2d(gc, hc, (gh - hh + 1, gw - hw + 1), pieces=pieces, padding=0)
            nn.init.uniform_(self.net.conv.weight, -REGRESSOR_RANGE, REGRESSOR_RANGE)
            nn.init.zeros_(self.net.conv.bias)
            self.net.conv.max_norm = max_kernel_norm  # the engine's max-norm constraint (make_optimizer)

    def forward(self, source: torch.Tensor, target: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return source, self.net(target)


def make_hint_regressor(source: torch.Tensor, target: torch.Tensor, pieces: int = 2, max_kernel_norm: float | None = None) -> nn.Module:
    """`pieces`: the hint layer's number of maxout pieces (2 on every FitNets teacher here); `max_kernel_norm`:
    the bound on each regressor kernel's norm (generateConvRegressor's mkn 0.9; None: unconstrained)."""
    return HintRegressor(source, target, pieces, max_kernel_norm)


@register_loss("fitnets_hint", inputs="feature_map", module=make_hint_regressor)
def fitnets_hint(source: torch.Tensor, target: torch.Tensor, labels: torch.Tensor, reduction: str = "paper") -> torch.Tensor:
    """Per sample 1/2 ||hint - r(guided)||^2 (see the module docstring for `reduction`)."""
    if reduction not in REDUCTIONS:
        raise ValueError(f"fitnets_hint: reduction must be one of {REDUCTIONS}, got {reduction!r}")
    if source.shape != target.shape:
        raise ValueError(f"fitnets_hint: hint {tuple(source.shape)} and regressed guided output {tuple(target.shape)} differ")
    squared = 0.5 * (target.float() - source.float()).pow(2)
    if reduction == "official" and squared.dim() == 4:
        return squared.sum(dim=2).mean(dim=(1, 2))
    return squared.flatten(1).sum(dim=1)
