"""Dataset readers: each returns the whole train and test split as uint8 tensors (N, C, H, W).

Files are read in their published on-disk formats (idx, the CIFAR pickles, SVHN's .mat, the setting's
image folders: kdrepro.data.folders) and checksum-verified; torchvision downloads only when the setting
allows it.

A verified load is kept as one tensor file per machine (TENSORS), keyed by the sha256 of the source
files and of this module: later loads memory-map it instead of reading, verifying and decoding the
files again. A source file is hashed once per (path, size, modification time) (kdrepro.data.files: its
stamp files map that to the contents digest, and to the content key), so an unchanged folder costs a few
stat calls, a copy of the same files (another root) reuses the tensors, and a changed file is read,
verified and cached afresh.
"""

from __future__ import annotations

import gzip
import hashlib
import pickle
import zlib
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from kdrepro.data.files import contents_digest, remember, source_files, stamp_key
from kdrepro.data.folders import LEGACY, exported_root, root_key
from kdrepro.data.folders import fingerprint as folder_fingerprint
from kdrepro.data.meta import DatasetError, class_names, default_root, folder_problem, greyscale, listing
from kdrepro.io import WriteError, atomic_write
from kdrepro.paths import USER_CACHE

TENSORS = USER_CACHE / "tensors"  # verified datasets as tensor files (see the module's docstring)


@dataclass(frozen=True)
class Split:
    images: torch.Tensor  # uint8, N x C x H x W
    labels: torch.Tensor  # int64, N


@dataclass(frozen=True)
class DatasetInfo:
    name: str
    num_classes: int
    channels: int
    size: int
    mean: tuple[float, ...]
    std: tuple[float, ...]


Loaded = tuple[Split, Split, DatasetInfo]  # train, test, info
Loader = Callable[[Path, bool, bool], Loaded]
DATASETS: dict[str, Loader] = {}


def register_dataset(name: str) -> Callable[[Loader], Loader]:
    """Decorator: `loader(root, download, verify) -> (train, test, info)`."""

    def add(loader: Loader) -> Loader:
        DATASETS[name] = loader
        return loader

    return add


def load_dataset(name: str, root: str | Path | None = None, download: bool = False,
                 verify: bool = True, cache: bool = True) -> Loaded:
    """The dataset's splits; verified loads come from the machine's tensor cache (cache=False reads and
    verifies the files themselves: `kdrepro verify`)."""
    if name not in DATASETS:
        raise DatasetError(f"unknown dataset {name!r}; known datasets: {', '.join(sorted(DATASETS))}")
    root = Path(root) if root else default_root(name)
    if not (cache and verify):
        return DATASETS[name](root, download, verify)
    return cached_load(name, root, lambda: DATASETS[name](root, download, verify))


def content_key(name: str, root: Path, files: list[Path]) -> str:
    """The tensor file's key: the dataset, this module (how the files are read) and the files' contents digest."""
    digest = hashlib.sha256(name.encode() + b"\0" + Path(__file__).read_bytes())
    digest.update(contents_digest(root, files, TENSORS / "stamps").encode())
    return digest.hexdigest()[:32]


def cached_load(name: str, root: Path, load: Callable[[], Loaded]) -> Loaded:
    files = source_files(root)
    if files:
        stamp = TENSORS / "stamps" / f"{stamp_key(name, files)}.txt"
        key = stamp.read_text() if stamp.exists() else content_key(name, root, files)
        path = TENSORS / f"{name}-{key}.pt"
        if path.exists():
            if not stamp.exists():
                remember(key, stamp)
            saved = torch.load(path, mmap=True, weights_only=True)
            return (Split(saved["train_images"], saved["train_labels"]), Split(saved["test_images"], saved["test_labels"]),
                    DatasetInfo(**{k: tuple(v) if isinstance(v, list) else v for k, v in saved["info"].items()}))
    train, test, info = load()
    files = source_files(root)  # what a download brought
    if files:
        key = content_key(name, root, files)
        tensors = {"train_images": train.images, "train_labels": train.labels, "test_images": test.images,
                   "test_labels": test.labels, "info": asdict(info)}
        try:
            atomic_write(TENSORS / f"{name}-{key}.pt", lambda handle: torch.save(tensors, handle))
        except WriteError:  # a read-only cache: every load reads the files, as without one
            return train, test, info
        remember(key, TENSORS / "stamps" / f"{stamp_key(name, files)}.txt")
    return train, test, info


