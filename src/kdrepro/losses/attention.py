"""Attention transfer (Zagoruyko & Komodakis, ICLR 2017), on feature maps.

The activation-based attention map of a layer is F(A) = mean over channels of |A|^p (Sec. 3.1; the
paper's sum over channels differs by the constant C, which the normalisation removes; the reference
code's A^p is the same for the default p = 2), flattened and L2-normalised. The loss compares the
student's map with the teacher's, as RepDistiller's `Attention` (HobbitLong/RepDistiller,
distiller_zoo/AT.py, commit b84f547, lines 18-29) and, before it, the authors' own `at_loss`
(szagoruyko/attention-transfer, cifar.py, commit 083a612): (at(s) - at(t)).pow(2).mean(), the squared
difference averaged over the batch and the positions, in place of the paper's Eq. 2 term
beta/2 ||.||_2 (not squared, summed over the layer pairs). An edge reads one pair of layers (the nodes' last feature maps,
or the modules named by `source_layer` / `target_layer`); RepDistiller's sum over the layer pairs
(helper/loops.py: feat[1:-1], -b 1000) is one edge per pair, each with weight 1000.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from kdrepro.losses.registry import register_loss


def attention_map(features: torch.Tensor, p: float = 2.0) -> torch.Tensor:
    """Q / ||Q||_2 with Q = vec(mean over channels of |A|^p), one row per sample."""
    return F.normalize(features.float().abs().pow(p).mean(dim=1).flatten(1), dim=1)


def pool_to_common_size(source: torch.Tensor, target: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The larger of two maps adaptively average-pooled to the smaller's height and width, as
    RepDistiller's at_loss does (it compares heights only, its maps being square)."""
    for maps in (source, target):
        if maps.dim() != 4:
            raise ValueError(f"at: attention transfer reads feature maps (n, c, h, w), got shape {tuple(maps.shape)}; "
                             "name convolutional layers with source_layer / target_layer")
    size = (min(source.shape[2], target.shape[2]), min(source.shape[3], target.shape[3]))
    return tuple(F.adaptive_avg_pool2d(m, size) if m.shape[2:] != size else m for m in (source, target))


@register_loss("at", inputs="feature_map")
def attention_transfer(source: torch.Tensor, target: torch.Tensor, labels: torch.Tensor, p: float = 2.0) -> torch.Tensor:
    """Per sample the mean over positions of (at(student) - at(teacher))^2; the batch mean is
    RepDistiller's at_loss."""
    source, target = pool_to_common_size(source, target)
    return (attention_map(target, p) - attention_map(source, p)).pow(2).mean(dim=1)
