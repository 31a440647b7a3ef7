"""The baselines of RepDistiller and mdistiller (AT, SP, RKD, PKT, DKD): each against its formula written
out here from the paper, loop by loop in float64 (values and gradients), a property the paper states,
and one short real run with every one of them as an edge."""

import itertools
import math

import pandas as pd
import pytest
import torch
import torch.nn.functional as F
from torch.func import grad_and_value, vmap

from conftest import needs_fashion_mnist
from kdrepro.engine import train_run
from kdrepro.graph import LABELS, Data, Edge, Node, RunSpec, SpecError
from kdrepro.losses import GATES, LOSS_INFO, LOSSES

TOLERANCE = dict(rtol=1e-6, atol=1e-6)  # the losses compute in fp32, the references below in fp64


def fixed(*shape, seed=0, scale=1.0):
    return scale * torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def value_and_gradient(loss, teacher, student):
    """loss(teacher, student) and its gradient with respect to the student."""
    student = student.clone().requires_grad_()
    value = loss(teacher, student)
    (gradient,) = torch.autograd.grad(value.sum(), student)
    return value.detach().double(), gradient.double()


def assert_matches_reference(ours, reference, teacher, student):
    """Values (per sample, or the batch loss) and gradients with respect to the student agree."""
    value, gradient = value_and_gradient(ours, teacher.float(), student.float())
    want_value, want_gradient = value_and_gradient(reference, teacher, student)
    assert torch.allclose(value, want_value, **TOLERANCE), (value, want_value)
    assert torch.allclose(gradient, want_gradient, **TOLERANCE), (gradient - want_gradient).abs().max()


def huber(x):
    """The Huber loss with delta 1 (RKD's l_delta), smooth-L1."""
    return 0.5 * x * x if abs(x) < 1 else abs(x) - 0.5


# -- AT ---------------------------------------------------------------------------------------------
def attention_reference(teacher, student):
    """Per sample: Q_j = (1/C) sum_c A_cj^2 at each position j, Q / ||Q||_2, then the mean over the
    positions of (Q_S - Q_T)^2."""
    rows = []
    for a_t, a_s in zip(teacher, student):
        q_t = sum(a_t[c] ** 2 for c in range(len(a_t))).flatten() / len(a_t)
        q_s = sum(a_s[c] ** 2 for c in range(len(a_s))).flatten() / len(a_s)
        difference = q_s / q_s.norm() - q_t / q_t.norm()
        rows.append((difference**2).sum() / len(difference))
    return torch.stack(rows)


def test_at_matches_the_attention_map_formula():
    teacher, student = fixed(3, 4, 5, 5, seed=1), fixed(3, 2, 5, 5, seed=2)  # channel counts may differ
    assert_matches_reference(lambda t, s: LOSSES["at"](t, s, None), attention_reference, teacher, student)


def test_at_pools_the_larger_map_to_the_smaller():
    """An 8x8 student map against a 4x4 teacher map: the student's is averaged over 2x2 blocks first."""
    teacher, student = fixed(2, 3, 4, 4, seed=3), fixed(2, 3, 8, 8, seed=4)
    pooled = lambda t, s: attention_reference(t, F.avg_pool2d(s, 2))  # noqa: E731
    assert_matches_reference(lambda t, s: LOSSES["at"](t, s, None), pooled, teacher, student)
    assert_matches_reference(lambda t, s: LOSSES["at"](s, t, None), lambda t, s: pooled(t, s), teacher, student)
    with pytest.raises(ValueError, match="feature maps"):
        LOSSES["at"](torch.randn(2, 6), torch.randn(2, 6), None)


def test_at_is_zero_for_equal_maps_and_ignores_their_scale():
    """The maps are L2-normalised (Sec. 3.1): scaling a network's activations changes nothing."""
    teacher, student = fixed(3, 4, 5, 5, seed=5).float(), fixed(3, 4, 5, 5, seed=6).float()
    assert LOSSES["at"](teacher, teacher, None).abs().max() == 0
    assert torch.allclose(LOSSES["at"](teacher, 7 * student, None), LOSSES["at"](teacher, student, None), atol=1e-7)
    assert not LOSS_INFO["at"].batch and LOSS_INFO["at"].inputs == "feature_map"


