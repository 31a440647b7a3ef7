"""What each dataset is, known without loading it: classes, channels, native image side, split sizes.

Settings and run specs are checked against these before any job starts (subsets, the validation
split, pad_to, sampler counts); a test compares them with what the loaders return.
"""

from __future__ import annotations

import functools
import math
import os
from dataclasses import dataclass
from pathlib import Path

from PIL import Image

from kdrepro.paths import USER_CACHE

DEBIAN_FASHION_MNIST = Path("/usr/share/datasets/fashion-mnist")
SPLITS = ("train", "test")  # an image folder's


class DatasetError(ValueError):
    """A dataset cannot be loaded as configured; the message says what to do."""


def default_root(name: str) -> Path:
    if name == "fashion_mnist" and DEBIAN_FASHION_MNIST.is_dir():
        return DEBIAN_FASHION_MNIST
    return USER_CACHE / name


@dataclass(frozen=True)
class DatasetMeta:
    name: str
    num_classes: int
    channels: int  # as the loader returns them (an image folder: its setting's channels, else as the images are)
    size: int  # native image side (images are square)
    train: int  # images in the training split
    test: int


PUBLISHED = {
    meta.name: meta
    for meta in (
        DatasetMeta("fashion_mnist", 10, 1, 28, 60_000, 10_000),
        DatasetMeta("mnist", 10, 1, 28, 60_000, 10_000),
        DatasetMeta("cifar10", 10, 3, 32, 50_000, 10_000),
        DatasetMeta("cifar100", 100, 3, 32, 50_000, 10_000),
        DatasetMeta("svhn", 10, 3, 32, 73_257, 26_032),
    )
}


# An accuracy within CHANCE_STANDARD_ERRORS binomial standard errors of chance is indistinguishable from
# guessing (a test set of n images measures chance, 100/K %, to within 100 * sqrt(p (1 - p) / n), p = 1/K).
CHANCE_STANDARD_ERRORS = 3.0


def chance_level(num_classes: int, n_test: int) -> tuple[float, float]:
    """Chance accuracy (%) and the margin above it within which an accuracy on n_test images is guessing."""
    p = 1 / num_classes
    return 100 * p, CHANCE_STANDARD_ERRORS * 100 * math.sqrt(p * (1 - p) / n_test)


def dataset_meta(name: str, root: str | Path | None = None) -> DatasetMeta | None:
    """The dataset's sizes; None where they are not known before loading (a dataset registered by
    a user, an image folder that is not there: its loader then says what is missing). The setting's
    named image folders are kdrepro.data.folders' (setting_meta); `image_folder` here is the folder
    at `root` read as RGB, as older settings have it."""
    if name == "image_folder":
        return folder_meta(Path(root) if root else default_root(name), name, 3)
    return PUBLISHED.get(name)


# ---- an image folder (kdrepro.data.folders: the setting's): root/{train,test}/<class>/<image> -----
def class_names(root: Path) -> list[str]:
    return sorted(p.name for p in (root / "train").iterdir() if p.is_dir() and not p.name.startswith("."))


def listing(root: Path) -> dict[str, list[tuple[int, Path]]]:
    """split -> (label, path) of each image, classes in name order, files in name order (what the loader reads)."""
    classes = class_names(root)

    def images(folder: Path) -> list[Path]:
        if not folder.is_dir():
            return []
        with os.scandir(folder) as entries:  # one call per folder (a large folder's glob costs seconds)
            names = sorted(e.name for e in entries if not e.name.startswith(".") and e.is_file())
        return [folder / name for name in names]

    return {split: [(label, path) for label, cls in enumerate(classes) for path in images(root / split / cls)]
            for split in SPLITS}


def folder_problem(root: Path) -> str | None:
    """What keeps `root` from being an image folder (None: nothing)."""
    if not root.exists():
        return f"{root} does not exist (expected a folder holding train/<class>/<image> and test/<class>/<image>)"
    if not root.is_dir():
        return f"{root} is not a folder (expected one holding train/<class>/<image> and test/<class>/<image>)"
    missing = [split for split in SPLITS if not (root / split).is_dir()]
    if missing:
        return f"{root} has no {' and no '.join(f'{s}/' for s in missing)} folder (expected {root}/train/<class>/<image> " \
               f"and {root}/test/<class>/<image>)"
    if not class_names(root):
        return f"{root / 'train'} holds no class folders (expected {root}/train/<class>/<image>)"
    files = listing(root)
    empty = [split for split in SPLITS if not files[split]]
    if empty:
        return f"no images under {' or '.join(str(root / s) for s in empty)}"
    return None


def greyscale(image: Image.Image) -> bool:
    """An image of one grey band (its alpha aside): L, LA, 1, I, F."""
    return set(image.getbands()) - {"A"} <= {"L", "1", "I", "F"}


@functools.lru_cache(maxsize=None)
def folder_meta(root: Path, name: str, channels: int | None, version: str = "") -> DatasetMeta | None:
    """Classes, channels, image side and split sizes from the listing (what the loader reads); the side, and
    the channels of a folder read as it is, from the first training image's header (nothing is decoded).
    None where `root` is no image folder. `version` (the fingerprint, where known) keys the cache."""
    if folder_problem(root) is not None:
        return None
    files = listing(root)
    with Image.open(files["train"][0][1]) as first:
        width, grey = first.size[0], greyscale(first)
    return DatasetMeta(name, len(class_names(root)), channels or (1 if grey else 3), width,
                       len(files["train"]), len(files["test"]))


def split_problems(meta: DatasetMeta, *, train_subset: int | None = None, test_subset: int | None = None,
                   validation: int = 0, pad_to: int | None = None) -> dict[str, str]:
    """What is wrong with taking these splits of the dataset, by the key that asks for it (empty: nothing)."""
    problems = {}
    if train_subset is not None and train_subset > meta.train:
        problems["train_subset"] = f"{train_subset} images asked for, but {meta.name} has {meta.train} training images"
    if test_subset is not None and test_subset > meta.test:
        problems["test_subset"] = f"{test_subset} images asked for, but {meta.name} has {meta.test} test images"
    training = min(train_subset or meta.train, meta.train)
    if validation >= training:
        of = f"train_subset {train_subset}" if train_subset else f"all of {meta.name}"
        problems["validation"] = f"{validation} validation images leave none of the {training} training images ({of}) to train on"
    if pad_to is not None and pad_to < meta.size:
        problems["pad_to"] = f"{pad_to} is smaller than the {meta.size}x{meta.size} images of {meta.name}"
    return problems
