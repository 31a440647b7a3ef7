"""SGD with momentum (PyTorch's update rule, foreach kernels) and epoch-wise learning-rate schedules.

Written out rather than taken from torch.optim because constructing a torch.optim optimizer imports
TorchDynamo, which costs about 3 s per training process: a third of a short run's wall-clock.
"""

from __future__ import annotations

from typing import Any

import torch

from kdrepro.graph import RunSpec


class SGD:
    """torch.optim.SGD's update: d = g + wd*p; b = m*b + d (b = d at first); p -= lr * (d + m*b if nesterov else b)."""

    def __init__(self, params: list[torch.Tensor], lr: float, momentum: float, nesterov: bool, weight_decay: float):
        self.params, self.lr, self.momentum, self.nesterov, self.weight_decay = params, lr, momentum, nesterov, weight_decay
        self.buffers: list[torch.Tensor] | None = None

    def zero_grad(self) -> None:
        for p in self.params:
            p.grad = None

    @torch.no_grad()
    def step(self) -> None:
        params = [p for p in self.params if p.grad is not None]
        grads = [p.grad for p in params]
        if self.weight_decay:
            grads = torch._foreach_add(grads, params, alpha=self.weight_decay)
        if self.momentum:
            if self.buffers is None:
                self.buffers = [g.clone() for g in grads]
            else:
                torch._foreach_mul_(self.buffers, self.momentum)
                torch._foreach_add_(self.buffers, grads)
            grads = torch._foreach_add(grads, self.buffers, alpha=self.momentum) if self.nesterov else self.buffers
        torch._foreach_add_(params, grads, alpha=-self.lr)

    def state_dict(self) -> dict[str, Any]:
        return {"lr": self.lr, "buffers": self.buffers}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.lr, self.buffers = state["lr"], state["buffers"]


def learning_rate(spec: RunSpec, epoch: int, step: int = 0, steps_per_epoch: int = 1) -> float:
    """The rate of `step` (0-based) of `epoch` (1-based): the base rate times gamma per milestone passed
    (MultiStepLR's rule). During a warm-up it rises linearly, base * (i + 1) / warm-up steps at the i-th
    step (the Tf-KD code's WarmUpLR); the warm-up scales with the run's length as milestones do."""
    passed = sum(1 for m in spec.scaled_milestones() if m < epoch) if spec.schedule.kind != "constant" else 0
    rate = spec.optimizer.lr * spec.schedule.gamma ** passed
    warmup = warmup_steps(spec, steps_per_epoch)
    done = (epoch - 1) * steps_per_epoch + step
    return rate * (done + 1) / warmup if done < warmup else rate


def warmup_steps(spec: RunSpec, steps_per_epoch: int) -> int:
    if not spec.schedule.warmup_epochs:
        return 0
    ref = spec.schedule.reference_epochs or spec.epochs
    return max(1, round(spec.schedule.warmup_epochs * steps_per_epoch * spec.epochs / ref))