def md5(data: bytes) -> str:
    return hashlib.md5(data).hexdigest()


def check_md5(path: Path, accepted: set[str], *contents: bytes) -> None:
    """Pass when the md5 of one of `contents` (default: the file as stored) is one of `accepted`."""
    found = {md5(c) for c in contents or (path.read_bytes(),)}
    if not found & accepted:
        raise DatasetError(f"checksum mismatch for {path}: expected one of {sorted(accepted)}, found {sorted(found)}; "
                           "the file is corrupt or not the published one (delete it and fetch it again)")


def gunzip(path: Path, raw: bytes, accepted: set[str] | None) -> bytes:
    """The payload of a .gz file (a plain file is its own payload). A stream that fails gzip's CRC or
    length check, or ends early, is damage: with `accepted` md5s it is reported as the checksum mismatch
    it is, so that every kind of damage reads the same."""
    if path.suffix != ".gz":
        return raw
    try:
        return gzip.decompress(raw)
    except (OSError, EOFError, zlib.error) as err:  # gzip.BadGzipFile is an OSError
        if accepted is not None:
            check_md5(path, accepted, raw)
        raise DatasetError(f"{path} is damaged ({err}); delete it and fetch it again") from None


def find_file(root: Path, names: list[str], subdirs: list[str]) -> Path | None:
    """The first of `names` under root or one of its `subdirs` (torchvision's download layouts)."""
    return next((root / sub / name for sub in ["", *subdirs] for name in names if (root / sub / name).exists()), None)


def fetch_with_torchvision(dataset_class: str, root: Path, **kwargs) -> None:
    import torchvision.datasets

    root.mkdir(parents=True, exist_ok=True)
    getattr(torchvision.datasets, dataset_class)(str(root), download=True, **kwargs)


# ---- idx: MNIST and Fashion-MNIST --------------------------------------------------------------
# file stem -> accepted md5s: torchvision's .gz files; for Fashion-MNIST also Debian's .gz files (the package
# re-gzips them) and the decompressed payloads (a copy re-gzipped elsewhere). MNIST's payload md5s are not
# published, so its plain files need verify=False.
IDX = {
    "fashion_mnist": {
        "train-images-idx3-ubyte": {"8d4fb7e6c68d591d4c3dfef9ec88bf0d", "cf8536b0aa1a6ac5fa3f23001093305c",
                                    "f4a8712d7a061bf5bd6d2ca38dc4d50a"},
        "train-labels-idx1-ubyte": {"25c81989df183df01b3e8a0aad5dffbe", "10bea18fdb374794d4bb42e356e600c9",
                                    "9018921c3c673c538a1fc5bad174d6f9"},
        "t10k-images-idx3-ubyte": {"bef4ecab320f06d8554ea6380940ec79", "f78720b4224f21cce2f2ccf2d7a94c9a",
                                   "8181f5470baa50b63fa0f6fddb340f0a"},
        "t10k-labels-idx1-ubyte": {"bb300cfdad3c16e7a12a480ee83cd310", "0d30e22e447f3c33dab9ed536400ac01",
                                   "15d484375f8d13e6eb1aabb0c3f46965"},
    },
    "mnist": {
        "train-images-idx3-ubyte": {"f68b3c2dcbeaaa9fbdd348bbdeb94873"},
        "train-labels-idx1-ubyte": {"d53e105ee54ea40749a09fcbcd1e9432"},
        "t10k-images-idx3-ubyte": {"9fb629c4189551a2d022fa330f9573f3"},
        "t10k-labels-idx1-ubyte": {"ec29112dd5afa0611ce80d1b7f02629c"},
    },
}


