"""The engine's SGD and schedules equal torch.optim.SGD with MultiStepLR, step for step."""

import pytest
import torch

from kdrepro.engine.optim import SGD, learning_rate
from kdrepro.graph import Data, Edge, Node, Optimizer, RunSpec, Schedule


@pytest.mark.parametrize("momentum,nesterov,weight_decay", [(0.9, False, 1e-4), (0.9, True, 5e-4), (0.0, False, 0.0)])
def test_sgd_matches_torch(momentum, nesterov, weight_decay):
    torch.manual_seed(0)
    ours = [torch.randn(5, 3, requires_grad=True), torch.randn(3, requires_grad=True)]
    theirs = [p.detach().clone().requires_grad_() for p in ours]
    mine = SGD(ours, lr=0.1, momentum=momentum, nesterov=nesterov, weight_decay=weight_decay)
    ref = torch.optim.SGD(theirs, lr=0.1, momentum=momentum, nesterov=nesterov, weight_decay=weight_decay)
    x = torch.randn(7, 5)
    for _ in range(4):
        for params, opt in ((ours, mine), (theirs, ref)):
            opt.zero_grad()
            ((x @ params[0] + params[1]).tanh().sum()).backward()
            opt.step()
    assert all(torch.allclose(a, b, atol=1e-6) for a, b in zip(ours, theirs))


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