# -- SP ---------------------------------------------------------------------------------------------
def similarity_reference(teacher, student):
    """G_ij = <q_i, q_j> on the flattened features, each row divided by its L2 norm; per sample i,
    sum_j (G_T - G_S)_ij^2 / b, whose mean is ||G_T - G_S||_F^2 / b^2."""
    b = len(teacher)

    def normalised_gram(f):
        q = f.flatten(1)
        gram = torch.stack([torch.stack([q[i] @ q[j] for j in range(b)]) for i in range(b)])
        return torch.stack([row / row.norm() for row in gram])

    difference = normalised_gram(teacher) - normalised_gram(student)
    return torch.stack([sum(difference[i, j] ** 2 for j in range(b)) / b for i in range(b)])


def test_sp_matches_the_similarity_matrix_formula():
    teacher, student = fixed(5, 3, 2, 2, seed=7), fixed(5, 2, 3, 3, seed=8)  # any feature sizes: G is b x b
    assert_matches_reference(lambda t, s: LOSSES["sp"](t, s, None), similarity_reference, teacher, student)


def test_sp_is_zero_for_equal_features_and_ignores_their_scale():
    teacher, student = fixed(5, 6, seed=9).float(), fixed(5, 6, seed=10).float()
    assert LOSSES["sp"](teacher, teacher, None).abs().max() == 0
    assert torch.allclose(LOSSES["sp"](teacher, 0.1 * student, None), LOSSES["sp"](teacher, student, None), atol=1e-7)
    assert LOSS_INFO["sp"].batch and LOSS_INFO["sp"].inputs == "feature_map"


# -- RKD --------------------------------------------------------------------------------------------
def rkd_reference(teacher, student, distance_weight=25.0, angle_weight=50.0):
    """Distances over the pairs i != j divided by their mean; cosines of the angle at vertex i of every
    triplet of distinct samples; Huber losses summed over them per sample i and divided, as RepDistiller's
    means, by the b (for pairs) and b^2 (for triplets) terms of a row, degenerate ones included."""
    b = len(teacher)

    def distances(x):
        raw = {(i, j): (x[i] - x[j]).norm() for i in range(b) for j in range(b) if i != j}
        mu = sum(raw.values()) / len(raw)
        return {pair: d / mu for pair, d in raw.items()}

    def cosines(x):
        unit = lambda v: v / v.norm()  # noqa: E731
        return {(i, j, k): unit(x[j] - x[i]) @ unit(x[k] - x[i]) for i, j, k in itertools.permutations(range(b), 3)}
    d_t, d_s, a_t, a_s = distances(teacher), distances(student), cosines(teacher), cosines(student)
    rows = []
    for i in range(b):
        distance = sum(huber(d_s[p] - d_t[p]) for p in d_t if p[0] == i) / b
        # triplets (i, j, j): both cosines are 1, a zero term, as those with j or k equal to i
        angle = sum(huber(a_s[t] - a_t[t]) for t in a_t if t[0] == i) / b**2
        rows.append(distance_weight * distance + angle_weight * angle)
    return torch.stack(rows)


def test_rkd_matches_the_distance_and_angle_formulas():
    teacher, student = fixed(5, 4, seed=11, scale=3.0), fixed(5, 6, seed=12)  # embedding widths may differ
    assert_matches_reference(lambda t, s: LOSSES["rkd"](t, s, None), rkd_reference, teacher, student)
    only_distance = lambda t, s: LOSSES["rkd"](t, s, None, distance_weight=1.0, angle_weight=0.0)  # noqa: E731
    assert_matches_reference(only_distance, lambda t, s: rkd_reference(t, s, 1.0, 0.0), teacher, student)


def test_rkd_is_zero_for_equal_embeddings_and_invariant_to_scale_and_translation():
    """Distances are divided by their mean and angles have no scale (RKD Sec. 3.2): the loss sees the
    shape of the batch, not where or how large it is."""
    teacher, student = fixed(6, 4, seed=13).float(), fixed(6, 4, seed=14).float()
    assert LOSSES["rkd"](teacher, teacher, None).abs().max() < 1e-6
    moved = 5.0 * student + torch.tensor([1.0, -2.0, 0.5, 3.0])
    assert torch.allclose(LOSSES["rkd"](teacher, moved, None), LOSSES["rkd"](teacher, student, None), atol=1e-5)
    assert LOSSES["rkd"](teacher[:1], student[:1], None).tolist() == [0.0]  # a batch of one has no pair
    assert LOSS_INFO["rkd"].batch and LOSS_INFO["rkd"].inputs == "embedding"


# -- PKT --------------------------------------------------------------------------------------------
EPS = 1e-7


