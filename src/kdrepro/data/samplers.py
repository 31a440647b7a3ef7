"""Batch samplers: the order in which an epoch visits the training split.

A sampler's `order(labels, batch_size, generator)` returns a permutation-like index tensor of length
n (the train split's size); DeviceData.train_batches cuts it into consecutive batches of
`batch_size` (the last one short), so every sampler gives the same number of steps per epoch. All
draws come from the epoch's CPU generator: the same generator state gives the same order.

random  torch.randperm: the engine's default order, bit for bit.
cur     class-uniform (CCKD's CUR sampler): each batch holds `classes_per_batch` classes drawn at
        random without replacement, and batch_size / classes_per_batch samples of each (the
        remainder, if any, goes one each to the first classes drawn). Within a class, samples come
        from a random permutation of the class, renewed when used up (no image twice in a batch
        unless the class is smaller than its share).
sur     superclass-uniform (CCKD's SUR sampler): the classes are clustered into `superclasses`
        groups by k-means over the frozen node `node`'s per-class mean embeddings (computed once
        at run start; k-means seeded by the run seed), then batches are drawn as by `cur` with the
        superclasses as the classes (`superclasses_per_batch` per batch, samples uniform within a
        superclass).

A sampler that needs embeddings names the node in `needs_embeddings`; the engine computes that
node's embeddings of the training split and calls `prepare(embeddings, labels, generator)` once.
"""

from __future__ import annotations

import inspect
from typing import Any

import torch


class SamplerError(ValueError):
    """A sampler is unknown or given an option it does not take or a bad value."""


class RandomSampler:
    needs_embeddings: str | None = None

    def order(self, labels: torch.Tensor, batch_size: int, generator: torch.Generator) -> torch.Tensor:
        return torch.randperm(len(labels), generator=generator)


def group_uniform_order(groups: torch.Tensor, per_batch: int, batch_size: int, generator: torch.Generator) -> torch.Tensor:
    """Batches of `per_batch` distinct groups (uniform at random), an equal share of samples from each;
    length len(groups), cut into batches of batch_size by the caller."""
    n = len(groups)
    present = groups.unique()
    members = [torch.nonzero(groups == g).flatten() for g in present.tolist()]
    k = min(per_batch, len(members))
    shares = [batch_size // k + (1 if j < batch_size % k else 0) for j in range(k)]
    streams: list[list[int]] = [[] for _ in members]
    out: list[int] = []
    while len(out) < n:
        chosen = torch.randperm(len(members), generator=generator)[:k].tolist()
        for share, g in zip(shares, chosen):
            while len(streams[g]) < share:
                fresh = members[g][torch.randperm(len(members[g]), generator=generator)].tolist()
                held = set(streams[g])  # the rest of the last round goes first: no image twice in a batch
                streams[g] += [i for i in fresh if i not in held] + [i for i in fresh if i in held]
            out += streams[g][:share]
            del streams[g][:share]
    return torch.tensor(out[:n], dtype=torch.long)


class ClassUniformSampler:
    needs_embeddings: str | None = None

    def __init__(self, classes_per_batch: int):
        if classes_per_batch < 1:
            raise SamplerError(f"cur: classes_per_batch must be at least 1, got {classes_per_batch}")
        self.classes_per_batch = classes_per_batch

    def order(self, labels: torch.Tensor, batch_size: int, generator: torch.Generator) -> torch.Tensor:
        return group_uniform_order(labels.cpu(), self.classes_per_batch, batch_size, generator)


def kmeans(points: torch.Tensor, k: int, generator: torch.Generator, iterations: int = 100) -> torch.Tensor:
    """Lloyd's k-means from k distinct points drawn by `generator`; an emptied cluster restarts at the
    point farthest from its centre. Returns each point's cluster."""
    points = points.float()
    centres = points[torch.randperm(len(points), generator=generator)[:k]].clone()
    assign = torch.full((len(points),), -1, dtype=torch.long)
    for _ in range(iterations):
        new = torch.cdist(points, centres).argmin(1)
        if torch.equal(new, assign):
            break
        assign = new
        for c in range(k):
            mine = assign == c
            if mine.any():
                centres[c] = points[mine].mean(0)
            else:
                far = torch.cdist(points, centres).min(1).values.argmax()
                centres[c], assign[far] = points[far], c
    return assign


class SuperclassUniformSampler:
    def __init__(self, superclasses: int, superclasses_per_batch: int = 1, node: str = "teacher"):
        if superclasses < 1 or superclasses_per_batch < 1:
            raise SamplerError(f"sur: superclasses ({superclasses}) and superclasses_per_batch "
                               f"({superclasses_per_batch}) must be at least 1")
        self.superclasses, self.per_batch, self.needs_embeddings = superclasses, superclasses_per_batch, node
        self.superclass_of: torch.Tensor | None = None

    def prepare(self, embeddings: torch.Tensor, labels: torch.Tensor, generator: torch.Generator) -> None:
        """Cluster the classes by their mean embeddings (classes absent from `labels` stay unassigned)."""
        embeddings, labels = embeddings.detach().float().cpu().flatten(1), labels.cpu()
        classes = labels.unique()
        if self.superclasses > len(classes):
            raise SamplerError(f"sur: {self.superclasses} superclasses asked for, but the data has {len(classes)} classes")
        means = torch.stack([embeddings[labels == c].mean(0) for c in classes.tolist()])
        assign = kmeans(means, self.superclasses, generator)
        self.superclass_of = torch.full((int(classes.max()) + 1,), -1, dtype=torch.long)
        self.superclass_of[classes] = assign

    def order(self, labels: torch.Tensor, batch_size: int, generator: torch.Generator) -> torch.Tensor:
        if self.superclass_of is None:
            raise SamplerError("sur: prepare() with the node's embeddings must come before the first epoch")
        return group_uniform_order(self.superclass_of[labels.cpu()], self.per_batch, batch_size, generator)


SAMPLERS: dict[str, type] = {"random": RandomSampler, "cur": ClassUniformSampler, "sur": SuperclassUniformSampler}


def make_sampler(config: dict[str, Any] | None):
    """{"name": "cur", "classes_per_batch": 4} -> a sampler; None -> the random one."""
    if config is None:
        return RandomSampler()
    options = dict(config)
    name = options.pop("name", None)
    if name not in SAMPLERS:
        raise SamplerError(f"unknown sampler {name!r}; known: {', '.join(sorted(SAMPLERS))} (give it as sampler.name)")
    accepted = [p for p in inspect.signature(SAMPLERS[name]).parameters]
    unknown = sorted(set(options) - set(accepted))
    if unknown:
        raise SamplerError(f"sampler {name!r} takes no option {unknown[0]!r}; it takes: {', '.join(accepted) or 'none'}")
    try:
        return SAMPLERS[name](**options)
    except TypeError as err:
        raise SamplerError(f"sampler {name!r}: {err}") from None
