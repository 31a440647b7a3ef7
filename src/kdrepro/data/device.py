"""The whole dataset as uint8 tensors on the training device; batches are cut, augmented and
normalised there (airbench's pattern), deterministically from a CPU generator."""

from __future__ import annotations

import math
from typing import Iterator

import torch
import torch.nn.functional as F

from kdrepro.data.meta import DatasetError
from kdrepro.data.sources import DatasetInfo, Split

NORMALIZATIONS = ("dataset", "half", "none")
SUBSET_SEED = 0  # subsets and the validation split are fixed per setting, not per run seed


def stratified(labels: torch.Tensor, n: int | None, what: str) -> torch.Tensor:
    """Sorted indices of exactly n samples, shared as equally over the classes as their sizes allow
    (lowest labels take the remainder); drawn from a generator seeded SUBSET_SEED, so a setting
    always sees the same images whatever the run seed."""
    if n is None:
        return torch.arange(len(labels))
    if n > len(labels):
        raise DatasetError(f"{what} of {n} images asked for, but only {len(labels)} are available")
    order = torch.randperm(len(labels), generator=torch.Generator().manual_seed(SUBSET_SEED))
    _, klass, counts = labels[order].unique(return_inverse=True, return_counts=True)
    grouped = klass.argsort(stable=True)  # grouped by class, shuffled order kept within a class
    rank = torch.empty_like(klass)
    rank[grouped] = torch.arange(len(klass)) - (counts.cumsum(0) - counts)[klass[grouped]]
    # round robin: every class's first draw, then every class's second, ... (a small class just runs out)
    take = (rank * len(counts) + klass).argsort()[:n]
    return order[take].sort().values


def random_crop_flip(x: torch.Tensor, offsets_y: torch.Tensor, offsets_x: torch.Tensor, flip: torch.Tensor,
                     padding: int) -> torch.Tensor:
    """Zero-pad by `padding`, crop back to H x W at per-sample offsets in [0, 2*padding], mirror where
    `flip`; one gather for the whole batch."""
    n, c, h, w = x.shape
    padded = F.pad(x, (padding,) * 4)
    rows = offsets_y[:, None] + torch.arange(h, device=x.device)
    cols = offsets_x[:, None] + torch.arange(w, device=x.device)
    cols = torch.where(flip[:, None], cols.flip(1), cols)
    batch = torch.arange(n, device=x.device)[:, None, None, None]
    channel = torch.arange(c, device=x.device)[None, :, None, None]
    return padded[batch, channel, rows[:, None, :, None], cols[:, None, None, :]]


def random_rotation(x: torch.Tensor, degrees: torch.Tensor) -> torch.Tensor:
    """Rotate each image about its centre by its angle, nearest-neighbour, zeros outside (torchvision's
    RandomRotation defaults); the angles are uniform in +-d, so the sense of rotation does not matter."""
    theta = degrees * (math.pi / 180)
    cos, sin, zero = theta.cos(), theta.sin(), torch.zeros_like(theta)
    matrix = torch.stack([torch.stack([cos, -sin, zero], 1), torch.stack([sin, cos, zero], 1)], 1)
    grid = F.affine_grid(matrix, list(x.shape), align_corners=False)
    return F.grid_sample(x.float(), grid, mode="nearest", padding_mode="zeros", align_corners=False)


