"""Edge losses and gates against hand computations."""

import math

import pytest
import torch

from kdrepro.catalog import check_edge_options
from kdrepro.losses import GATES, LOSSES, LossError


def softmax(xs, t=1.0):
    e = [math.exp(x / t) for x in xs]
    return [v / sum(e) for v in e]


def test_ce_per_sample_is_minus_log_softmax_of_label():
    logits = torch.tensor([[2.0, 0.5, -1.0], [0.0, 0.0, 3.0]])
    labels = torch.tensor([0, 1])
    got = LOSSES["ce"](None, logits, labels)
    want = [-math.log(softmax([2.0, 0.5, -1.0])[0]), -math.log(softmax([0.0, 0.0, 3.0])[1])]
    assert got.tolist() == pytest.approx(want, rel=1e-6)


@pytest.mark.parametrize("reduction,divisor", [("sum", 1), ("mean", 3)])
def test_kd_matches_hand_computation(reduction, divisor):
    teacher, student, tau = [3.0, 1.0, -2.0], [1.0, 2.0, 0.0], 2.0
    p, q = softmax(teacher, tau), softmax(student, tau)
    kl = sum(pi * math.log(pi / qi) for pi, qi in zip(p, q))
    got = LOSSES["kd"](torch.tensor([teacher]), torch.tensor([student]), torch.tensor([0]), temperature=tau, class_reduction=reduction)
    assert got.item() == pytest.approx(tau**2 * kl / divisor, rel=1e-6)


@pytest.mark.filterwarnings("ignore:reduction. .mean. divides")
def test_kd_equals_official_kldivloss_form():
    """class_reduction='mean' is exactly the official TAKD line T^2 * nn.KLDivLoss()(log_softmax(s/T), softmax(t/T))."""
    torch.manual_seed(0)
    s, t, tau = torch.randn(8, 10), torch.randn(8, 10), 4.0
    official = tau**2 * torch.nn.KLDivLoss(reduction="mean")(torch.log_softmax(s / tau, 1), torch.softmax(t / tau, 1))
    ours = LOSSES["kd"](t, s, torch.zeros(8, dtype=torch.long), temperature=tau, class_reduction="mean").mean()
    assert ours.item() == pytest.approx(official.item(), rel=1e-5)


def test_kd_is_zero_for_identical_logits_and_rejects_bad_reduction():
    x = torch.randn(4, 5)
    assert LOSSES["kd"](x, x, torch.zeros(4, dtype=torch.long)).abs().max() < 1e-6
    with pytest.raises(ValueError, match="class_reduction"):
        LOSSES["kd"](x, x, torch.zeros(4, dtype=torch.long), class_reduction="batchmean")


def test_gates():
    source = torch.tensor([[2.0, 0.0], [0.0, 1.0], [5.0, 1.0]])
    labels = torch.tensor([0, 0, 0])
    assert GATES["through"](source, labels, 0.3).tolist() == [1, 1, 1]
    assert GATES["cutoff"](source, labels, 0.3).tolist() == [0, 0, 0]
    assert GATES["linear"](source, labels, 0.25).tolist() == [0.25, 0.25, 0.25]
    assert GATES["correct"](source, labels, 0.3).tolist() == [1, 0, 1]
    assert GATES["correct"](None, labels, 0.3).tolist() == [1, 1, 1]


def test_unknown_loss_and_option_are_named():
    with pytest.raises(LossError, match="unknown loss 'kdd'"):
        check_edge_options("loss", "kdd", {})
    with pytest.raises(LossError, match="no option 'tau'"):
        check_edge_options("loss", "kd", {"tau": 4})
    check_edge_options("loss", "kd", {"temperature": 4, "class_reduction": "mean"})
