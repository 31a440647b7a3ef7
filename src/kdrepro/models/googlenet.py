"""GoogLeNet (Inception v1) for CIFAR as the Tf-KD code takes it from weiaicunzai/pytorch-cifar100:
a 3x3 stem with 192 channels, nine inception modules (a3, b3 | pool | a4..e4 | pool | a5, b5), the
5x5 branch as two 3x3 convs, global pooling, dropout 0.4, FC.

Kept as in that code: the 5x5 branch's first BatchNorm is built as `BatchNorm2d(n5x5, n5x5)`, so its
eps is n5x5 (16 to 48) rather than 1e-5; `bn_eps_quirk=False` builds the usual BatchNorm instead.
"""

from __future__ import annotations

import torch
from torch import nn

from kdrepro.models.registry import register_model, scaled


def conv_bn_relu(in_channels: int, out_channels: int, kernel: int, eps: float = 1e-5) -> list[nn.Module]:
    return [nn.Conv2d(in_channels, out_channels, kernel, padding=kernel // 2), nn.BatchNorm2d(out_channels, eps=eps),
            nn.ReLU(inplace=True)]


class Inception(nn.Module):
    def __init__(self, in_channels: int, n1x1: int, n3x3_reduce: int, n3x3: int, n5x5_reduce: int, n5x5: int,
                 pool_proj: int, bn_eps_quirk: bool):
        super().__init__()
        self.b1 = nn.Sequential(*conv_bn_relu(in_channels, n1x1, 1))
        self.b2 = nn.Sequential(*conv_bn_relu(in_channels, n3x3_reduce, 1), *conv_bn_relu(n3x3_reduce, n3x3, 3))
        self.b3 = nn.Sequential(*conv_bn_relu(in_channels, n5x5_reduce, 1),
                                *conv_bn_relu(n5x5_reduce, n5x5, 3, eps=n5x5 if bn_eps_quirk else 1e-5),
                                *conv_bn_relu(n5x5, n5x5, 3))
        self.b4 = nn.Sequential(nn.MaxPool2d(3, 1, 1), *conv_bn_relu(in_channels, pool_proj, 1))

    def forward(self, x):
        return torch.cat([self.b1(x), self.b2(x), self.b3(x), self.b4(x)], dim=1)


# (1x1, 3x3 reduce, 3x3, 5x5 reduce, 5x5, pool projection) per module; "M" is a 3x3/2 max-pool
MODULES = [(64, 96, 128, 16, 32, 32), (128, 128, 192, 32, 96, 64), "M",
           (192, 96, 208, 16, 48, 64), (160, 112, 224, 24, 64, 64), (128, 128, 256, 24, 64, 64),
           (112, 144, 288, 32, 64, 64), (256, 160, 320, 32, 128, 128), "M",
           (256, 160, 320, 32, 128, 128), (384, 192, 384, 48, 128, 128)]


class GoogLeNet(nn.Module):
    def __init__(self, num_classes: int, in_channels: int, width: float, bn_eps_quirk: bool):
        super().__init__()
        channels = scaled(192, width)
        layers: list[nn.Module] = conv_bn_relu(in_channels, channels, 3)
        for spec in MODULES:
            if spec == "M":
                layers.append(nn.MaxPool2d(3, 2, 1))
                continue
            n1x1, n3r, n3, n5r, n5, pool = (scaled(c, width) for c in spec)
            layers.append(Inception(channels, n1x1, n3r, n3, n5r, n5, pool, bn_eps_quirk))
            channels = n1x1 + n3 + n5 + pool
        self.features = nn.Sequential(*layers)
        self.embedding = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Dropout(0.4))
        self.fc = nn.Linear(channels, num_classes)

    def forward(self, x):
        return self.fc(self.embedding(self.features(x)))


@register_model("googlenet", family="googlenet", depth=22)
def googlenet(num_classes: int, in_channels: int, image_size: int, width: float = 1.0, bn_eps_quirk: bool = True) -> nn.Module:
    """GoogLeNet (CIFAR variant of weiaicunzai/pytorch-cifar100); `width` scales every layer,
    `bn_eps_quirk` keeps that code's BatchNorm eps of n5x5 in the 5x5 branch."""
    return GoogLeNet(num_classes, in_channels, width, bn_eps_quirk)
