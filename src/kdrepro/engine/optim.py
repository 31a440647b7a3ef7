"""SGD with momentum and RMSProp (PyTorch's update rules, foreach kernels) and epoch-wise learning-rate schedules.

Written out rather than taken from torch.optim because constructing a torch.optim optimizer imports
TorchDynamo, which costs about 3 s per training process: a third of a short run's wall-clock.
"""

from __future__ import annotations

from typing import Any

import torch

from kdrepro.graph import RunSpec


NORM_EPS = 1e-7  # pylearn2's max-norm constraint: W *= clip(norms, 0, max) / (1e-7 + norms)


def renormalise_(weight: torch.Tensor, max_norm: float, unit_dims: int) -> None:
    """pylearn2's max-norm constraint, in place: the L2 norm of each output unit's incoming weights (over
    its last `unit_dims` dimensions; leading dimensions, a stacked run's included, index the units) is
    clipped to `max_norm`, scaling the unit's weights by clip(norm, 0, max_norm) / (1e-7 + norm). That is
    MaxoutConvC01B._modify_updates (max_kernel_norm, norms of a c01b kernel over axes (0, 1, 2): each
    output channel's kernel) and Maxout's and Softmax's (max_col_norm, norms of W (in x out) over axis
    0: each unit's column) in lisa-lab/pylearn2 c3fb3c9 (Nov. 2014), pylearn2/models/maxout.py lines
    307-314 and 753-760, pylearn2/models/mlp.py lines 1479-1486; torch's Conv2d (out, in, kh, kw) and
    Linear (out, in) keep a unit's weights in their last 3 and 1 dimensions."""
    norms = weight.pow(2).sum(dim=tuple(range(-unit_dims, 0)), keepdim=True).sqrt()
    weight.mul_(norms.clamp(max=max_norm) / (NORM_EPS + norms))


class SGD:
    """torch.optim.SGD's update: d = g + wd*p; b = m*b + d (b = d at first); p -= lr * (d + m*b if nesterov else b).

    `lr_scales` (one per parameter, default 1) multiply the rate of single parameters, as torch's param
    groups with lr = base * scale do (pylearn2's W_lr_scale and b_lr_scale; FitNets' lr scale of the
    layers pre-trained in stage 1). `max_norms` (parameter index, max norm, unit dimensions) constrain
    weights after each step they were updated in (renormalise_). Parameters without a gradient (layers
    no edge reaches) are skipped, as torch does."""

    def __init__(self, params: list[torch.Tensor], lr: float, momentum: float, nesterov: bool, weight_decay: float,
                 lr_scales: list[float] | None = None, max_norms: list[tuple[int, float, int]] = ()):
        self.params, self.lr, self.momentum, self.nesterov, self.weight_decay = params, lr, momentum, nesterov, weight_decay
        self.lr_scales = list(lr_scales) if lr_scales is not None else [1.0] * len(params)
        if len(self.lr_scales) != len(params):
            raise ValueError(f"{len(self.lr_scales)} lr_scales for {len(params)} parameters")
        self.max_norms = list(max_norms)
        self.buffers: list[torch.Tensor] | None = None

    def zero_grad(self) -> None:
        for p in self.params:
            p.grad = None

    def with_grads(self) -> tuple[list[torch.Tensor], list[torch.Tensor], list[float]]:
        chosen = [(p, s) for p, s in zip(self.params, self.lr_scales) if p.grad is not None]
        return [p for p, _ in chosen], [p.grad for p, _ in chosen], [s for _, s in chosen]

    def apply(self, params: list[torch.Tensor], updates: list[torch.Tensor], scales: list[float]) -> None:
        """p -= lr * scale * update, one foreach call per distinct scale; then the max-norm constraints."""
        for scale in sorted(set(scales)):
            picked = [i for i, s in enumerate(scales) if s == scale]
            torch._foreach_add_([params[i] for i in picked], [updates[i] for i in picked], alpha=-self.lr * scale)
        for index, max_norm, unit_dims in self.max_norms:
            if self.params[index].grad is not None:  # pylearn2 constrains the weights it updates
                renormalise_(self.params[index], max_norm, unit_dims)

    @torch.no_grad()
    def step(self) -> None:
        params, grads, scales = self.with_grads()
        if self.weight_decay:
            grads = torch._foreach_add(grads, params, alpha=self.weight_decay)
        if self.momentum:
            if self.buffers is None:
                self.buffers = [g.clone() for g in grads]
            else:
                torch._foreach_mul_(self.buffers, self.momentum)
                torch._foreach_add_(self.buffers, grads)
            grads = torch._foreach_add(grads, self.buffers, alpha=self.momentum) if self.nesterov else self.buffers
        self.apply(params, grads, scales)

    def state_dict(self) -> dict[str, Any]:
        return {"lr": self.lr, "buffers": self.buffers}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.lr, self.buffers = state["lr"], state["buffers"]


