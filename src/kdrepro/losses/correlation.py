"""Correlation congruence (Peng et al., CCKD, ICCV 2019) and the hint loss, on node embeddings.

CC compares the batch correlation matrices of the teacher's and the student's embeddings:
    L_CC = (1/n^2) * ||psi(F_t) - psi(F_s)||_F^2,   psi(F)_ij = k(f_i, f_j),
with the kernels of the paper, on L2-normalised features f (normalize=True, as AberHu's KD-Zoo does):
    bilinear   k(x, y) = x.y
    mmd        k(x, y) = ||x - y||_2  (the naive MMD between the one-sample sets {x} and {y} with the
               identity feature map: the distance of their means, i.e. of x and y)
    rbf        k(x, y) = sum_{p=0..P} exp(-2g) (2g)^p / p! (x.y)^p  (P = `order`, g = `gamma`): the
               order-P Taylor expansion of exp(-2g) exp(2g x.y), which on unit vectors equals the
               Gaussian RBF exp(-g ||x - y||^2) = exp(-2g (1 - x.y))
    rbf_exact  k(x, y) = exp(-g ||x - y||^2)  (the limit P -> infinity; a reference)
CC is a batch loss: the function returns, per sample i, (1/n) sum_j (psi_t - psi_s)_ij^2, whose
mean over the batch is exactly L_CC.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from kdrepro.losses.registry import register_loss

KERNELS = ("bilinear", "mmd", "rbf", "rbf_exact")


def flat(features: torch.Tensor) -> torch.Tensor:
    return features.float().flatten(1)


def full_precision(features: torch.Tensor) -> torch.autocast:
    """Autocast off on the features' device: batch-relational losses compare matrix entries whose
    differences are near bf16's resolution, so they are computed in fp32 even under bf16 autocast."""
    return torch.autocast(features.device.type, enabled=False)


def squared_distances(rows: torch.Tensor) -> torch.Tensor:
    """The n x n matrix ||x_i - x_j||^2 of the rows, from their Gram matrix (clamped at 0: round-off
    can make the expansion slightly negative)."""
    sq = rows.pow(2).sum(1)
    return (sq[:, None] + sq[None, :] - 2 * rows @ rows.t()).clamp_min(0)


def correlation_matrix(features: torch.Tensor, kernel: str = "rbf", gamma: float = 0.4, order: int = 2,
                       normalize: bool = True) -> torch.Tensor:
    """psi(F): the n x n matrix k(f_i, f_j) of the rows of `features` (see the module docstring)."""
    if kernel not in KERNELS:
        raise ValueError(f"kernel must be one of {KERNELS}, got {kernel!r}")
    if order < 0:
        raise ValueError(f"order must be at least 0, got {order}")
    f = flat(features)
    if normalize:
        f = F.normalize(f, dim=1)
    gram = f @ f.t()
    if kernel == "bilinear":
        return gram
    if kernel in ("mmd", "rbf_exact"):
        dist2 = squared_distances(f)
        if kernel == "rbf_exact":
            return torch.exp(-gamma * dist2)
        return dist2.clamp_min(1e-12).sqrt()  # clamp: no infinite gradient of sqrt at the zero diagonal
    corr = torch.zeros_like(gram)
    power = torch.ones_like(gram)
    for p in range(order + 1):
        corr = corr + math.exp(-2 * gamma) * (2 * gamma) ** p / math.factorial(p) * power
        power = power * gram
    return corr


@register_loss("cc", inputs="embedding", batch=True)
def correlation_congruence(source: torch.Tensor, target: torch.Tensor, labels: torch.Tensor, kernel: str = "rbf",
                           gamma: float = 0.4, order: int = 2, normalize: bool = True) -> torch.Tensor:
    """Per-sample rows of (psi(F_t) - psi(F_s))^2 averaged over j; the batch mean is L_CC. Computed in
    fp32 even under bf16 autocast: the differences of correlation entries are near bf16's resolution."""
    with full_precision(source):
        teacher = correlation_matrix(source, kernel, gamma, order, normalize)
        student = correlation_matrix(target, kernel, gamma, order, normalize)
        return (teacher - student).pow(2).mean(dim=1)


class LinearEmbedPair(nn.Module):
    """RepDistiller's two trainable `LinearEmbed` heads (flatten, Linear to feat_dim), one per node."""

    def __init__(self, source_dim: int, target_dim: int, feat_dim: int):
        super().__init__()
        self.source = nn.Linear(source_dim, feat_dim)
        self.target = nn.Linear(target_dim, feat_dim)

    def forward(self, source: torch.Tensor, target: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.source(flat(source)), self.target(flat(target))


def make_embed_heads(source: torch.Tensor, target: torch.Tensor, feat_dim: int = 128) -> nn.Module:
    return LinearEmbedPair(flat(source).shape[1], flat(target).shape[1], feat_dim)


@register_loss("cc_repdistiller", inputs="embedding", batch=True, module=make_embed_heads)
def correlation_repdistiller(source: torch.Tensor, target: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """RepDistiller's `Correlation` (distiller_zoo/CC.py), on the heads' 128-d outputs: with
    d = |f_s - f_t|, the batch loss is mean_{i<n-1} sum_k d_ik d_(i+1)k (consecutive samples; not the
    RBF form). Per sample: that term times n/(n-1) for i < n-1 and 0 for the last, so the mean is the loss."""
    delta = (target.float() - source.float()).abs()
    n = len(delta)
    if n < 2:
        return delta.new_zeros(n)
    terms = (delta[:-1] * delta[1:]).sum(1) * (n / (n - 1))
    return torch.cat([terms, terms.new_zeros(1)])


class Regressor(nn.Module):
    """The student-side regressor of a hint: 1x1 conv + BN + ReLU on feature maps (RepDistiller's
    ConvReg for equal spatial sizes), Linear on vectors."""

    def __init__(self, source: torch.Tensor, target: torch.Tensor):
        super().__init__()
        if source.dim() == 4 and target.dim() == 4:
            if source.shape[-2:] != target.shape[-2:]:
                raise ValueError(f"hint: teacher map {tuple(source.shape[1:])} and student map {tuple(target.shape[1:])} "
                                 "differ in spatial size (only 1x1 regressors are built)")
            self.net: nn.Module = nn.Sequential(nn.Conv2d(target.shape[1], source.shape[1], 1), nn.BatchNorm2d(source.shape[1]),
                                                nn.ReLU(inplace=True))
        else:
            self.net = nn.Linear(flat(target).shape[1], flat(source).shape[1])

    def forward(self, source: torch.Tensor, target: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        out = self.net(target if isinstance(self.net, nn.Sequential) else flat(target))
        return source, out


def make_regressor(source: torch.Tensor, target: torch.Tensor) -> nn.Module:
    return Regressor(source, target)


@register_loss("hint", inputs="feature_map", module=make_regressor)
def hint(source: torch.Tensor, target: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """FitNets' hint L2 between the regressed student map and the teacher's, per sample the mean over
    its elements (the batch mean is nn.MSELoss(), RepDistiller's HintLoss)."""
    return (flat(target) - flat(source)).pow(2).mean(1)