def read_idx(path: Path, accepted: set[str] | None) -> np.ndarray:
    """An idx file (gzipped or plain): big-endian magic 0x0000 08 <ndim>, ndim sizes, then the bytes.
    With `accepted` md5s the file is verified as stored before it is decompressed; one that is not a
    published file as stored passes only if it decompresses to a published payload."""
    raw = path.read_bytes()
    as_published = accepted is None or md5(raw) in accepted  # checked as stored, before anything is decompressed
    payload = gunzip(path, raw, None if as_published else accepted)
    if not as_published:  # a copy gzipped elsewhere passes on its payload
        check_md5(path, accepted, payload)
    magic, = np.frombuffer(payload[:4], ">u4")
    ndim = magic & 0xFF
    if magic >> 8 != 0x08:  # 0x08 = unsigned byte data
        raise DatasetError(f"{path} is not an idx file of unsigned bytes (magic {magic:#x})")
    shape = np.frombuffer(payload[4:4 + 4 * ndim], ">u4").astype(int)
    if len(payload) != 4 + 4 * ndim + shape.prod():
        raise DatasetError(f"{path} is truncated: its header announces shape {tuple(shape)}")
    return np.frombuffer(payload, np.uint8, offset=4 + 4 * ndim).reshape(shape)


def idx_dataset(name: str, torchvision_class: str, mean: float, std: float) -> Loader:
    subdirs = [f"{torchvision_class}/raw"]
    how = f"set data.roots.{name} to the folder holding them, or data.download: true"
    if name == "fashion_mnist":
        how = f"install Debian's package (`apt install dataset-fashion-mnist`), {how}"

    def load(root: Path, download: bool, verify: bool) -> Loaded:
        def locate() -> dict[str, Path | None]:
            return {stem: find_file(root, [stem + ".gz", stem], subdirs) for stem in IDX[name]}

        paths = locate()
        if download and None in paths.values():
            fetch_with_torchvision(torchvision_class, root)
            paths = locate()
        missing = [stem for stem, path in paths.items() if path is None]
        if missing:
            raise DatasetError(f"{name}: {', '.join(missing)} (.gz or plain) not found in {root} "
                               f"or {root / subdirs[0]}; {how}")
        arrays = {stem: read_idx(path, IDX[name][stem] if verify else None) for stem, path in paths.items()}
        train, test = (Split(torch.from_numpy(arrays[f"{p}-images-idx3-ubyte"].copy()).unsqueeze(1),
                             torch.from_numpy(arrays[f"{p}-labels-idx1-ubyte"].astype(np.int64)))
                       for p in ("train", "t10k"))
        return train, test, DatasetInfo(name, 10, 1, train.images.shape[-1], (mean,), (std,))

    return load


register_dataset("fashion_mnist")(idx_dataset("fashion_mnist", "FashionMNIST", 0.2860, 0.3530))
register_dataset("mnist")(idx_dataset("mnist", "MNIST", 0.1307, 0.3081))


# ---- CIFAR-10 / CIFAR-100: python pickles --------------------------------------------------------
def cifar_dataset(name: str, torchvision_class: str, folder: str, label_key: bytes, num_classes: int,
                  mean: tuple[float, ...], std: tuple[float, ...]) -> Loader:
    def load(root: Path, download: bool, verify: bool) -> Loaded:
        import torchvision.datasets

        cls = getattr(torchvision.datasets, torchvision_class)
        if download and not (root / folder).is_dir():
            fetch_with_torchvision(torchvision_class, root)

        def read(files: list[list[str]]) -> Split:
            images, labels = [], []
            for file, checksum in files:
                path = root / folder / file
                if not path.exists():
                    raise DatasetError(f"{name}: {path} is missing; set data.roots.{name} to the folder that holds "
                                       f"{folder}/, or data.download: true")
                if verify:
                    check_md5(path, {checksum})
                batch = pickle.loads(path.read_bytes(), encoding="bytes")
                images.append(np.asarray(batch[b"data"], np.uint8).reshape(-1, 3, 32, 32))
                labels += batch[label_key]
            return Split(torch.from_numpy(np.concatenate(images)), torch.tensor(labels, dtype=torch.int64))

        return read(cls.train_list), read(cls.test_list), DatasetInfo(name, num_classes, 3, 32, mean, std)

    return load


register_dataset("cifar10")(cifar_dataset("cifar10", "CIFAR10", "cifar-10-batches-py", b"labels", 10,
                                          (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)))
register_dataset("cifar100")(cifar_dataset("cifar100", "CIFAR100", "cifar-100-python", b"fine_labels", 100,
                                           (0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762)))


