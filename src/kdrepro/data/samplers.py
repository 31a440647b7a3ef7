"""Batch samplers: the order in which an epoch visits the training split.

A sampler's `order(labels, batch_size, generator)` returns a permutation-like index tensor of length
n (the train split's size); DeviceData.train_batches cuts it into consecutive batches of
`batch_size` (the last one short), so every sampler gives the same number of steps per epoch. All
draws come from the epoch's CPU generator: the same generator state gives the same order.

random  torch.randperm: the engine's default order, bit for bit.
cur     class-uniform (CCKD's CUR sampler, Peng et al. ICCV 2019, Sec. 3.4): in the paper's reading,
        `samples_per_class` = k images of each class and batch_size / k classes per batch, the classes
        drawn at random without replacement. The other reading of k, k classes per batch and
        batch_size / k images of each (the remainder, if any, one each to the first classes drawn),
        is `classes_per_batch`. Within a class, images come from a random permutation of the class,
        renewed when used up, so no image comes twice in a batch.
sur     superclass-uniform (CCKD's SUR sampler): the classes are clustered into `superclasses`
        groups by k-means over the frozen node `node`'s per-class mean embeddings (computed once
        at run start; k-means seeded by the run seed), then batches are drawn as by `cur` with the
        superclasses as the classes: `samples_per_superclass` = k images of each of batch_size / k
        superclasses (the paper's reading, its "samples by superclass and selects k for each sampled
        superclass", images uniform within a superclass), or `superclasses_per_batch`.

Where k is images per group, batch_size must be a multiple of k, and k at most the smallest group's
size and batch_size / k at most the number of groups; each is checked, naming its key (batch_size when
the spec is made, the group sizes on the first epoch's labels).

A sampler that needs embeddings names the node in `needs_embeddings`; the engine computes that
node's embeddings of the training split and calls `prepare(embeddings, labels, generator)` once.
"""

from __future__ import annotations

from typing import Any

import torch

from kdrepro.data.sampling import (
    ClassUniformPlan,
    GroupUniformPlan,
    RandomPlan,
    SamplerError,
    SuperclassUniformPlan,
    make_plan,
)


class RandomSampler(RandomPlan):
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



class GroupUniformSampler(GroupUniformPlan):
    def groups_per_batch(self, groups: torch.Tensor, batch_size: int) -> int:
        """How many groups each batch draws, checked against the groups' sizes when k is images per group."""
        if not self.per_group:
            return self.k
        self.check(batch_size)
        present, sizes = groups.unique(return_counts=True)
        smallest = int(sizes.argmin())
        if self.k > sizes[smallest]:
            raise SamplerError(f"{self.name}: {self.key} = {self.k} exceeds the smallest {self.unit} "
                               f"({int(sizes[smallest])} images in {self.unit} {int(present[smallest])})")
        if batch_size // self.k > len(present):
            raise SamplerError(f"{self.name}: {self.key} = {self.k} asks for batch_size / {self.key} = {batch_size // self.k} "
                               f"{self.unit}es per batch, but there are {len(present)}")
        return batch_size // self.k

    def grouped_order(self, groups: torch.Tensor, batch_size: int, generator: torch.Generator) -> torch.Tensor:
        return group_uniform_order(groups, self.groups_per_batch(groups, batch_size), batch_size, generator)


class ClassUniformSampler(ClassUniformPlan, GroupUniformSampler):
    def order(self, labels: torch.Tensor, batch_size: int, generator: torch.Generator) -> torch.Tensor:
        return self.grouped_order(labels.cpu(), batch_size, generator)


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


class SuperclassUniformSampler(SuperclassUniformPlan, GroupUniformSampler):
    superclass_of: torch.Tensor | None = None  # set by prepare()

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
        return self.grouped_order(self.superclass_of[labels.cpu()], batch_size, generator)


SAMPLERS: dict[str, type] = {"random": RandomSampler, "cur": ClassUniformSampler, "sur": SuperclassUniformSampler}


def make_sampler(config: dict[str, Any] | None):
    """{"name": "cur", "samples_per_class": 16} -> a sampler; None -> the random one."""
    return make_plan(config, SAMPLERS)
