"""What a sampler configuration asks for, checked without torch: the sampler's name, its options and their
values, and whether a batch size fits them (kdrepro.data.samplers describes the samplers). Run specs and
run names are made from these plans; the samplers that order an epoch extend them with their tensor code.
"""

from __future__ import annotations

import inspect
from typing import Any


class SamplerError(ValueError):
    """A sampler is unknown or given an option it does not take or a bad value."""


class RandomPlan:
    needs_embeddings: str | None = None

    def check(self, batch_size: int) -> None:
        """Any batch size will do."""


class GroupUniformPlan:
    """Batches of whole groups (classes for CUR, superclasses for SUR) drawn at random; k is given under
    one of two keys, images per group (`per_group_key`) or groups per batch (`per_batch_key`)."""

    needs_embeddings: str | None = None

    def __init__(self, name: str, unit: str, per_group_key: str, per_group: int | None, per_batch_key: str,
                 per_batch: int | None):
        if (per_group is None) == (per_batch is None):
            raise SamplerError(f"{name}: give exactly one of {per_group_key} (k images of each {unit}, batch_size / k "
                               f"{unit}es per batch) and {per_batch_key} (k {unit}es per batch)")
        key, value = (per_group_key, per_group) if per_group is not None else (per_batch_key, per_batch)
        if value < 1:
            raise SamplerError(f"{name}: {key} must be at least 1, got {value}")
        self.name, self.unit, self.key, self.k = name, unit, key, value
        self.per_group = per_group is not None

    def check(self, batch_size: int) -> None:
        if self.per_group and batch_size % self.k:
            raise SamplerError(f"{self.name}: {self.key} = {self.k} does not divide batch_size {batch_size} (a batch holds "
                               f"batch_size / {self.key} whole {self.unit}es)")


class ClassUniformPlan(GroupUniformPlan):
    def __init__(self, samples_per_class: int | None = None, classes_per_batch: int | None = None):
        super().__init__("cur", "class", "samples_per_class", samples_per_class, "classes_per_batch", classes_per_batch)


class SuperclassUniformPlan(GroupUniformPlan):
    def __init__(self, superclasses: int, samples_per_superclass: int | None = None, superclasses_per_batch: int | None = None,
                 node: str = "teacher"):
        super().__init__("sur", "superclass", "samples_per_superclass", samples_per_superclass, "superclasses_per_batch",
                         superclasses_per_batch)
        if superclasses < 1:
            raise SamplerError(f"sur: superclasses must be at least 1, got {superclasses}")
        self.superclasses, self.needs_embeddings = superclasses, node


PLANS: dict[str, type] = {"random": RandomPlan, "cur": ClassUniformPlan, "sur": SuperclassUniformPlan}


def make_plan(config: dict[str, Any] | None, classes: dict[str, type] = PLANS):
    """{"name": "cur", "samples_per_class": 16} -> an instance of classes[name] (the plans, or the samplers
    that extend them); None -> the random one."""
    if config is None:
        return classes["random"]()
    options = dict(config)
    name = options.pop("name", None)
    if name not in classes:
        raise SamplerError(f"unknown sampler {name!r}; known: {', '.join(sorted(classes))} (give it as sampler.name)")
    accepted = [p for p in inspect.signature(classes[name]).parameters]
    unknown = sorted(set(options) - set(accepted))
    if unknown:
        raise SamplerError(f"sampler {name!r} takes no option {unknown[0]!r}; it takes: {', '.join(accepted) or 'none'}")
    try:
        return classes[name](**options)
    except TypeError as err:
        raise SamplerError(f"sampler {name!r}: {err}") from None


def sampler_tag(config: dict[str, Any]) -> str:
    """A short name of a sampler's configuration for run names: cur-k16 (16 images per class), cur-c4
    (4 classes per batch), sur4-k64 (4 superclasses, 64 images of each in a batch), sur4-c2."""
    plan = make_plan(config)
    if not isinstance(plan, GroupUniformPlan):
        return "random"
    prefix = plan.name + (f"{plan.superclasses}" if isinstance(plan, SuperclassUniformPlan) else "")
    return f"{prefix}-{'k' if plan.per_group else 'c'}{plan.k}"
