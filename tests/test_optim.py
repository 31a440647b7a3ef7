"""The engine's optimisers and schedules equal torch's step for step: SGD (with MultiStepLR), RMSProp,
per-parameter learning-rate scales as torch's parameter groups."""

import pytest
import torch

from kdrepro.engine.optim import SGD, RMSProp, learning_rate
from kdrepro.graph import Data, Edge, Node, Optimizer, RunSpec, Schedule


def step_both(ours, mine, theirs, ref, loss, steps: int) -> None:
    """`steps` updates of our optimiser on `ours` and of torch's on `theirs` (a copy), the same loss each,
    then the two parameter sets must agree."""
    for _ in range(steps):
        for params, opt in ((ours, mine), (theirs, ref)):
            opt.zero_grad()
            loss(params).backward()
            opt.step()
    assert all(torch.allclose(a, b, atol=1e-6) for a, b in zip(ours, theirs))


def copies(params):
    return [p.detach().clone().requires_grad_() for p in params]


@pytest.mark.parametrize("momentum,nesterov,weight_decay", [(0.9, False, 1e-4), (0.9, True, 5e-4), (0.0, False, 0.0)])
def test_sgd_matches_torch(momentum, nesterov, weight_decay):
    torch.manual_seed(0)
    ours = [torch.randn(5, 3, requires_grad=True), torch.randn(3, requires_grad=True)]
    theirs = copies(ours)
    mine = SGD(ours, lr=0.1, momentum=momentum, nesterov=nesterov, weight_decay=weight_decay)
    ref = torch.optim.SGD(theirs, lr=0.1, momentum=momentum, nesterov=nesterov, weight_decay=weight_decay)
    x = torch.randn(7, 5)
    step_both(ours, mine, theirs, ref, lambda p: (x @ p[0] + p[1]).tanh().sum(), steps=4)


@pytest.mark.parametrize("weight_decay", [0.0, 1e-3])
def test_rmsprop_matches_torch(weight_decay):
    torch.manual_seed(0)
    ours = [torch.randn(5, 3, requires_grad=True), torch.randn(3, requires_grad=True)]
    theirs = copies(ours)
    mine = RMSProp(ours, lr=0.01, alpha=0.9, eps=1e-5, weight_decay=weight_decay)
    ref = torch.optim.RMSprop(theirs, lr=0.01, alpha=0.9, eps=1e-5, weight_decay=weight_decay)
    x = torch.randn(7, 5)
    step_both(ours, mine, theirs, ref, lambda p: (x @ p[0] + p[1]).tanh().sum(), steps=5)


@pytest.mark.parametrize("kind", ["sgd", "rmsprop"])
def test_lr_scales_match_torch_param_groups(kind):
    torch.manual_seed(1)
    ours = [torch.randn(4, 3, requires_grad=True), torch.randn(3, requires_grad=True), torch.randn(3, requires_grad=True)]
    theirs = copies(ours)
    scales = [0.05, 1.0, 0.05]
    if kind == "sgd":
        mine = SGD(ours, lr=0.1, momentum=0.9, nesterov=False, weight_decay=1e-4, lr_scales=scales)
        ref = torch.optim.SGD([{"params": [theirs[0], theirs[2]], "lr": 0.005}, {"params": [theirs[1]]}], lr=0.1, momentum=0.9,
                              weight_decay=1e-4)
    else:
        mine = RMSProp(ours, lr=0.01, alpha=0.9, eps=1e-5, weight_decay=0.0, lr_scales=scales)
        ref = torch.optim.RMSprop([{"params": [theirs[0], theirs[2]], "lr": 0.0005}, {"params": [theirs[1]]}], lr=0.01,
                                  alpha=0.9, eps=1e-5)
    x = torch.randn(6, 4)
    step_both(ours, mine, theirs, ref, lambda p: (x @ p[0] + p[1] * p[2]).sin().sum(), steps=4)


def test_parameters_without_gradients_are_left_alone():
    a, b = torch.ones(2, requires_grad=True), torch.ones(2, requires_grad=True)
    opt = RMSProp([a, b], lr=0.1, alpha=0.9, eps=1e-8, weight_decay=0.0)
    for _ in range(2):
        opt.zero_grad()
        (a * 3).sum().backward()
        opt.step()
    assert torch.equal(b, torch.ones(2)) and not torch.equal(a, torch.ones(2))


@pytest.mark.parametrize("schedule,epochs", [
    (Schedule("multistep", (80, 120), gamma=0.1, reference_epochs=150), 150),
    (Schedule("multistep", (80, 120), gamma=0.1, reference_epochs=150), 8),
    (Schedule("step", step_size=30, gamma=0.2), 100),
    (Schedule("constant"), 5),
])
def test_schedules_match_multisteplr(schedule, epochs):
    spec = RunSpec("r", Data("fashion_mnist"), (Node("student", "plane2"),), (Edge("labels", "student", "ce"),),
                   epochs=epochs, seed=0, optimizer=Optimizer(lr=0.1), schedule=schedule)
    opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=0.1)
    gamma = schedule.gamma if schedule.kind != "constant" else 1.0
    sched = torch.optim.lr_scheduler.MultiStepLR(opt, spec.scaled_milestones(), gamma=gamma)
    for epoch in range(1, epochs + 1):
        assert learning_rate(spec, epoch) == pytest.approx(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