def pkt_reference(teacher, student):
    """K_ij = (cos(x_i, x_j) + 1) / 2 (norms + eps 1e-7), p_{j|i} = K_ij / sum_k K_ik; per sample i,
    (1/b) sum_j p^T_{j|i} log((p^T_{j|i} + eps) / (p^S_{j|i} + eps))."""
    b = len(teacher)

    def probabilities(x):
        kernel = [[((x[i] @ x[j]) / ((x[i].norm() + EPS) * (x[j].norm() + EPS)) + 1) / 2 for j in range(b)] for i in range(b)]
        return [[k / sum(row) for k in row] for row in kernel]

    p_t, p_s = probabilities(teacher), probabilities(student)
    return torch.stack([sum(p_t[i][j] * torch.log((p_t[i][j] + EPS) / (p_s[i][j] + EPS)) for j in range(b)) / b
                        for i in range(b)])


def test_pkt_matches_the_conditional_probability_formula():
    teacher, student = fixed(5, 4, seed=15), fixed(5, 3, seed=16)
    assert_matches_reference(lambda t, s: LOSSES["pkt"](t, s, None), pkt_reference, teacher, student)


def test_pkt_is_zero_for_equal_embeddings_and_ignores_each_samples_norm():
    """The kernel is the cosine similarity: rescaling any sample changes no probability."""
    teacher, student = fixed(5, 4, seed=17).float(), fixed(5, 4, seed=18).float()
    assert LOSSES["pkt"](teacher, teacher, None).abs().max() == 0
    rescaled = student * torch.tensor([[0.5], [2.0], [3.0], [1.0], [10.0]])
    assert torch.allclose(LOSSES["pkt"](teacher, rescaled, None), LOSSES["pkt"](teacher, student, None), atol=1e-7)
    assert LOSS_INFO["pkt"].batch and LOSS_INFO["pkt"].inputs == "embedding"


# -- DKD --------------------------------------------------------------------------------------------
def dkd_reference(teacher, student, labels, temperature=4.0, alpha=1.0, beta=8.0):
    """Per sample: p = softmax(z / T); b = [p_t, 1 - p_t] for the target class t; p_hat_j = p_j / (1 - p_t)
    for j != t; T^2 (alpha KL(b^T || b^S) + beta KL(p_hat^T || p_hat^S))."""
    rows = []
    for z_t, z_s, label in zip(teacher, student, labels.tolist()):
        p_t, p_s = F.softmax(z_t / temperature, dim=0), F.softmax(z_s / temperature, dim=0)
        b_t, b_s = [p_t[label], 1 - p_t[label]], [p_s[label], 1 - p_s[label]]
        tckd = sum(b_t[k] * torch.log(b_t[k] / b_s[k]) for k in range(2))
        others = [j for j in range(len(z_t)) if j != label]
        nckd = sum(p_t[j] / b_t[1] * torch.log((p_t[j] / b_t[1]) / (p_s[j] / b_s[1])) for j in others)
        rows.append(temperature**2 * (alpha * tckd + beta * nckd))
    return torch.stack(rows)


def test_dkd_matches_the_decoupled_formula():
    teacher, student, labels = fixed(4, 6, seed=19, scale=3.0), fixed(4, 6, seed=20, scale=3.0), torch.tensor([0, 5, 2, 2])
    assert_matches_reference(lambda t, s: LOSSES["dkd"](t, s, labels), lambda t, s: dkd_reference(t, s, labels), teacher, student)
    options = dict(temperature=2.0, alpha=0.5, beta=3.0)
    assert_matches_reference(lambda t, s: LOSSES["dkd"](t, s, labels, **options),
                             lambda t, s: dkd_reference(t, s, labels, **options), teacher, student)


def test_dkd_is_zero_for_equal_logits_and_recouples_into_classical_kd():
    """DKD Eq. 6: KD = TCKD + (1 - p_t^T) NCKD, with p_t^T the teacher's target probability at T."""
    teacher, student, labels = fixed(4, 6, seed=21).float(), fixed(4, 6, seed=22).float(), torch.tensor([1, 0, 3, 5])
    assert LOSSES["dkd"](teacher, teacher, labels).abs().max() < 1e-6
    tckd = LOSSES["dkd"](teacher, student, labels, alpha=1.0, beta=0.0)
    nckd = LOSSES["dkd"](teacher, student, labels, alpha=0.0, beta=1.0)
    p_target = F.softmax(teacher / 4.0, dim=1)[torch.arange(4), labels]
    assert torch.allclose(tckd + (1 - p_target) * nckd, LOSSES["kd"](teacher, student, labels, temperature=4.0), atol=1e-5)


