"""Dataset readers on fabricated files in the real on-disk formats, and the device-resident data path."""

import gzip
import importlib.util
import pickle
import shutil

import numpy as np
import pytest
import torch
from conftest import FASHION_MNIST
from PIL import Image

from kdrepro.data import DatasetError
from kdrepro.data.device import DeviceData, random_crop_flip, stratified
from kdrepro.data.sources import (
    DATASETS,
    DatasetInfo,
    Split,
    load_dataset,
    register_dataset,
)


def write_idx(path, array):
    dims = np.array(array.shape, ">u4").tobytes()
    magic = np.array([0x0800 + array.ndim], ">u4").tobytes()
    path.write_bytes(gzip.compress(magic + dims + array.astype(np.uint8).tobytes()))


@pytest.fixture
def fake_fashion(tmp_path):
    rng = np.random.default_rng(0)
    for prefix, n in (("train", 40), ("t10k", 20)):
        write_idx(tmp_path / f"{prefix}-images-idx3-ubyte.gz", rng.integers(0, 256, (n, 28, 28)))
        write_idx(tmp_path / f"{prefix}-labels-idx1-ubyte.gz", np.arange(n) % 10)
    return tmp_path


def test_idx_reader(fake_fashion):
    train, test, info = load_dataset("fashion_mnist", fake_fashion, verify=False)
    assert train.images.shape == (40, 1, 28, 28) and train.images.dtype == torch.uint8
    assert test.labels.tolist() == [i % 10 for i in range(20)] and test.labels.dtype == torch.int64
    assert (info.num_classes, info.channels, info.size) == (10, 1, 28)


def test_checksums_are_verified(fake_fashion):
    with pytest.raises(DatasetError, match="checksum mismatch.*train-images"):
        load_dataset("fashion_mnist", fake_fashion)


def test_mnist_in_torchvisions_layout_plain_or_gzipped(tmp_path):
    raw = tmp_path / "MNIST" / "raw"
    raw.mkdir(parents=True)
    for prefix, n in (("train", 30), ("t10k", 10)):
        write_idx(raw / f"{prefix}-images-idx3-ubyte.gz", np.full((n, 28, 28), 7))
        (raw / f"{prefix}-labels-idx1-ubyte").write_bytes(  # plain, as torchvision leaves it after extracting
            np.array([2049, n], ">u4").tobytes() + (np.arange(n) % 10).astype(np.uint8).tobytes())
    train, test, info = load_dataset("mnist", tmp_path, verify=False)
    assert train.images.shape == (30, 1, 28, 28) and train.images.eq(7).all()
    assert test.labels.tolist() == list(range(10))
    assert info.mean == (0.1307,) and info.std == (0.3081,)


def test_truncated_idx_is_reported(fake_fashion):
    path = fake_fashion / "t10k-labels-idx1-ubyte.gz"
    path.write_bytes(gzip.compress(gzip.decompress(path.read_bytes())[:-1]))
    with pytest.raises(DatasetError, match="truncated"):
        load_dataset("fashion_mnist", fake_fashion, verify=False)


def test_registered_loaders_are_found(tmp_path):
    @register_dataset("tiny")
    def tiny(root, download, verify):
        split = Split(torch.zeros(2, 1, 4, 4, dtype=torch.uint8), torch.tensor([0, 1]))
        return split, split, DatasetInfo("tiny", 2, 1, 4, (0.0,), (1.0,))

    try:
        assert load_dataset("tiny", tmp_path)[2].name == "tiny"
    finally:
        del DATASETS["tiny"]


def test_a_verified_load_is_cached_by_the_files_content_and_memory_mapped(tmp_path, monkeypatch):
    """The loader runs once per content: again on the same files, or on a copy of them elsewhere, the tensors
    come from the cache; a changed file is read (and verified) again; unverified loads and cache=False
    (`kdrepro verify`) always read the files."""
    from kdrepro.data import sources

    monkeypatch.setattr(sources, "TENSORS", tmp_path / "cache")
    calls = []

    @register_dataset("tiny")
    def tiny(root, download, verify):
        calls.append(root)
        value = (root / "images.bin").read_bytes()[0]
        split = Split(torch.full((2, 1, 4, 4), value, dtype=torch.uint8), torch.tensor([0, 1]))
        return split, split, DatasetInfo("tiny", 2, 1, 4, (0.5,), (1.0,))

    try:
        (tmp_path / "a").mkdir()
        (tmp_path / "a" / "images.bin").write_bytes(bytes([7]))
        first = load_dataset("tiny", tmp_path / "a")
        again = load_dataset("tiny", tmp_path / "a")
        assert len(calls) == 1 and torch.equal(again[0].images, first[0].images) and again[2] == first[2]
        shutil.copytree(tmp_path / "a", tmp_path / "b")
        assert load_dataset("tiny", tmp_path / "b")[0].images[0, 0, 0, 0] == 7 and len(calls) == 1
        assert len(list((tmp_path / "cache").glob("tiny-*.pt"))) == 1
        (tmp_path / "b" / "images.bin").write_bytes(bytes([9]))
        assert load_dataset("tiny", tmp_path / "b")[0].images[0, 0, 0, 0] == 9 and len(calls) == 2
        load_dataset("tiny", tmp_path / "a", verify=False)
        load_dataset("tiny", tmp_path / "a", cache=False)
        assert len(calls) == 4
    finally:
        del DATASETS["tiny"]


