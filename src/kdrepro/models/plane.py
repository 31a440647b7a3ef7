"""TAKD's plain CNNs plane2..plane10 (official `plain_cnn_cifar.py`), in both of its books.

Every conv is 3x3/pad 1 with bias -> BN -> ReLU; "M" is a 2x2 max-pool. The CIFAR-10 and the
CIFAR-100 book differ in widths (and plane6 of the CIFAR-100 book has no third pool); the book
follows the number of classes unless chosen. Submodules: features (convs), embedding (hidden
FCs, the penultimate representation), classifier.
"""

from __future__ import annotations

from torch import nn

from kdrepro.models.registry import ModelError, register_model, scaled

# (conv channels with "M" for pools, hidden FC widths)
BOOKS = {
    "cifar10": {
        2: ([16, "M", 16, "M"], []),
        4: ([16, 16, "M", 32, 32, "M"], []),
        6: ([16, 16, "M", 32, 32, "M", 64, 64, "M"], []),
        8: ([16, 16, "M", 32, 32, "M", 64, 64, "M", 128, 128, "M"], [64]),
        10: ([32, 32, "M", 64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M"], [128]),
    },
    "cifar100": {
        2: ([32, "M", 32, "M"], []),
        4: ([32, 32, "M", 64, 64, "M"], []),
        6: ([32, 32, "M", 64, 64, "M", 128, 128], []),
        8: ([32, 32, "M", 64, 64, "M", 128, 128, "M", 256, 256, "M"], [64]),
        10: ([32, 32, "M", 64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M"], [512]),
    },
}


class PlainCNN(nn.Module):
    def __init__(self, layers: list, hidden: list[int], num_classes: int, in_channels: int, image_size: int):
        super().__init__()
        convs: list[nn.Module] = []
        channels, size = in_channels, image_size
        for layer in layers:
            if layer == "M":
                convs.append(nn.MaxPool2d(2, 2))
                size //= 2
            else:
                convs += [nn.Conv2d(channels, layer, 3, padding=1), nn.BatchNorm2d(layer), nn.ReLU(inplace=True)]
                channels = layer
        self.features = nn.Sequential(*convs)
        fcs: list[nn.Module] = [nn.Flatten()]
        features = channels * size * size
        for width in hidden:
            fcs += [nn.Linear(features, width), nn.ReLU(inplace=True)]
            features = width
        self.embedding = nn.Sequential(*fcs)
        self.classifier = nn.Linear(features, num_classes)

    def forward(self, x):
        return self.classifier(self.embedding(self.features(x)))


def make_plane(depth: int):
    def build(num_classes: int, in_channels: int, image_size: int, book: str | None = None, width: float = 1.0):
        book = book or ("cifar10" if num_classes <= 10 else "cifar100")
        if book not in BOOKS:
            raise ModelError(f"plane{depth}: book must be one of {sorted(BOOKS)}, got {book!r}")
        layers, hidden = BOOKS[book][depth]
        layers = [x if x == "M" else scaled(x, width) for x in layers]
        return PlainCNN(layers, [scaled(h, width) for h in hidden], num_classes, in_channels, image_size)

    build.__doc__ = f"TAKD plane{depth}: `book` cifar10|cifar100 (default by class count), `width` scales every layer."
    return build


for _depth in (2, 4, 6, 8, 10):
    register_model(f"plane{_depth}", family="plane", depth=_depth)(make_plane(_depth))