# ---- SVHN: MATLAB files ----------------------------------------------------------------------------
@register_dataset("svhn")
def load_svhn(root: Path, download: bool, verify: bool) -> Loaded:
    import torchvision.datasets

    try:
        from scipy.io import loadmat
    except ImportError:
        raise DatasetError("svhn: reading its .mat files needs scipy (`pip install scipy`)") from None

    def read(split: str) -> Split:
        url, file, checksum = torchvision.datasets.SVHN.split_list[split]
        path = root / file
        if not path.exists() and download:
            fetch_with_torchvision("SVHN", root, split=split)
        if not path.exists():
            raise DatasetError(f"svhn: {path} is missing; set data.roots.svhn or data.download: true")
        if verify:
            check_md5(path, {checksum})
        mat = loadmat(path)
        labels = torch.from_numpy(mat["y"].astype(np.int64).squeeze(1) % 10)  # the digit 0 is stored as 10
        return Split(torch.from_numpy(np.ascontiguousarray(mat["X"].transpose(3, 2, 0, 1))), labels)

    info = DatasetInfo("svhn", 10, 3, 32, (0.4377, 0.4438, 0.4728), (0.1980, 0.2010, 0.1970))
    return read("train"), read("test"), info


# ---- a user's own images -----------------------------------------------------------------------
def read_image_folder(name: str, root: Path, channels: int | None) -> Loaded:
    """root/train/<class>/<image> and root/test/<class>/<image> (torchvision's ImageFolder layout; what
    kdrepro.data.folders lists), as `channels` (1: greyscale, 3: RGB, None: as the images are, which must
    then agree)."""
    from PIL import Image

    problem = folder_problem(root)
    if problem is not None:
        raise DatasetError(f"image folder {name!r}: {problem}; set {root_key(name)}")
    files = listing(root)
    with Image.open(files["train"][0][1]) as first:
        first_grey = greyscale(first)
    mode = {1: "L", 3: "RGB"}.get(channels) or ("L" if first_grey else "RGB")

    def read(split: str) -> Split:
        images, labels, shape = [], [], None
        for label, path in files[split]:
            with Image.open(path) as image:
                if channels is None and greyscale(image) != first_grey:
                    raise DatasetError(f"image folder {name!r}: {path} is {'greyscale' if not first_grey else 'colour'}, "
                                       f"but {files['train'][0][1]} is not; set image_folders.{name}.channels to 1 or 3")
                array = np.asarray(image.convert(mode))
            if array.ndim == 2:
                array = array[:, :, None]
            if shape is None:
                shape = array.shape
            if array.shape != shape:
                raise DatasetError(f"image folder {name!r}: {path} is {array.shape[:2]}, others are {shape[:2]}; "
                                   "resize them to one size")
            images.append(array)
            labels.append(label)
        return Split(torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2).contiguous(), torch.tensor(labels))

    train, test = read("train"), read("test")
    pixels = train.images.float().div(255)
    mean = tuple(pixels.mean((0, 2, 3)).tolist())
    std = tuple(pixels.std((0, 2, 3)).tolist())
    return train, test, DatasetInfo(name, len(class_names(root)), train.images.shape[1], train.images.shape[-1], mean, std)


@register_dataset(LEGACY)
def load_image_folder(root: Path, download: bool, verify: bool) -> Loaded:
    """The image folder at `root`, read as RGB (`image_folder` of older settings)."""
    return read_image_folder(LEGACY, root, 3)


def load_folder(name: str, channels: int | None, fingerprint: str | None = None, root: str | Path | None = None,
                cache: bool = True) -> Loaded:
    """The setting's image folder `name` (its root: `root`, else the one this process was given, ROOTS_ENV), as
    `channels`. With the run's `fingerprint`, the folder must still hold what the run was planned on."""
    root = Path(root) if root else exported_root(name)
    if fingerprint is not None and folder_problem(root) is None:
        found = folder_fingerprint(root)
        if found != fingerprint:
            raise DatasetError(f"image folder {name!r}: {root} holds other images than this run was planned on (fingerprint "
                               f"{found}, the run's {fingerprint}): it changed after the workflow read it; run the workflow "
                               "again, which plans (and trains) the runs on the images as they are now")
    if not cache:
        return read_image_folder(name, root, channels)
    return cached_load(f"{name}.{channels or 'native'}", root, lambda: read_image_folder(name, root, channels))
