"""Batch samplers (CCKD's CUR and SUR) on the device-resident data path: balance and determinism."""

import pytest
import torch

from kdrepro.data.device import DeviceData
from kdrepro.data.sources import DatasetInfo, Split
from kdrepro.data.samplers import (
    ClassUniformSampler,
    RandomSampler,
    SamplerError,
    SuperclassUniformSampler,
    kmeans,
    make_sampler,
)
from kdrepro.data.sampling import sampler_tag
from kdrepro.graph import LABELS, TOP_LATER_DEFAULTS, Data, Edge, Node, RunSpec, SpecError


def toy(n_train=240, classes=6, size=8):
    g = torch.Generator().manual_seed(1)
    make = lambda n: Split(torch.randint(0, 256, (n, 1, size, size), generator=g, dtype=torch.uint8),  # noqa: E731
                           torch.arange(n) % classes)
    return make(n_train), make(60), DatasetInfo("toy", classes, 1, size, (0.5,), (0.25,))


def batches(data, sampler, seed=3, batch_size=24):
    return list(data.train_batches(batch_size, torch.Generator().manual_seed(seed), sampler))


def test_random_sampler_is_the_default_order_bit_for_bit():
    data = DeviceData(*toy(), crop_padding=1, flip=True)
    default, explicit = batches(data, None), batches(data, RandomSampler())
    assert all(torch.equal(a[0], b[0]) and torch.equal(a[2], b[2]) for a, b in zip(default, explicit))
    assert torch.equal(torch.cat([b[2] for b in default]), torch.randperm(240, generator=torch.Generator().manual_seed(3)))


@pytest.mark.parametrize("k", [4, 6, 8, 12])
def test_cur_batch_holds_exactly_k_images_of_each_of_batch_over_k_classes(k):
    """CCKD Sec. 3.4: the CUR sampler takes k samples of each class it draws (the paper's reading of k)."""
    data = DeviceData(*toy())  # 6 classes of 40 images, batches of 24
    epoch = batches(data, ClassUniformSampler(samples_per_class=k))
    assert sum(len(b[1]) for b in epoch) == data.n_train and len(epoch) == 10  # as many steps as random batches
    for images, labels, index in epoch:
        counts = labels.bincount(minlength=6)
        assert (counts > 0).sum() == 24 // k and set(counts[counts > 0].tolist()) == {k}
        assert torch.equal(labels, data.splits["train"][1][index])
        assert len(index.unique()) == len(index)  # no image twice in a batch


def test_cur_checks_k_against_the_batch_and_the_classes_naming_the_key():
    labels = torch.arange(240) % 6  # 6 classes of 40
    with pytest.raises(SamplerError, match="samples_per_class = 5 does not divide batch_size 24"):
        ClassUniformSampler(samples_per_class=5).order(labels, 24, torch.Generator())
    with pytest.raises(SamplerError, match=r"samples_per_class = 48 exceeds the smallest class \(40 images"):
        ClassUniformSampler(samples_per_class=48).order(labels, 96, torch.Generator())
    with pytest.raises(SamplerError, match="samples_per_class = 2 asks for batch_size / samples_per_class = 12 classes"):
        ClassUniformSampler(samples_per_class=2).order(labels, 24, torch.Generator())
    for both_or_none in ({}, {"samples_per_class": 4, "classes_per_batch": 2}):
        with pytest.raises(SamplerError, match="exactly one of samples_per_class"):
            ClassUniformSampler(**both_or_none)
    with pytest.raises(SpecError, match="sampler: cur: samples_per_class = 5 does not divide batch_size 24"):
        spec(sampler={"name": "cur", "samples_per_class": 5}, batch_size=24)  # at spec time, before any training