class DeviceData:
    """Train, validation and test split as uint8 tensors on `device`, moved there once; every batch is
    cast to float32 and normalised there: "dataset" (x/255 - mean)/std, "half" (x/255 - 0.5)/0.5
    (TAKD), "none" x/255. Images smaller than `pad_to` are zero-padded to it once, here."""

    def __init__(self, train: Split, test: Split, info: DatasetInfo, *, device: str | torch.device = "cpu",
                 normalization: str = "dataset", pad_to: int | None = None, crop_padding: int = 0, flip: bool = False,
                 rotation: float = 0.0,
                 train_subset: int | None = None, test_subset: int | None = None, validation: int = 0):
        if normalization not in NORMALIZATIONS:
            raise DatasetError(f"normalization must be one of {NORMALIZATIONS}, got {normalization!r}")
        if pad_to is not None and pad_to < info.size:
            raise DatasetError(f"pad_to={pad_to} is smaller than the {info.size}x{info.size} images of {info.name}")
        self.info, self.device = info, torch.device(device)
        self.crop_padding, self.flip, self.rotation = crop_padding, flip, rotation
        keep = stratified(train.labels, train_subset, f"{info.name}: train_subset")
        train = Split(train.images[keep], train.labels[keep])
        if validation >= len(train.labels):
            raise DatasetError(f"validation={validation} leaves no training images out of {len(train.labels)}")
        is_val = torch.zeros(len(train.labels), dtype=torch.bool)
        is_val[stratified(train.labels, validation, "validation")] = True
        # each split draws on its own, so the test images do not change with train_subset
        test_index = stratified(test.labels, test_subset, f"{info.name}: test_subset")
        extra = (pad_to or info.size) - info.size
        pad = (extra // 2, extra - extra // 2) * 2  # left, right, top, bottom
        self.splits = {
            name: (F.pad(images, pad).to(self.device), labels.to(self.device))
            for name, images, labels in [
                ("train", train.images[~is_val], train.labels[~is_val]),
                ("val", train.images[is_val], train.labels[is_val]),
                ("test", test.images[test_index], test.labels[test_index]),
            ]
        }
        mean, std = {"dataset": (info.mean, info.std), "half": ((0.5,), (0.5,)),
                     "none": ((0.0,), (1.0,))}[normalization]
        self.mean = torch.tensor(mean, device=self.device).view(1, -1, 1, 1) * 255
        self.std = torch.tensor(std, device=self.device).view(1, -1, 1, 1) * 255

    num_classes = property(lambda self: self.info.num_classes)
    in_channels = property(lambda self: self.info.channels)
    image_size = property(lambda self: self.splits["train"][0].shape[-1])
    n_train = property(lambda self: len(self.splits["train"][1]))
    n_val = property(lambda self: len(self.splits["val"][1]))
    n_test = property(lambda self: len(self.splits["test"][1]))
    augmented = property(lambda self: self.crop_padding > 0 or self.flip or self.rotation > 0)

    @property
    def train_labels_cpu(self) -> torch.Tensor:
        """The train split's labels on the host (samplers draw there), copied once."""
        if not hasattr(self, "_train_labels_cpu"):
            self._train_labels_cpu = self.splits["train"][1].cpu()
        return self._train_labels_cpu

    def normalize(self, images: torch.Tensor) -> torch.Tensor:
        # in the dtype of the statistics: float32, or float64 where a test sets that default for a reference
        return (images.to(self.mean.dtype) - self.mean) / self.std

    def train_batches(self, batch_size: int, generator: torch.Generator, sampler=None) -> Iterator[tuple[torch.Tensor, ...]]:
        """One epoch of (images, labels, indices into the train split; the engine looks cached logits up by
        them) in an order drawn from `generator`, the last batch short; crops and flips come from it too.
        `sampler` (kdrepro.data.samplers; None = a random permutation) draws the order from it."""
        images, labels = self.splits["train"]
        # every random draw of the epoch is made up front and moved once: a host-to-device copy
        # inside the loop would make the host wait for the device at every step
        if sampler is None:
            order = torch.randperm(self.n_train, generator=generator).to(self.device)
        else:
            order = sampler.order(self.train_labels_cpu, batch_size, generator).to(self.device)
        if self.augmented:
            offsets = torch.randint(0, 2 * self.crop_padding + 1, (2, self.n_train), generator=generator).to(self.device)
            flips = ((torch.rand(self.n_train, generator=generator) < 0.5) & self.flip).to(self.device)
            if self.rotation:
                angles = ((torch.rand(self.n_train, generator=generator) * 2 - 1) * self.rotation).to(self.device)
        for start in range(0, self.n_train, batch_size):
            index = order[start:start + batch_size]
            batch = images[index]
            if self.augmented:
                cut = slice(start, start + batch_size)
                batch = random_crop_flip(batch, offsets[0, cut], offsets[1, cut], flips[cut], self.crop_padding)
                if self.rotation:
                    batch = random_rotation(batch, angles[cut])
            yield self.normalize(batch), labels[index], index

    def eval_batches(self, split: str = "test", batch_size: int = 1000) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        if split not in self.splits:
            raise DatasetError(f"split must be one of {sorted(self.splits)}, got {split!r}")
        images, labels = self.splits[split]
        if not len(labels):
            raise DatasetError(f"the {split} split is empty (set data.validation > 0 for a validation split)")
        for start in range(0, len(labels), batch_size):
            yield self.normalize(images[start:start + batch_size]), labels[start:start + batch_size]
