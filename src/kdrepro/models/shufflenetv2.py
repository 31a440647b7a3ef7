"""ShuffleNetV2 (ratio 1) for CIFAR as the Tf-KD code takes it from weiaicunzai/pytorch-cifar100:
a 3x3 stem with 24 channels and no pooling, stages of 116/232/464 channels with 4/8/4 units (the
first of each downsamples), a 1x1 conv to 1024, global pooling, FC. `width` scales the channels.
"""

from __future__ import annotations

import torch
from torch import nn

from kdrepro.models.registry import register_model, scaled


def branch(in_channels: int, out_channels: int, stride: int, expand: bool) -> nn.Sequential:
    """[1x1 conv-BN-ReLU] -> 3x3 depthwise (stride) -BN -> 1x1 conv-BN-ReLU; the shortcut branch has no first 1x1."""
    first = [nn.Conv2d(in_channels, in_channels, 1), nn.BatchNorm2d(in_channels), nn.ReLU(inplace=True)] if expand else []
    return nn.Sequential(
        *first,
        nn.Conv2d(in_channels, in_channels, 3, stride, 1, groups=in_channels), nn.BatchNorm2d(in_channels),
        nn.Conv2d(in_channels, out_channels, 1), nn.BatchNorm2d(out_channels), nn.ReLU(inplace=True),
    )


class ShuffleUnit(nn.Module):
    def __init__(self, in_channels: int, out_channels: int, stride: int):
        super().__init__()
        self.split = stride == 1 and in_channels == out_channels
        if self.split:  # half the channels pass untouched, the other half go through the residual branch
            self.shortcut, self.residual = nn.Sequential(), branch(in_channels // 2, in_channels // 2, 1, True)
        else:
            self.shortcut = branch(in_channels, out_channels // 2, stride, False)
            self.residual = branch(in_channels, out_channels // 2, stride, True)

    def forward(self, x):
        shortcut, residual = x.chunk(2, dim=1) if self.split else (x, x)
        out = torch.cat([self.shortcut(shortcut), self.residual(residual)], dim=1)
        n, c, h, w = out.shape  # channel shuffle with two groups
        return out.view(n, 2, c // 2, h, w).transpose(1, 2).reshape(n, c, h, w)


class ShuffleNetV2(nn.Module):
    def __init__(self, num_classes: int, in_channels: int, width: float):
        super().__init__()
        channels = scaled(24, width)
        self.stem = nn.Sequential(nn.Conv2d(in_channels, channels, 3, padding=1), nn.BatchNorm2d(channels))
        units = []
        for out, repeats in ((116, 3), (232, 7), (464, 3)):
            out = scaled(out, width, multiple=2)
            units += [ShuffleUnit(channels, out, 2)] + [ShuffleUnit(out, out, 1) for _ in range(repeats)]
            channels = out
        self.units = nn.Sequential(*units)
        self.head = nn.Sequential(nn.Conv2d(channels, scaled(1024, width), 1), nn.BatchNorm2d(scaled(1024, width)),
                                  nn.ReLU(inplace=True))
        self.embedding = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.fc = nn.Linear(scaled(1024, width), num_classes)

    def forward(self, x):
        return self.fc(self.embedding(self.head(self.units(self.stem(x)))))


@register_model("shufflenetv2", family="shufflenet", depth=51)
def shufflenetv2(num_classes: int, in_channels: int, image_size: int, width: float = 1.0) -> nn.Module:
    """ShuffleNetV2 1x (CIFAR variant of weiaicunzai/pytorch-cifar100); `width` scales every layer."""
    return ShuffleNetV2(num_classes, in_channels, width)