def test_linear_decay_gate_reaches_mdistillers_warmup_at_each_epochs_end():
    """DKD's docstring: mdistiller's min(epoch / 20, 1) is about linear_decay(0 -> 1 until 20 / epochs)."""
    epochs, labels = 40, torch.zeros(1, dtype=torch.long)
    for epoch in (1, 10, 20, 30):
        weight = GATES["linear_decay"](None, labels, epoch / epochs, start=0.0, end=1.0, until=20 / epochs)
        assert weight.item() == pytest.approx(min(epoch / 20, 1.0))


# -- on edges ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("loss,teacher_shape,student_shape", [
    ("at", (4, 3, 6, 6), (4, 2, 3, 3)), ("sp", (4, 3, 2, 2), (4, 2, 2, 2)), ("rkd", (4, 5), (4, 3)), ("pkt", (4, 5), (4, 3)),
    ("dkd", (4, 3), (4, 3)),
])
def test_baselines_run_under_vmap_as_the_stacked_trainer_calls_them(loss, teacher_shape, student_shape):
    """engine/stack.py trains runs of one graph as vmap(grad(step)): each run's loss and gradient must be
    those of the run alone."""
    teacher, student = fixed(2, *teacher_shape, seed=23).float(), fixed(2, *student_shape, seed=24).float()
    labels = torch.tensor([[0, 2, 1, 2], [1, 1, 0, 2]])
    step = grad_and_value(lambda t, s, y: LOSSES[loss](t, s, y).mean(), argnums=1)
    stacked_gradient, stacked_value = vmap(step)(teacher, student, labels)
    for run in range(2):
        gradient, value = step(teacher[run], student[run], labels[run])
        assert torch.allclose(stacked_value[run], value, atol=1e-6) and torch.allclose(stacked_gradient[run], gradient, atol=1e-6)


DATA = Data("fashion_mnist", train_subset=128, test_subset=64, pad_to=32, normalization="half")
BASELINE_EDGES = (
    Edge(LABELS, "student", "ce"),
    Edge("teacher", "student", "at", 1000.0),  # the last feature maps, 8x8 at both ends
    # a second pair of layers, the teacher's 32x32 map against the student's 16x16 one
    Edge("teacher", "student", "at", 1000.0, options={"source_layer": "features.5", "target_layer": "features.3"}),
    Edge("teacher", "student", "sp", 3000.0),
    Edge("teacher", "student", "rkd"),
    Edge("teacher", "student", "pkt", 30000.0),
    Edge("teacher", "student", "dkd"),
)


def tiny_run(name, nodes, edges):
    return RunSpec(name=name, data=DATA, nodes=nodes, edges=edges, epochs=1, seed=0, batch_size=64)


def test_batch_baselines_take_only_the_through_gate_and_dkd_takes_any():
    nodes = (Node("teacher", "plane4"), Node("student", "plane2"))
    for loss in ("sp", "rkd", "pkt"):
        with pytest.raises(SpecError, match="batch-level loss"):
            tiny_run("t", nodes, (Edge("teacher", "student", loss, gate="linear"),))
    tiny_run("t", nodes, (Edge("teacher", "student", "dkd", gate="linear_decay", gate_options={"start": 0.0, "end": 1.0}),))
    with pytest.raises(SpecError, match="no option 'w_d'"):
        tiny_run("t", nodes, (Edge("teacher", "student", "rkd", options={"w_d": 25}),))


@needs_fashion_mnist
def test_a_run_with_every_baseline_as_an_edge_trains(tmp_path):
    teacher = tiny_run("t/plane4", (Node("student", "plane4"),), (Edge(LABELS, "student", "ce"),))
    train_run(teacher, tmp_path / "t/plane4", tmp_path, progress=False)
    nodes = (Node("teacher", "plane4", frozen_from="t/plane4"), Node("student", "plane2"))
    metrics = train_run(tiny_run("t/baselines", nodes, BASELINE_EDGES), tmp_path / "t/baselines", tmp_path, progress=False)
    row = pd.read_csv(tmp_path / "t/baselines/epochs.csv").iloc[0]
    # epochs.csv has a column per edge label: the two AT edges share "loss[at:teacher->student]"
    losses = {label: row[f"loss[{label}]"] for label in {edge.label for edge in BASELINE_EDGES}} | {"total": row["loss"]}
    assert len(losses) == 7 and all(math.isfinite(v) and v > 0 for v in losses.values()), losses
    assert 0 <= metrics["final_test_acc"] <= 100