@pytest.mark.parametrize("k", [1, 2, 3, 6])
def test_cur_read_as_classes_per_batch_holds_k_classes_in_equal_shares(k):
    data = DeviceData(*toy())
    epoch = batches(data, ClassUniformSampler(classes_per_batch=k))
    assert sum(len(b[1]) for b in epoch) == data.n_train and len(epoch) == 10  # as many steps as random batches
    for images, labels, index in epoch:
        counts = labels.bincount(minlength=6)
        assert (counts > 0).sum() == k and set(counts[counts > 0].tolist()) == {24 // k}
        assert torch.equal(labels, data.splits["train"][1][index])
        assert len(index.unique()) == len(index)  # 40 images per class: no repeats within a batch


def test_cur_is_deterministic_from_the_generator_and_covers_the_classes_evenly():
    data = DeviceData(*toy())
    cur = lambda: ClassUniformSampler(samples_per_class=12)  # noqa: E731
    first, again, other = batches(data, cur()), batches(data, cur()), batches(data, cur(), seed=4)
    assert all(torch.equal(a[2], b[2]) for a, b in zip(first, again))
    assert not all(torch.equal(a[2], b[2]) for a, b in zip(first, other))
    # within a class, samples come from a permutation of the class: no image twice before all were seen
    seen = torch.cat([b[2] for b in first])
    for c in range(6):
        mine = seen[data.splits["train"][1][seen] == c]
        assert len(mine.unique()) == min(len(mine), 40)


def test_cur_remainder_and_small_class_count():
    labels = torch.arange(50) % 3
    order = ClassUniformSampler(classes_per_batch=5).order(labels, 10, torch.Generator().manual_seed(0))  # 3 classes: all 3
    assert len(order) == 50
    first = labels[order[:10]].bincount(minlength=3).tolist()
    assert sorted(first) == [3, 3, 4]


def clustered_embeddings(classes=6, per_class=40, dim=5):
    """Classes 0-2 around one point and 3-5 around another, far apart."""
    g = torch.Generator().manual_seed(0)
    labels = torch.arange(classes * per_class) % classes
    centre = torch.where((labels < 3)[:, None], torch.full((1, dim), 10.0), torch.full((1, dim), -10.0))
    return centre + labels[:, None].float() * 0.1 + torch.randn(len(labels), dim, generator=g) * 0.01, labels


def test_kmeans_is_seeded_and_finds_the_clusters():
    points = torch.tensor([[0.0, 0], [0.1, 0], [5, 5], [5.1, 5], [10, 0], [10.1, 0]])
    a = kmeans(points, 3, torch.Generator().manual_seed(0))
    b = kmeans(points, 3, torch.Generator().manual_seed(0))
    assert torch.equal(a, b)
    assert a[0] == a[1] and a[2] == a[3] and a[4] == a[5] and len(a.unique()) == 3


def test_sur_clusters_classes_by_mean_embedding_and_balances_superclasses():
    embeddings, labels = clustered_embeddings()
    sampler = SuperclassUniformSampler(superclasses=2, superclasses_per_batch=2)
    sampler.prepare(embeddings, labels, torch.Generator().manual_seed(0))
    sup = sampler.superclass_of
    assert len(set(sup[:3].tolist())) == 1 and len(set(sup[3:].tolist())) == 1 and sup[0] != sup[3]
    order = sampler.order(labels, 24, torch.Generator().manual_seed(5))
    assert len(order) == len(labels)
    for start in range(0, len(order), 24):
        assert sup[labels[order[start:start + 24]]].bincount(minlength=2).tolist() == [12, 12]
    assert torch.equal(order, sampler.order(labels, 24, torch.Generator().manual_seed(5)))


def test_sur_batch_holds_exactly_k_images_of_each_of_batch_over_k_superclasses():
    embeddings, labels = clustered_embeddings()  # 2 superclasses of 3 classes, 120 images each
    sampler = SuperclassUniformSampler(superclasses=2, samples_per_superclass=12)
    sampler.prepare(embeddings, labels, torch.Generator().manual_seed(0))
    order = sampler.order(labels, 24, torch.Generator().manual_seed(5))
    for start in range(0, len(order), 24):
        assert sampler.superclass_of[labels[order[start:start + 24]]].bincount(minlength=2).tolist() == [12, 12]
    too_small = SuperclassUniformSampler(superclasses=2, samples_per_superclass=6)
    too_small.prepare(embeddings, labels, torch.Generator().manual_seed(0))
    with pytest.raises(SamplerError, match="samples_per_superclass = 6 asks for batch_size / samples_per_superclass = 4 superclasses"):
        too_small.order(labels, 24, torch.Generator())


def test_sur_with_one_superclass_per_batch_keeps_each_batch_inside_one():
    embeddings, labels = clustered_embeddings()
    sampler = SuperclassUniformSampler(superclasses=2, superclasses_per_batch=1)
    sampler.prepare(embeddings, labels, torch.Generator().manual_seed(0))
    order = sampler.order(labels, 24, torch.Generator().manual_seed(1))
    for start in range(0, len(order), 24):
        assert len(sampler.superclass_of[labels[order[start:start + 24]]].unique()) == 1


def test_sur_needs_prepare_and_no_more_superclasses_than_classes():
    with pytest.raises(SamplerError, match="prepare"):
        SuperclassUniformSampler(2, superclasses_per_batch=1).order(torch.arange(10) % 2, 4, torch.Generator())
    embeddings, labels = clustered_embeddings()
    with pytest.raises(SamplerError, match="7 superclasses"):
        SuperclassUniformSampler(7, samples_per_superclass=4).prepare(embeddings, labels, torch.Generator())


def test_make_sampler_names_bad_input():
    assert isinstance(make_sampler(None), RandomSampler)
    assert make_sampler({"name": "cur", "samples_per_class": 4}).k == 4
    assert sampler_tag({"name": "cur", "samples_per_class": 16}) == "cur-k16"
    assert sampler_tag({"name": "sur", "superclasses": 4, "superclasses_per_batch": 2}) == "sur4-c2"
    with pytest.raises(SamplerError, match="unknown sampler 'curr'"):
        make_sampler({"name": "curr"})
    with pytest.raises(SamplerError, match="no option 'k'"):
        make_sampler({"name": "cur", "k": 4})
    with pytest.raises(SamplerError, match="at least 1"):
        make_sampler({"name": "cur", "classes_per_batch": 0})


def spec(**kw):
    base = dict(name="t/s", data=Data("fashion_mnist"), nodes=(Node("teacher", "plane4", frozen_from="t/t"), Node("student", "plane2")),
                edges=(Edge(LABELS, "student", "ce"),), epochs=1, seed=0)
    return RunSpec(**(base | kw))


def test_spec_sampler_is_validated_round_trips_and_enters_the_hash_only_when_set():
    plain = spec()
    assert "sampler" not in str(plain.config_hash) and plain.sampler is None
    cur = spec(sampler={"name": "cur", "samples_per_class": 16})
    assert cur.config_hash != plain.config_hash
    assert RunSpec.from_dict(cur.to_dict()) == cur and RunSpec.from_dict(cur.to_dict()).config_hash == cur.config_hash
    # a spec written before the fields existed (no "sampler" or "test_every" key) keeps its hash
    old = {k: v for k, v in plain.to_dict().items() if k not in TOP_LATER_DEFAULTS}
    assert RunSpec.from_dict(old).config_hash == plain.config_hash
    import hashlib
    import json
    identity = dict(old, data={k: v for k, v in old["data"].items() if k not in ("root", "download")})
    assert plain.config_hash == hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()[:16]
    spec(sampler={"name": "sur", "superclasses": 2, "samples_per_superclass": 64, "node": "teacher"})
    with pytest.raises(SpecError, match="frozen node"):
        spec(sampler={"name": "sur", "superclasses": 2, "samples_per_superclass": 64, "node": "student"})
    with pytest.raises(SpecError, match="unknown sampler"):
        spec(sampler={"name": "balanced"})