class RMSProp(SGD):
    """torch.optim.RMSprop's update (no momentum, not centred): g = g + wd*p; v = alpha*v + (1-alpha)*g^2
    (v = 0 at first); p -= lr * g / (sqrt(v) + eps). Pylearn2's RMSProp, which FitNets' code uses
    (decay 0.9, max_scaling 1e5), divides by max(sqrt(v), 1/max_scaling) instead of sqrt(v) + eps: the
    two differ only where sqrt(v) is below about 1e-5."""

    def __init__(self, params: list[torch.Tensor], lr: float, alpha: float, eps: float, weight_decay: float,
                 lr_scales: list[float] | None = None, max_norms: list[tuple[int, float, int]] = ()):
        super().__init__(params, lr, 0.0, False, weight_decay, lr_scales, max_norms)
        self.alpha, self.eps = alpha, eps

    @torch.no_grad()
    def step(self) -> None:
        params, grads, scales = self.with_grads()
        if self.weight_decay:
            grads = torch._foreach_add(grads, params, alpha=self.weight_decay)
        if self.buffers is None:
            self.buffers = [torch.zeros_like(g) for g in grads]
        torch._foreach_mul_(self.buffers, self.alpha)
        torch._foreach_addcmul_(self.buffers, grads, grads, value=1 - self.alpha)
        denominators = torch._foreach_sqrt(self.buffers)
        torch._foreach_add_(denominators, self.eps)
        self.apply(params, torch._foreach_div(grads, denominators), scales)


def learning_rate(spec: RunSpec, epoch: int, step: int = 0, steps_per_epoch: int = 1) -> float:
    """The rate of `step` (0-based) of `epoch` (1-based): the base rate times gamma per milestone passed
    (MultiStepLR's rule), or on the `linear` schedule pylearn2's linear decay. During a warm-up it rises
    linearly, base * (i + 1) / warm-up steps at the i-th step (the Tf-KD code's WarmUpLR); the warm-up
    scales with the run's length as milestones do."""
    if spec.schedule.kind == "linear":
        rate = linear_decay(spec, epoch)
    else:
        passed = sum(1 for m in spec.scaled_milestones() if m < epoch) if spec.schedule.kind != "constant" else 0
        rate = spec.optimizer.lr * spec.schedule.gamma ** passed
    warmup = warmup_steps(spec, steps_per_epoch)
    done = (epoch - 1) * steps_per_epoch + step
    return rate * (done + 1) / warmup if done < warmup else rate


def epochs_seen(spec: RunSpec, epoch: int) -> float:
    """The epochs finished before `epoch` (1-based), counted in the reference schedule's epochs: the count
    pylearn2's per-epoch schedules read (0 during the first epoch)."""
    return (epoch - 1) * (spec.schedule.reference_epochs or spec.epochs) / spec.epochs


def linear_decay(spec: RunSpec, epoch: int) -> float:
    """pylearn2's LinearDecayOverEpoch(start, saturate, decay_factor = gamma) (lisa-lab/pylearn2 c3fb3c9,
    pylearn2/training_algorithms/sgd.py lines 933-1012): with c epochs seen, the base rate until c reaches
    start, then base - step * (c - start + 1) with step = base * (1 - gamma) / (saturate - start + 1), and
    base * gamma from c = saturate on."""
    start, saturate = spec.schedule.milestones
    base, gamma, seen = spec.optimizer.lr, spec.schedule.gamma, epochs_seen(spec, epoch)
    if seen < start:
        return base
    if seen >= saturate:
        return base * gamma
    return base - base * (1 - gamma) / (saturate - start + 1) * (seen - start + 1)


def momentum(spec: RunSpec, epoch: int) -> float:
    """SGD's momentum during `epoch`: the optimizer's, or, with schedule.final_momentum, pylearn2's
    MomentumAdjustor(start, saturate, final_momentum) (learning_rule.py c3fb3c9 lines 167-248): with c
    epochs seen, a = clip((c - start) / (saturate - start), 0, 1) and momentum (1 - a) m0 + a final."""
    schedule, initial = spec.schedule, spec.optimizer.momentum
    if schedule.final_momentum is None:
        return initial
    start, saturate = schedule.momentum_epochs
    seen = epochs_seen(spec, epoch)
    if saturate == start:
        return schedule.final_momentum if seen >= start else initial
    a = min(max((seen - start) / (saturate - start), 0.0), 1.0)
    return initial * (1 - a) + a * schedule.final_momentum


def warmup_steps(spec: RunSpec, steps_per_epoch: int) -> int:
    if not spec.schedule.warmup_epochs:
        return 0
    ref = spec.schedule.reference_epochs or spec.epochs
    return max(1, round(spec.schedule.warmup_epochs * steps_per_epoch * spec.epochs / ref))