@pytest.mark.skipif(importlib.util.find_spec("scipy") is not None, reason="scipy is installed")
def test_svhn_without_scipy_says_what_to_install(tmp_path):
    with pytest.raises(DatasetError, match="pip install scipy"):
        load_dataset("svhn", tmp_path)


def test_missing_files_say_how_to_get_them(tmp_path):
    with pytest.raises(DatasetError, match="apt install dataset-fashion-mnist"):
        load_dataset("fashion_mnist", tmp_path)
    with pytest.raises(DatasetError, match="known datasets: .*cifar10"):
        load_dataset("imagenet")
    with pytest.raises(DatasetError, match="cifar-10-batches-py.*data.download: true"):
        load_dataset("cifar10", tmp_path)


@pytest.mark.parametrize("name,folder,files,key,classes", [
    ("cifar10", "cifar-10-batches-py", [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"], b"labels", 10),
    ("cifar100", "cifar-100-python", ["train", "test"], b"fine_labels", 100),
])
def test_cifar_pickles(tmp_path, name, folder, files, key, classes):
    (tmp_path / folder).mkdir()
    for i, file in enumerate(files):
        data = np.full((4, 3072), i, np.uint8)
        data[:, 1024:] = 200  # green and blue planes: checks the channel-major layout
        (tmp_path / folder / file).write_bytes(pickle.dumps({b"data": data, key: [classes - 1, 0, 1, 2]}))
    train, test, info = load_dataset(name, tmp_path, verify=False)
    assert train.images.shape == (4 * (len(files) - 1), 3, 32, 32) and test.images.shape == (4, 3, 32, 32)
    assert train.images[0, 0].unique().tolist() == [0] and train.images[0, 1:].unique().tolist() == [200]
    assert train.labels[:4].tolist() == [classes - 1, 0, 1, 2] and info.num_classes == classes
    with pytest.raises(DatasetError, match="checksum"):
        load_dataset(name, tmp_path)


def test_image_folder(tmp_path):
    for split in ("train", "test"):
        for label, cls in enumerate(("cat", "dog")):
            (tmp_path / split / cls).mkdir(parents=True)
            for i in range(3):
                Image.fromarray(np.full((8, 8, 3), 40 * label + i, np.uint8)).save(tmp_path / split / cls / f"{i}.png")
    train, test, info = load_dataset("image_folder", tmp_path)
    assert train.images.shape == (6, 3, 8, 8) and train.labels.tolist() == [0, 0, 0, 1, 1, 1]
    assert info.num_classes == 2 and info.mean[0] == pytest.approx(train.images.float().mean().item() / 255, rel=1e-5)
    Image.fromarray(np.zeros((9, 9, 3), np.uint8)).save(tmp_path / "train/cat/odd.png")
    with pytest.raises(DatasetError, match="odd.png"):
        load_dataset("image_folder", tmp_path)


@pytest.mark.skipif(not FASHION_MNIST.is_dir(), reason="Debian's dataset-fashion-mnist is not installed")
def test_real_fashion_mnist_passes_its_checksums():
    train, test, info = load_dataset("fashion_mnist")
    assert train.images.shape == (60000, 1, 28, 28) and test.images.shape == (10000, 1, 28, 28)
    assert train.labels.bincount().tolist() == [6000] * 10 and (info.num_classes, info.size) == (10, 28)


def toy(n_train=100, n_test=50, classes=5, size=28):
    g = torch.Generator().manual_seed(1)
    make = lambda n: Split(torch.randint(0, 256, (n, 1, size, size), generator=g, dtype=torch.uint8),  # noqa: E731
                           torch.arange(n) % classes)
    return make(n_train), make(n_test), DatasetInfo("toy", classes, 1, size, (0.5,), (0.25,))


def test_subsets_are_stratified_fixed_and_validation_is_disjoint():
    a = DeviceData(*toy(), train_subset=60, test_subset=20, validation=10)
    b = DeviceData(*toy(), train_subset=60, test_subset=20, validation=10)
    assert (a.n_train, a.n_val, a.n_test) == (50, 10, 20)
    assert a.splits["train"][1].bincount().tolist() == [10] * 5 and a.splits["val"][1].bincount().tolist() == [2] * 5
    assert all(torch.equal(a.splits[s][0], b.splits[s][0]) for s in a.splits)
    train_rows = {tuple(x.flatten().tolist()) for x in a.splits["train"][0]}
    assert not train_rows & {tuple(x.flatten().tolist()) for x in a.splits["val"][0]}


def test_stratified_shares_equally_and_exhausts_small_classes():
    labels = torch.tensor([0] * 2 + [1] * 10 + [2] * 10)
    assert labels[stratified(labels, 12, "x")].bincount().tolist() == [2, 5, 5]
    assert labels[stratified(labels, 7, "x")].bincount().tolist() == [2, 3, 2]  # remainder to the lowest label
    assert torch.equal(stratified(labels, 12, "x"), stratified(labels, 12, "x"))


def test_test_subset_does_not_depend_on_the_train_subset():
    a, b = DeviceData(*toy(), train_subset=50, test_subset=20), DeviceData(*toy(), train_subset=80, test_subset=20)
    assert torch.equal(a.splits["test"][0], b.splits["test"][0])


def test_padding_and_normalisation():
    train, test, info = toy()
    data = DeviceData(train, test, info, pad_to=32)
    images = data.splits["train"][0]
    assert data.image_size == 32 and torch.equal(images[:, :, 2:30, 2:30], train.images)
    assert images[:, :, :2].eq(0).all() and images[:, :, :, 30:].eq(0).all()
    x, _ = next(data.eval_batches("train"))
    assert torch.allclose(x, (images.float() / 255 - 0.5) / 0.25, atol=1e-6)
    half, _ = next(DeviceData(train, test, info, normalization="half").eval_batches("test"))
    assert torch.allclose(half, (test.images.float() / 255 - 0.5) / 0.5, atol=1e-6)
    plain, labels = next(DeviceData(train, test, info, normalization="none").eval_batches("train"))
    assert torch.allclose(plain, train.images.float() / 255) and torch.equal(labels, train.labels)


def test_an_epoch_covers_every_image_once_and_repeats_with_the_seed():
    data = DeviceData(*toy(), crop_padding=2, flip=True)
    epoch = lambda: list(data.train_batches(32, torch.Generator().manual_seed(3)))  # noqa: E731
    first, again = epoch(), epoch()
    assert [len(b[1]) for b in first] == [32, 32, 32, 4]
    assert sorted(torch.cat([b[2] for b in first]).tolist()) == list(range(100))
    assert all(torch.equal(x[0], y[0]) for x, y in zip(first, again))
    other = list(data.train_batches(32, torch.Generator().manual_seed(4)))
    assert not torch.equal(first[0][0], other[0][0])
    assert torch.equal(first[0][1], data.splits["train"][1][first[0][2]])


def test_random_crop_flip_equals_the_per_sample_crop():
    g = torch.Generator().manual_seed(0)
    x = torch.randint(0, 256, (6, 3, 8, 8), generator=g, dtype=torch.uint8)
    oy, ox = torch.randint(0, 9, (2, 6), generator=g)
    flip = torch.tensor([True, False, True, False, False, True])
    out = random_crop_flip(x, oy, ox, flip, 4)
    for i in range(6):
        crop = torch.nn.functional.pad(x[i], (4,) * 4)[:, oy[i]:oy[i] + 8, ox[i]:ox[i] + 8]
        assert torch.equal(out[i], crop.flip(-1) if flip[i] else crop)


def test_bad_options_are_rejected():
    with pytest.raises(DatasetError, match="only 100 are available"):
        DeviceData(*toy(), train_subset=101)
    with pytest.raises(DatasetError, match="normalization"):
        DeviceData(*toy(), normalization="imagenet")
    with pytest.raises(DatasetError, match="pad_to"):
        DeviceData(*toy(), pad_to=16)
    data = DeviceData(*toy())
    with pytest.raises(DatasetError, match="validation"):
        next(data.eval_batches("val"))
    with pytest.raises(DatasetError, match="split must be"):
        next(data.eval_batches("dev"))
