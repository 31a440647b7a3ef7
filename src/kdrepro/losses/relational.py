"""Relational losses: how the samples of a batch relate to each other, not each sample's output.

sp  similarity-preserving KD (Tung & Mori, ICCV 2019), on the last feature maps;
rkd relational KD, distance- and angle-wise (Park et al., CVPR 2019), on the embeddings;
pkt probabilistic knowledge transfer (Passalis & Tefas, ECCV 2018), on the embeddings;
each in the form of RepDistiller (HobbitLong/RepDistiller, commit b84f547), which reads the same
layers (helper/loops.py: feat[-2] for SP, feat[-1], the pooled features, for RKD and PKT) and runs
them with the weights of its scripts/run_cifar_distill.sh: -b 3000 (SP), 1 (RKD), 30000 (PKT), the
edge weight here. Each is a batch loss: the function returns per-sample rows whose mean is the batch
loss, computed in fp32 even under bf16 autocast.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from kdrepro.losses.correlation import flat, full_precision, squared_distances
from kdrepro.losses.registry import register_loss

PKT_EPS = 1e-7  # RepDistiller's cosine_similarity_loss eps, in the normalisation and the logarithm
DISTANCE_EPS = 1e-12  # RepDistiller's pdist clamp on squared distances (no infinite sqrt gradient at 0)


# -- SP --------------------------------------------------------------------------------------------
def similarity_matrix(features: torch.Tensor) -> torch.Tensor:
    """G = Q Q^T on the flattened features, each row L2-normalised (SP Sec. 3, Eqs. 1-3)."""
    q = flat(features)
    return F.normalize(q @ q.t(), dim=1)


@register_loss("sp", inputs="feature_map", batch=True)
def similarity_preserving(source: torch.Tensor, target: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """L_SP = ||G_T - G_S||_F^2 / b^2 (SP Eq. 4); per sample i, sum_j (G_T - G_S)_ij^2 / b.
    Reference: RepDistiller distiller_zoo/SP.py, `similarity_loss`, lines 16-30."""
    with full_precision(source):
        difference = similarity_matrix(source) - similarity_matrix(target)
        return difference.pow(2).sum(dim=1) / len(difference)


# -- RKD -------------------------------------------------------------------------------------------
def normalised_distances(embeddings: torch.Tensor) -> torch.Tensor:
    """psi_D: the pairwise Euclidean distances divided by their mean mu over the pairs i != j (RKD
    Sec. 3.2.1). The diagonal is 0 (no gradient through sqrt there)."""
    e = flat(embeddings)
    off_diagonal = ~torch.eye(len(e), dtype=torch.bool, device=e.device)
    distances = squared_distances(e).clamp_min(DISTANCE_EPS).sqrt() * off_diagonal
    return distances / distances[off_diagonal].mean()


def triplet_cosines(embeddings: torch.Tensor) -> torch.Tensor:
    """psi_A: cos of the angle at vertex i between j and k, <e_ij, e_ik> with e_ij the unit vector from
    x_i to x_j (RKD Sec. 3.2.2), for every (i, j, k); 0 where j or k is i (no direction)."""
    e = flat(embeddings)
    directions = F.normalize(e[None, :, :] - e[:, None, :], dim=2)  # [i, j] = unit(x_j - x_i)
    return directions @ directions.transpose(1, 2)


@register_loss("rkd", inputs="embedding", batch=True)
def relational_kd(source: torch.Tensor, target: torch.Tensor, labels: torch.Tensor, distance_weight: float = 25.0,
                  angle_weight: float = 50.0) -> torch.Tensor:
    """distance_weight * L_RKD-D + angle_weight * L_RKD-A, each the Huber (smooth-L1, delta 1) loss
    between the teacher's and the student's potentials (RKD Sec. 3.2; weights 25 and 50 as
    RepDistiller's RKDLoss(w_d=25, w_a=50)). Reference: RepDistiller distiller_zoo/RKD.py, lines
    15-58: its means over all b^2 pairs and b^3 triplets (the degenerate ones add 0) are the batch
    means of the per-sample rows here."""
    n = len(source)
    if n < 2:  # no pair, no distance to normalise by
        return source.new_zeros(n, dtype=torch.float32)
    with full_precision(source):
        distance = F.smooth_l1_loss(normalised_distances(target), normalised_distances(source), reduction="none")
        angle = F.smooth_l1_loss(triplet_cosines(target), triplet_cosines(source), reduction="none")
        return distance_weight * distance.mean(dim=1) + angle_weight * angle.flatten(1).mean(dim=1)


# -- PKT -------------------------------------------------------------------------------------------
def similarity_probabilities(embeddings: torch.Tensor) -> torch.Tensor:
    """p_{j|i}: the cosine-similarity kernel (cos + 1) / 2, each row divided by its sum (PKT Sec. 3).
    Rows are divided by norm + eps as RepDistiller (so a zero row stays 0; RepDistiller's extra
    NaN-to-0 step only hides NaN inputs, which the engine reports as a non-finite loss instead)."""
    e = flat(embeddings)
    unit = e / (e.norm(dim=1, keepdim=True) + PKT_EPS)
    kernel = (unit @ unit.t() + 1) / 2
    return kernel / kernel.sum(dim=1, keepdim=True)


@register_loss("pkt", inputs="embedding", batch=True)
def probabilistic_kt(source: torch.Tensor, target: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """KL(teacher || student) between the conditional probabilities, as RepDistiller: the mean over
    (i, j) of p_t log((p_t + eps) / (p_s + eps)), eps 1e-7; per sample i, the mean over j. Reference:
    RepDistiller distiller_zoo/PKT.py, `cosine_similarity_loss`, lines 17-42."""
    with full_precision(source):
        teacher, student = similarity_probabilities(source), similarity_probabilities(target)
        return (teacher * torch.log((teacher + PKT_EPS) / (student + PKT_EPS))).mean(dim=1)
